"""Throughput of one training step (forward + backward + Adam step) of the AR LM, MDLM and BD3-LM.

All three use the same DiT backbone and the same batch of B full-length sequences of T tokens.  Per step
the models process these positions: AR T, MDLM 1 + T (BOS + x_t), BD3-LM 1 + 2T (BOS + x_t + x_0; in
its last block only the keys/values of x_0 are computed).  Model FLOPs per step (fwd + bwd = 3x fwd):

    6 * P_blocks * positions                        (weights of the Transformer blocks)
  + 12 * n_layers * H * (attended query-key pairs)  (Q K^T and A V; causal counts T(T+1)/2, masks count all)
  + 6 * H * V * (rows of logits)                    (AR: T per sequence, diffusion: masked tokens only,
                                                     expected (1 - eps) E[t] T = ~T/2)

The machine's matmul peak is measured in the same run with a large torch.matmul (float32 on CPU, bf16 on
GPU, where the models run under bf16 autocast), and each model's FLOP rate is reported as a fraction of
it.  Prints a markdown table per device; the last column is the step time relative to the AR step
(target for BD3-LM: <= 2.2).

    python bench/train_step_throughput.py [--preset mini] [--batch 16] [--seq-len 128] [--block-size 4]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from recipe.lm.build import build_model, training_loss
from recipe.lm.config import LmConfig, preset_dims
from recipe.lm.dit import count_parameters


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], None], device: torch.device, repeats: int, warmup: int) -> float:
    """Median seconds of ``fn`` over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def matmul_peak(device: torch.device) -> float:
    """FLOP/s of a large square matmul (float32 on CPU, bf16 on GPU)."""
    n, dtype = (2048, torch.float32) if device.type == "cpu" else (8192, torch.bfloat16)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    seconds = _timed(lambda: torch.matmul(a, b), device, repeats=5, warmup=2)
    return 2 * n**3 / seconds


def model_flops(kind: str, model: torch.nn.Module, batch: int, seq_len: int, eps: float = 1e-3) -> float:
    """Model FLOPs of one training step (see the module docstring)."""
    cfg = model.backbone.cfg
    n, hidden = cfg.n_layers, cfg.hidden
    layer_params = count_parameters(model.backbone.blocks) / n
    qkv_params = 3 * hidden * hidden
    if kind == "ar":
        weight_positions = n * layer_params * seq_len
        pairs, logit_rows = n * seq_len * (seq_len + 1) / 2, seq_len
    elif kind == "mdlm":
        weight_positions = n * layer_params * (seq_len + 1)
        pairs, logit_rows = n * (seq_len + 1) ** 2, (1 - eps) * 0.5 * seq_len
    else:
        full, out = 2 * seq_len + 1, seq_len + 1  # the last block computes outputs for BOS + x_t only
        weight_positions = (
            (n - 1) * layer_params * full + qkv_params * full + (layer_params - qkv_params) * out
        )
        pairs, logit_rows = (n - 1) * full**2 + out * full, (1 - eps) * 0.5 * seq_len
    per_seq = (
        6 * weight_positions + 12 * hidden * pairs + 6 * hidden * model.backbone.output_size * logit_rows
    )
    return batch * per_seq


def bench_device(args: argparse.Namespace, device: torch.device) -> str:
    """Markdown table for one device.  The models' steps are interleaved (ar, mdlm, bd3lm, ar, ...) and
    the median is taken per model, so that load changes on a shared machine hit all three alike."""
    peak = matmul_peak(device)
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, args.vocab, (args.batch, args.seq_len), generator=gen).to(device)
    lengths = torch.full((args.batch,), args.seq_len, device=device)
    kinds = ("ar", "mdlm", "bd3lm")
    steps: dict[str, Callable[[], None]] = {}
    models: dict[str, torch.nn.Module] = {}
    for kind in kinds:
        cfg = LmConfig(
            kind=kind,
            vocab_size=args.vocab,
            eos_id=0,
            max_seq_len=args.seq_len,
            **preset_dims(args.preset),
            dropout=0.1,
            block_size=args.block_size if kind == "bd3lm" else None,
        )
        torch.manual_seed(0)
        model = build_model(cfg).to(device).train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        step_gen = torch.Generator(device=device).manual_seed(0)

        def step(
            model: torch.nn.Module = model, opt: torch.optim.Optimizer = opt, g=step_gen, cfg=cfg
        ) -> None:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                total, count = training_loss(model, tokens, lengths, True, g)
            opt.zero_grad(set_to_none=True)
            (total / count).backward()
            opt.step()

        steps[kind], models[kind] = step, model
    times: dict[str, list[float]] = {kind: [] for kind in kinds}
    for i in range(args.warmup + args.steps):
        for kind in kinds:
            seconds = _timed(steps[kind], device, repeats=1, warmup=0)
            if i >= args.warmup:
                times[kind].append(seconds)
    rows = []
    ar_seconds = None
    for kind in kinds:
        seconds = sorted(times[kind])[len(times[kind]) // 2]
        ar_seconds = ar_seconds or seconds
        flops = model_flops(kind, models[kind], args.batch, args.seq_len)
        rows.append(
            f"| {kind} | {count_parameters(models[kind]) / 1e6:.2f} | {seconds * 1e3:.1f} | "
            f"{args.batch * args.seq_len / seconds:,.0f} | {flops / 1e9:.1f} | {flops / seconds / 1e9:.1f} | "
            f"{100 * flops / seconds / peak:.1f}% | {seconds / ar_seconds:.2f}x |"
        )
    header = (
        f"\n### {device.type}: preset {args.preset}, batch {args.batch} x {args.seq_len} tokens, "
        f"L' = {args.block_size}, V = {args.vocab}, threads {torch.get_num_threads()}; "
        f"matmul peak {peak / 1e9:,.1f} GFLOP/s\n\n"
        "| model | params (M) | step (ms) | tokens/s | GFLOP/step | GFLOP/s | of peak | step vs AR |\n"
        "|---|---|---|---|---|---|---|---|"
    )
    return "\n".join([header, *rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="mini")
    parser.add_argument("--vocab", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--block-size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's choice)")
    parser.add_argument("--devices", default="cpu,cuda", help="comma list; cuda is skipped when unavailable")
    args = parser.parse_args()
    if args.seq_len % args.block_size:
        parser.error(f"--seq-len {args.seq_len} must be divisible by --block-size {args.block_size}")
    if args.threads:
        torch.set_num_threads(args.threads)
    for name in args.devices.split(","):
        if name == "cuda" and not torch.cuda.is_available():
            continue
        print(bench_device(args, torch.device(name)), flush=True)


if __name__ == "__main__":
    main()

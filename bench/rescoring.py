"""Benchmark: n-best rescoring speed per LM and K, the noise of within-utterance score differences per
noise method and K, and the WER vs. the number K of Monte-Carlo ELBO samples (mean over seeds).

Uses the outputs of the default pipeline under ``--root`` (default: this repository; run `make run`
first, or point it at a finished clone): the best checkpoint of every LM (`alias/lm/<name>/best`), the
demo n-best lists and references (`alias/asr/{dev,test}_nbest`) and the SentencePiece model.

* Speed: hypotheses/s on the test n-best lists per LM and K, scored utterance by utterance as
  ``RescoreNBestJob`` does (default noise); BD3-LMs also without the clean-half key/value reuse
  (``cache=False``, the full x_t + x_0 pass per sample as before); time per hypothesis relative to the
  AR LM.
* Noise of score differences: for the test hypotheses h != pivot (the first-pass best) of the first
  ``--std-utterances`` utterances, the standard deviation over ``--seeds`` draws of s_h - s_pivot, as
  root mean square over the pairs (nats), per noise method (independent, shared by position, aligned to
  the pivot, aligned + lattice t) at K = 1 and 3.
* WER vs K: ``--calls`` draws of 3 stratified samples per hypothesis (dev and test, each draw its own
  seed); a K-sample estimate is the mean over K / 3 disjoint draws (K = 1: one sample of a draw), so
  the draws give independent replicates of every K at the cost of the largest. Each replicate tunes
  λ, β on its dev scores and is evaluated on its test scores; mean ± standard deviation over the
  replicates. Each utterance's noise comes from (seed, tag) as in the RETURNN job.

Run: `.venv/bin/python bench/rescoring.py [--root DIR] [--seeds 5] [--part speed|noise|all]`
(``--random-weights``: speed only, untrained models of the same configs, when no checkpoints exist).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from config import exp  # noqa: E402
from recipe.asr.score_combination import evaluate_rescoring, tune_scales  # noqa: E402
from recipe.asr.search_output import read_nbest  # noqa: E402
from recipe.data.text_dict import read_text_dict  # noqa: E402
from recipe.data.tokenizers import SentencePieceTokenizer  # noqa: E402
from recipe.lm.build import build_model, load_model  # noqa: E402
from recipe.lm.likelihood import nelbo_samples, sequence_log_likelihood  # noqa: E402
from recipe.lm.text_batches import encode_texts, pad_batch  # noqa: E402
from recipe.returnn_glue.forward import tag_generator  # noqa: E402

SAMPLING_NUMBERS = (1, 3, 10, 30)
CALL_SAMPLES = 3  # samples per noise draw of the noise/WER study (the K of the cost target)
METHODS = {  # name: (noise, lattice)
    "independent": ("independent", False),
    "shared": ("shared", False),
    "aligned": ("aligned", False),
    "aligned+lattice": ("aligned", True),
}


def _require(path: str) -> str:
    if not os.path.exists(path):
        raise SystemExit(f"{path} is missing: run the default pipeline first (make run) or pass --root")
    return path


def load_inputs(root: str, random_weights: bool) -> tuple[dict, dict, str]:
    spm = _require(os.path.join(root, "output", "data", "kjv", "spm.model"))
    parts = {}
    for part in ("dev", "test"):
        d = os.path.join(root, "alias", "asr", f"{part}_nbest", "output")
        parts[part] = (
            read_nbest(_require(os.path.join(d, "nbest.py.gz"))),
            read_text_dict(_require(os.path.join(d, "references.py.gz"))),
        )
    models = {"ar": exp.lm_config("ar"), "mdlm": exp.lm_config("mdlm")}
    models.update({f"bd3lm_{b}": exp.lm_config("bd3lm", block_size=b) for b in exp.DEFAULT.block_sizes})
    loaded = {}
    for name, config in models.items():
        if random_weights:
            torch.manual_seed(0)
            loaded[name] = (config, build_model(config).eval())
            continue
        ckpt = _require(os.path.join(root, "alias", "lm", name, "best", "output", "checkpoint.pt"))
        loaded[name] = (config, load_model(config, ckpt))
    return loaded, parts, spm


def encode(nbest: dict, spm: str) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    tokenizer = SentencePieceTokenizer(spm)
    return {
        tag: pad_batch(encode_texts(tokenizer, [t for _, t in hyps])) for tag, hyps in nbest.items() if hyps
    }


def score(model, batches: dict, k: int, method: str, seed: int, cache: bool = True) -> dict[str, list[float]]:
    noise, lattice = METHODS[method]
    scores = {}
    for tag, (tokens, lengths) in batches.items():
        generator = tag_generator(tokens.device, seed, tag)
        if noise == "independent":
            generator = [tag_generator(tokens.device, seed, f"{tag}#{i}") for i in range(len(tokens))]
        scores[tag] = sequence_log_likelihood(
            model,
            tokens,
            lengths,
            num_samples=k,
            noise=noise,
            lattice=lattice,
            generator=generator,
            cache=cache,
        ).tolist()
    return scores


def print_speed(
    models: dict, test_nbest: dict, spm: str, ks: tuple[int, ...], repeats: int, flop_utterances: int
) -> None:
    """hypotheses/s (wall clock, best of ``repeats``), CPU time per hypothesis (process time, best of
    ``repeats``: with one thread less affected by other load than the wall clock) and GFLOP per
    hypothesis (torch's FlopCounterMode over the first ``flop_utterances`` utterances: matmuls and
    attention, independent of machine load)."""
    from torch.utils.flop_counter import FlopCounterMode

    batches = encode(test_nbest, spm)
    num_hyps = sum(len(t) for t, _ in batches.values())
    flop_batches = dict(list(batches.items())[:flop_utterances])
    flop_hyps = sum(len(t) for t, _ in flop_batches.values())
    print(
        f"## Rescoring speed (test n-best: {len(batches)} utterances, {num_hyps} hypotheses, CPU "
        f"{torch.get_num_threads()} threads, best of {repeats}; GFLOP over {flop_hyps} hypotheses)\n"
    )
    print(
        "| LM | K | hypotheses/s | time per hypothesis vs AR | CPU ms per hypothesis | CPU vs AR "
        "| GFLOP per hypothesis | FLOPs vs AR |\n|---|---|---|---|---|---|---|---|"
    )
    ar = None

    def measure(model, k, cache=True):
        best, cpu = math.inf, math.inf
        for _ in range(repeats):
            start, start_cpu = time.perf_counter(), time.process_time()
            score(model, batches, k, "shared", 0, cache)
            best = min(best, time.perf_counter() - start)
            cpu = min(cpu, time.process_time() - start_cpu)
        counter = FlopCounterMode(display=False)
        with counter:
            score(model, flop_batches, k, "shared", 0, cache)
        return num_hyps / best, counter.get_total_flops() / flop_hyps / 1e9, 1000 * cpu / num_hyps

    for name, (config, model) in models.items():
        if not config.is_diffusion:
            ar = measure(model, 1)
            print(f"| {name} | exact | {ar[0]:.0f} | 1.00x | {ar[2]:.2f} | 1.00x | {ar[1]:.4f} | 1.00x |")
            continue
        for k in ks:
            for cache in (True, False) if config.kind == "bd3lm" and k == 10 else (True,):
                r, g, c = measure(model, k, cache)
                label = name if cache else f"{name} (no x_0 reuse, as before)"
                print(
                    f"| {label} | {k} | {r:.0f} | {ar[0] / r:.2f}x | {c:.2f} | {c / ar[2]:.2f}x | {g:.4f} "
                    f"| {g / ar[1]:.2f}x |",
                    flush=True,
                )


def sample_scores(model, batches: dict, k: int, method: str, seed: int) -> dict[str, torch.Tensor]:
    """-NELBO of every Monte-Carlo sample: {tag: float64 [hypotheses, k]}, noise drawn as
    ``RescoreNBestJob`` draws it (one generator per utterance from (seed, tag); per hypothesis for
    ``independent``); the mean over the k samples is the job's score with ``num_samples=k``."""
    noise, lattice = METHODS[method]
    out = {}
    for tag, (tokens, lengths) in batches.items():
        if noise == "independent":
            groups = None
            generator = [tag_generator(tokens.device, seed, f"{tag}#{i}") for i in range(len(tokens))]
        else:
            groups = torch.zeros(len(tokens), dtype=torch.long)
            generator = tag_generator(tokens.device, seed, tag)
        out[tag] = -nelbo_samples(
            model, tokens, lengths, k, groups=groups, generator=generator, noise=noise, lattice=lattice
        )
    return out


def replicates(calls: list[dict[str, torch.Tensor]], k: int) -> list[dict[str, list[float]]]:
    """Independent K = k estimates from ``calls`` (each a stratified draw of CALL_SAMPLES samples):
    k = 1: the first sample of each call; k a multiple of CALL_SAMPLES: the mean over k / CALL_SAMPLES
    consecutive calls (disjoint, so the replicates are independent; each is unbiased)."""
    if k == 1:
        return [{tag: s[:, 0].tolist() for tag, s in call.items()} for call in calls]
    per = k // CALL_SAMPLES
    return [
        {tag: torch.stack([c[tag] for c in calls[i : i + per]]).mean(dim=(0, 2)).tolist() for tag in calls[0]}
        for i in range(0, len(calls) - per + 1, per)
    ]


def difference_std(runs: list[dict[str, list[float]]]) -> float:
    """Root mean square over hypothesis pairs (h, pivot = first-pass best) of the standard deviation
    over runs of s_h - s_pivot (nats)."""
    variances = [
        statistics.variance([r[tag][h] - r[tag][0] for r in runs])
        for tag in runs[0]
        for h in range(1, len(runs[0][tag]))
    ]
    return math.sqrt(sum(variances) / len(variances))


def print_noise_and_wer(
    models: dict,
    parts: dict,
    spm: str,
    *,
    std_seeds: int,
    std_utterances: int,
    methods: list[str],
    calls: int,
    wer_ks: tuple[int, ...],
    wer_methods: list[str],
) -> None:
    """Two studies from one design: every run ("call") draws CALL_SAMPLES stratified samples per
    hypothesis with its own seed, and K-sample estimates are formed from disjoint calls (``replicates``).

    * Noise of score differences per method: ``std_seeds`` calls on the first ``std_utterances`` test
      utterances, K = 1 and CALL_SAMPLES.
    * WER vs K per ``wer_methods``: ``calls`` calls on the full dev and test lists; each replicate tunes
      λ, β on its dev scores and is evaluated on its test scores, as a user rescoring with K samples
      would; mean ± standard deviation over the replicates.
    """
    (dev_nbest, dev_refs), (test_nbest, test_refs) = parts["dev"], parts["test"]
    dev, test = encode(dev_nbest, spm), encode(test_nbest, spm)
    first = evaluate_rescoring(
        test_nbest, {t: [0.0] * len(h) for t, h in test_nbest.items()}, test_refs, 0, 0
    )
    ar_config, ar_model = models["ar"]
    ar_scores = score(ar_model, test, 1, "shared", 0)
    ar_tuned = tune_scales(dev_nbest, score(ar_model, dev, 1, "shared", 0), dev_refs)
    ar_wer = evaluate_rescoring(test_nbest, ar_scores, test_refs, ar_tuned.lm_scale, ar_tuned.length_scale)
    print(
        f"\n## Test WER (%): first pass {first['first-pass'].wer:.2f}, oracle {first['oracle'].wer:.2f}, "
        f"AR LM {ar_wer['rescored'].wer:.2f} ({len(test)} utterances, "
        f"{sum(len(h) for h in test_nbest.values())} hypotheses)\n"
    )
    diffusion = {name: model for name, (config, model) in models.items() if config.is_diffusion}
    std_test = dict(list(test.items())[:std_utterances])
    std_rows = []
    for name, model in diffusion.items():
        for method in methods:
            runs = [sample_scores(model, std_test, CALL_SAMPLES, method, 1000 + s) for s in range(std_seeds)]
            stds = [difference_std(replicates(runs, k)) for k in (1, CALL_SAMPLES)]
            std_rows.append(f"| {name} | {method} | " + " | ".join(f"{v:.3f}" for v in stds) + " |")
            print(f"  {std_rows[-1]}", file=sys.stderr, flush=True)
    print(
        f"Standard deviation over {std_seeds} seeds of s_h - s_pivot (nats, RMS over the hypothesis pairs "
        f"of the first {len(std_test)} test utterances; pivot = first-pass best):\n"
    )
    print(f"| LM | noise | K=1 | K={CALL_SAMPLES} |\n|---|---|---|---|")
    print("\n".join(std_rows), flush=True)

    wer_rows, gaps = [], []
    for name, model in diffusion.items():
        for method in wer_methods:
            dev_calls = [sample_scores(model, dev, CALL_SAMPLES, method, s) for s in range(calls)]
            test_calls = [sample_scores(model, test, CALL_SAMPLES, method, 1000 + s) for s in range(calls)]
            cells, means = [], {}
            for k in wer_ks:
                wers = []
                for dev_scores, test_scores in zip(
                    replicates(dev_calls, k), replicates(test_calls, k), strict=True
                ):
                    tuned = tune_scales(dev_nbest, dev_scores, dev_refs)
                    result = evaluate_rescoring(
                        test_nbest, test_scores, test_refs, tuned.lm_scale, tuned.length_scale
                    )
                    wers.append(result["rescored"].wer)
                means[k] = statistics.mean(wers)
                spread = f" ± {statistics.stdev(wers):.2f}" if len(wers) > 1 else ""
                cells.append(f"{means[k]:.2f}{spread} ({len(wers)})")
            std3 = difference_std(replicates(test_calls, CALL_SAMPLES))
            wer_rows.append(f"| {name} | {method} | " + " | ".join(cells) + f" | {std3:.3f} |")
            gaps.append(f"{name} {method}: {means[CALL_SAMPLES] - means[max(wer_ks)]:+.2f}")
            print(f"  {wer_rows[-1]}", file=sys.stderr, flush=True)
    header = " | ".join(f"K={k}" for k in wer_ks)
    print(
        f"\nTest WER (%) vs K: mean ± standard deviation (number of independent replicates, from {calls} "
        f"draws of {CALL_SAMPLES} samples); λ, β tuned on dev per replicate; last column the "
        f"score-difference std at K={CALL_SAMPLES} over all test utterances:\n"
    )
    print(f"| LM | noise | {header} | std K={CALL_SAMPLES} |\n|---|---|" + "---|" * (len(wer_ks) + 1))
    print("\n".join(wer_rows))
    print(f"\nWER(K={CALL_SAMPLES}) - WER(K={max(wer_ks)}), points: " + "; ".join(gaps), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=ROOT, help="a finished pipeline's base directory")
    parser.add_argument("--seeds", type=int, default=5, help="noise: draws per method for the std table")
    parser.add_argument("--part", choices=("speed", "noise", "all"), default="all")
    parser.add_argument("--ks", default=",".join(map(str, SAMPLING_NUMBERS)), help="speed: K values")
    parser.add_argument("--methods", default=",".join(METHODS), help="noise: methods of the std table")
    parser.add_argument(
        "--std-utterances", type=int, default=20, help="noise: test utterances of the std table"
    )
    parser.add_argument("--calls", type=int, default=10, help="WER: draws of 3 samples per LM and method")
    parser.add_argument("--wer-ks", default="1,3,6,30", help="WER: 1 or multiples of 3, at most 3 * calls")
    parser.add_argument("--wer-methods", default="shared", help="WER: noise methods")
    parser.add_argument("--repeats", type=int, default=2, help="speed: best of this many runs")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--random-weights", action="store_true", help="speed only: untrained models")
    parser.add_argument("--utterances", type=int, default=0, help="speed: only the first N test utterances")
    parser.add_argument("--flop-utterances", type=int, default=4, help="speed: FLOPs counted on N utterances")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ks = tuple(int(k) for k in args.ks.split(","))
    methods = args.methods.split(",")
    wer_methods = args.wer_methods.split(",")
    wer_ks = tuple(int(k) for k in args.wer_ks.split(","))
    bad_ks = [k for k in wer_ks if k != 1 and (k % CALL_SAMPLES or k > CALL_SAMPLES * args.calls)]
    if bad_ks or CALL_SAMPLES not in wer_ks:
        raise SystemExit(
            f"--wer-ks must include {CALL_SAMPLES}, and be 1 or multiples of {CALL_SAMPLES} up to "
            f"{CALL_SAMPLES} * --calls; bad: {bad_ks}"
        )
    unknown = set(methods + wer_methods) - set(METHODS)
    if unknown:
        raise SystemExit(f"unknown methods {sorted(unknown)}; choose from {list(METHODS)}")
    if args.random_weights and args.part != "speed":
        raise SystemExit("--random-weights is only meaningful for --part speed")
    models, parts, spm = load_inputs(args.root, args.random_weights)
    if args.part in ("speed", "all"):
        test = parts["test"][0]
        if args.utterances:
            test = dict(list(test.items())[: args.utterances])
        print_speed(models, test, spm, ks, args.repeats, args.flop_utterances)
    if args.part in ("noise", "all"):
        print_noise_and_wer(
            models,
            parts,
            spm,
            std_seeds=args.seeds,
            std_utterances=args.std_utterances,
            methods=methods,
            calls=args.calls,
            wer_ks=wer_ks,
            wer_methods=wer_methods,
        )


if __name__ == "__main__":
    main()

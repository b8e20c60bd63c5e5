"""Benchmark: n-best rescoring speed per LM, and WER vs. the number of Monte-Carlo ELBO samples.

Uses the outputs of the default pipeline (run `make run` first): the best checkpoint of every LM
(`alias/lm/<name>/best`), the demo n-best lists and references (`alias/asr/{dev,test}_nbest`) and the
SentencePiece model. For each diffusion LM and sampling_number K in 1, 3, 10, 30 it scores dev and
test with and without variance reduction (shared noise across an utterance's hypotheses + stratified
draws), tunes λ/β on dev, and reports the test WER averaged over seeds. Target: the WER at K = 30 is
reached with K <= 3 (with variance reduction).

Run: `.venv/bin/python bench/rescoring.py [--seeds 3] [--part speed|wer|all]`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from config import exp  # noqa: E402
from recipe.asr.score_combination import evaluate_rescoring, tune_scales  # noqa: E402
from recipe.asr.search_output import read_nbest  # noqa: E402
from recipe.data.text_dict import read_text_dict  # noqa: E402
from recipe.lm.build import load_model  # noqa: E402
from recipe.lm.likelihood import sequence_log_likelihood  # noqa: E402
from recipe.lm.text_batches import encode_texts, pad_batch  # noqa: E402

SAMPLING_NUMBERS = (1, 3, 10, 30)


def _require(path: str) -> str:
    if not os.path.exists(path):
        raise SystemExit(f"{path} is missing: run the default pipeline first (make run)")
    return path


def load_inputs() -> tuple[dict, dict, str]:
    spm = _require(os.path.join(ROOT, "output", "data", "kjv", "spm.model"))
    parts = {}
    for part in ("dev", "test"):
        d = os.path.join(ROOT, "alias", "asr", f"{part}_nbest", "output")
        parts[part] = (
            read_nbest(_require(os.path.join(d, "nbest.py.gz"))),
            read_text_dict(_require(os.path.join(d, "references.py.gz"))),
        )
    models = {"ar": exp.lm_config("ar"), "mdlm": exp.lm_config("mdlm")}
    models.update({f"bd3lm_{b}": exp.lm_config("bd3lm", block_size=b) for b in exp.DEFAULT.block_sizes})
    loaded = {}
    for name, config in models.items():
        ckpt = _require(os.path.join(ROOT, "alias", "lm", name, "best", "output", "checkpoint.pt"))
        loaded[name] = (config, load_model(config, ckpt))
    return loaded, parts, spm


def score(model, nbest: dict, spm: str, k: int, reduce_variance: bool, seed: int) -> dict[str, list[float]]:
    generator = torch.Generator().manual_seed(seed)
    scores = {}
    for tag, hyps in nbest.items():
        if not hyps:
            scores[tag] = []
            continue
        tokens, lengths = pad_batch(encode_texts(spm, [t for _, t in hyps]))
        scores[tag] = sequence_log_likelihood(
            model,
            tokens,
            lengths,
            num_samples=k,
            shared_noise=reduce_variance,
            stratified=reduce_variance,
            generator=generator,
        ).tolist()
    return scores


def print_speed(models: dict, test_nbest: dict, spm: str) -> None:
    num_hyps = sum(map(len, test_nbest.values()))
    print(
        f"## Rescoring speed (test n-best: {len(test_nbest)} utterances, {num_hyps} hypotheses, CPU "
        f"{torch.get_num_threads()} threads)\n"
    )
    print("| LM | samples | hypotheses/s |\n|---|---|---|")
    for name, (config, model) in models.items():
        k = exp.DEFAULT.sampling_number if config.is_diffusion else 1
        start = time.perf_counter()
        score(model, test_nbest, spm, k, True, 0)
        rate = num_hyps / (time.perf_counter() - start)
        print(f"| {name} | {k if config.is_diffusion else 'exact'} | {rate:.0f} |")


def print_wer(models: dict, parts: dict, spm: str, seeds: int) -> None:
    (dev_nbest, dev_refs), (test_nbest, test_refs) = parts["dev"], parts["test"]
    print(f"\n## Test WER (%) vs. ELBO samples, mean over {seeds} seeds (λ, β tuned on dev per run)\n")
    first = evaluate_rescoring(
        test_nbest, {t: [0.0] * len(h) for t, h in test_nbest.items()}, test_refs, 0, 0
    )
    print(f"first pass {first['first-pass'].wer:.2f}, oracle {first['oracle'].wer:.2f}\n")
    header = " | ".join(f"K={k} {'VR' if vr else 'plain'}" for k in SAMPLING_NUMBERS for vr in (True, False))
    print(f"| LM | {header} |\n|---|" + "---|" * (2 * len(SAMPLING_NUMBERS)))
    for name, (config, model) in models.items():
        if not config.is_diffusion:
            continue
        cells = []
        for k in SAMPLING_NUMBERS:
            for vr in (True, False):
                wers = []
                for seed in range(seeds):
                    dev_scores = score(model, dev_nbest, spm, k, vr, seed)
                    test_scores = score(model, test_nbest, spm, k, vr, 1000 + seed)
                    tuned = tune_scales(dev_nbest, dev_scores, dev_refs)
                    result = evaluate_rescoring(
                        test_nbest, test_scores, test_refs, tuned.lm_scale, tuned.length_scale
                    )
                    wers.append(result["rescored"].wer)
                cells.append(f"{sum(wers) / len(wers):.2f}")
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--part", choices=("speed", "wer", "all"), default="all")
    args = parser.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    models, parts, spm = load_inputs()
    if args.part in ("speed", "all"):
        print_speed(models, parts["test"][0], spm)
    if args.part in ("wer", "all"):
        print_wer(models, parts, spm, args.seeds)


if __name__ == "__main__":
    main()

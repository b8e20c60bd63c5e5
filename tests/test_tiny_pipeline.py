"""End to end: `sis manager config/tiny.py -r` — the default experiment's graph at toy sizes — with the
project's settings.py (local engine) in a fresh base directory; then its numbers are checked: finite,
in range, consistent between the report and the job outputs, and ordered where the definitions (not
the toy models' quality) guarantee an order."""

from __future__ import annotations

import ast
import gzip
import math
import os
import re
import shutil
from pathlib import Path

import pytest

from tests.edit_distance import corpus_wer, edit_distance
from tests.pipeline_run import REPO, run_manager_to_completion

MODELS = ("ar", "mdlm", "bd3lm_4", "bd3lm_16")
COMBINATIONS = (("ar", "bd3lm_4"), ("ar", "mdlm"))  # config/exp.py LM_COMBINATIONS
VOCAB_SIZE = 300  # config/tiny.py


def _literal(path: Path):
    """A python-literal output file (search output, text dict, RETURNN learning-rate file), maybe gzipped."""
    data = path.read_bytes()
    text = gzip.decompress(data).decode() if data[:2] == b"\x1f\x8b" else data.decode()
    return ast.literal_eval(re.sub(r"EpochData\(learningRate=([^,]+), error=", r"(\1, ", text))


def _var(root: Path, alias: str, name: str) -> float:
    return float((root / "alias" / alias / "output" / name).read_text())


def _table(report: str, header: str) -> dict[str, list[str]]:
    """The markdown table after the line starting with ``header``: {first cell: other cells}."""
    lines = report[report.index(header) :].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = cells[1:]
    return rows


def _first_best(hyps: list[tuple[float, str]]) -> str | None:
    """The hypothesis with the highest first-pass score, the earlier one on ties."""
    best = None
    for score, text in hyps:
        if best is None or score > best[0]:
            best = (score, text)
    return None if best is None else best[1]


def check_perplexities(root: Path, report: str) -> None:
    table = _table(report, "## Perplexity")
    assert list(table) == list(MODELS), report
    for name in MODELS:
        alias = f"eval/{name}/test_ppl"
        ppl, nats = _var(root, alias, "perplexity"), _var(root, alias, "nats_per_token")
        # per-token NLL / NELBO recomputed from the per-sequence scores and the token count
        scores = {
            tag: float(s) for tag, s in _literal(root / "alias" / alias / "output" / "scores.py").items()
        }
        num_tokens = _var(root, alias, "num_tokens")
        assert len(scores) == _var(root, alias, "num_seqs") > 0
        assert num_tokens >= 2 * len(scores)  # every verse has words and an EOS
        assert all(math.isfinite(s) and s < 0 for s in scores.values()), name
        assert nats == pytest.approx(-sum(scores.values()) / num_tokens, rel=1e-9)
        assert math.isfinite(ppl) and ppl > 1.0 and ppl == pytest.approx(math.exp(nats), rel=1e-9)
        report_ppl, report_nats, gen_ppl = table[name]
        assert float(report_ppl) == pytest.approx(ppl, abs=0.005)
        assert float(report_nats) == pytest.approx(nats, abs=0.005)
        assert float(report_nats) == pytest.approx(math.log(float(report_ppl)), abs=0.01)
        if name == "ar":
            assert gen_ppl == "n/a"
            # exact, and trained: below the perplexity V of the uniform distribution
            assert ppl < VOCAB_SIZE
        else:
            gen = _var(root, f"eval/{name}/gen_ppl", "perplexity")
            assert math.isfinite(gen) and gen > 1.0
            assert float(gen_ppl) == pytest.approx(gen, abs=0.005)
            samples = (root / "output" / "eval" / name / "samples.txt").read_text().splitlines()
            assert len(samples) == 4 and any(s.strip() for s in samples), name


def check_wers(root: Path, report: str) -> None:
    table = _table(report, "## ASR n-best rescoring")
    combined = ["+ " + " + ".join(c) for c in COMBINATIONS]
    assert list(table) == ["first pass", "oracle", *(f"+ {m}" for m in MODELS), *combined], report
    sclite_table = _table(report, "## NIST sclite")
    assert list(sclite_table) == ["first pass", *(f"+ {m}" for m in MODELS), *combined], report
    for col, part in enumerate(("dev", "test")):
        nbest = _literal(root / "alias" / "asr" / f"{part}_nbest" / "output" / "nbest.py.gz")
        refs = _literal(root / "alias" / "asr" / f"{part}_nbest" / "output" / "references.py.gz")
        assert set(nbest) == set(refs) and len(refs) == 4
        # first pass and oracle recomputed with an independent edit distance
        first_pass = corpus_wer(refs, {t: _first_best(h) for t, h in nbest.items()})
        oracle_hyps = {
            t: min(
                (h for _, h in hyps), key=lambda h: edit_distance(refs[t].split(), h.split()), default=None
            )
            for t, hyps in nbest.items()
        }
        oracle = corpus_wer(refs, oracle_hyps)
        assert 0.0 <= oracle <= first_pass <= 100.0, part
        assert float(table["first pass"][col]) == pytest.approx(first_pass, abs=0.005)
        assert float(table["oracle"][col]) == pytest.approx(oracle, abs=0.005)
        for system, directory in (
            [("first pass", "first_pass")]
            + [(f"+ {m}", m) for m in MODELS]
            + [("+ " + " + ".join(c), "+".join(c)) for c in COMBINATIONS]
        ):
            # NIST sclite scored the same output: its reports are in output/, and it never counts fewer
            # errors than our minimum edit distance (its alignment minimises 4/3/3-weighted errors)
            reports = root / "output" / "asr" / directory / f"{part}_sclite"
            assert all((reports / f"sclite.{ext}").exists() for ext in ("sys", "pra", "dtl")), reports
            sclite_wer = _var(root, f"asr/{directory}/{part}_sclite", "wer")
            ours = first_pass if system == "first pass" else float(table[system][col])
            assert sclite_wer >= ours - 0.005, (system, part)
            assert float(sclite_table[system][col]) == pytest.approx(sclite_wer, abs=0.005)
        for combination in COMBINATIONS:
            alias = "asr/" + "+".join(combination)
            wer = _var(root, f"{alias}/{part}_rescored", "wer")
            assert float(table["+ " + " + ".join(combination)][col]) == pytest.approx(wer, abs=0.005)
            best = _literal(root / "alias" / alias / f"{part}_rescored" / "output" / "search_results.py.gz")
            assert wer == pytest.approx(corpus_wer(refs, best), abs=1e-9)
            assert oracle <= wer <= 100.0, (combination, part)
            if part == "dev":
                # coordinate descent starts at the first pass and its first block is the grid of the first LM
                assert wer <= _var(root, f"asr/{combination[0]}/{part}_rescored", "wer") <= first_pass
                assert _var(root, f"{alias}/tune", "wer") == pytest.approx(wer, abs=1e-9)
                trace = (root / "output" / alias / "tune_trace.txt").read_text()
                assert trace.startswith("method: coordinate descent") and "chosen:" in trace
                assert f"### Tuning on dev: + {' + '.join(combination)}" in report
        for name in MODELS:
            applied = f"asr/{name}/{part}_rescored"
            assert _var(root, applied, "first_pass_wer") == pytest.approx(first_pass, abs=1e-9)
            assert _var(root, applied, "oracle_wer") == pytest.approx(oracle, abs=1e-9)
            wer = _var(root, applied, "wer")
            assert float(table[f"+ {name}"][col]) == pytest.approx(wer, abs=0.005)
            # the rescored 1-best is one of the n-best hypotheses; its WER recomputed from the output
            best = _literal(root / "alias" / applied / "output" / "search_results.py.gz")
            assert all(best[t] in {h for _, h in nbest[t]} for t in refs)
            assert wer == pytest.approx(corpus_wer(refs, best), abs=1e-9)
            assert oracle <= wer <= 100.0, (name, part)
            if part == "dev":
                # tuned on dev over a grid that contains (lm_scale 0, length_scale 0) = the first pass
                assert wer <= first_pass, name
                assert _var(root, f"asr/{name}/tune", "wer") == pytest.approx(wer, abs=1e-9)
                lm_scale = _var(root, f"asr/{name}/tune", "lm_scale")
                assert math.isfinite(lm_scale) and lm_scale >= 0.0


def check_training(root: Path) -> None:
    """Every training stage wrote a learning-rate file with finite dev scores for each of its epochs."""
    stages = {
        "ar": ["train"],
        "mdlm": ["train"],
        "bd3lm_4": ["full_range", "clipped"],
        "bd3lm_16": ["full_range", "clipped"],
    }
    for name, names in stages.items():
        for stage in names:
            epochs = _literal(root / "output" / "lm" / name / stage / "learning_rates")
            assert list(epochs) == [1], (name, stage)  # config/tiny.py: one epoch per stage
            lr, scores = epochs[1]
            assert lr > 0 and math.isfinite(lr)
            loss = "nll" if name == "ar" else "nelbo"  # the AR LM reports its exact NLL
            dev = scores[f"dev_loss_{loss}"]
            assert math.isfinite(dev) and dev > 0.0, (name, stage)
            assert scores[f"dev_loss_{loss}:exp"] == pytest.approx(math.exp(dev), rel=1e-6)
            assert math.isfinite(scores[f"train_loss_{loss}"]), (name, stage)
    # the searched clip range is a proper sub-range of (0, 1] and what the clipped BD3-LM stage trained with
    for block_size in (4, 16):
        alias = root / "alias" / "lm" / f"bd3lm_{block_size}"
        text = (alias / "clip_search" / "output" / "noise_range").read_text().strip()
        low, high = ast.literal_eval(text)
        assert 0.0 < low < high <= 1.0
        assert f"'noise_range': {text}" in (alias / "clipped" / "output" / "returnn.config").read_text()


@pytest.mark.slow
def test_tiny_experiment_end_to_end(tmp_path: Path):
    root = tmp_path / "project"
    root.mkdir()
    os.symlink(REPO / "config", root / "config")
    shutil.copy(REPO / "settings.py", root / "settings.py")
    run_manager_to_completion(root, "config/tiny.py")

    report = (root / "output" / "report.md").read_text()
    check_perplexities(root, report)
    check_wers(root, report)
    check_training(root)
    assert (root / "output" / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for alias in ("data/kjv/corpus", "data/kjv/spm300", "lm/ar/train", "asr/test_nbest", "report"):
        job_dir = root / "alias" / alias  # finished, and (auto-cleanup is on) work/ and logs archived
        assert (job_dir / "finished").exists() or (job_dir / "finished.tar.gz").exists(), alias

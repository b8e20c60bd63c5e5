"""Perplexity and n-best rescoring through RETURNN forward passes, against direct computation."""

from __future__ import annotations

import math

import pytest
import torch

from jobs.lm_eval import ComputePerplexityJob, RescoreNBestJob
from jobs.returnn import PtCheckpoint
from recipe.asr.search_output import NBestScoreCheckpoint, read_nbest, write_search_output
from recipe.data.sentencepiece_model import load_sentencepiece
from recipe.lm import build as lm_models
from recipe.lm.likelihood import sequence_log_likelihood
from recipe.returnn_glue.datasets import text_ogg_zip_dev_dataset
from sisyphus import tk


def _train_tiny(data, kind: str, path, steps: int = 60, **extra) -> dict:
    """A quickly trained tiny LM saved as a RETURNN-style checkpoint; returns its lm_config."""
    torch.manual_seed(0)
    config = {
        "kind": kind,
        "vocab_size": data.vocab_size,
        "eos_id": data.eos_id,
        "preset": "tiny",
        "dropout": 0.0,
        "max_seq_len": 16,
        **extra,
    }
    model = lm_models.build_model(config)
    sp = load_sentencepiece(data.spm_model, add_eos=True)
    seqs = [sp.encode(line) for line in data.train_text.read_text().splitlines()[:64]]
    lengths = torch.tensor([len(s) for s in seqs])
    tokens = torch.zeros(len(seqs), int(lengths.max()), dtype=torch.long)
    for i, s in enumerate(seqs):
        tokens[i, : len(s)] = torch.tensor(s)
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    for _ in range(steps):
        total, n = lm_models.loss(model, tokens, lengths)
        (total / n).backward()
        opt.step()
        opt.zero_grad()
    torch.save({"model": model.state_dict(), "epoch": 1}, path)
    return config


def _direct_scores(data, config, ckpt, texts: list[str], **kwargs) -> torch.Tensor:
    model = lm_models.load_checkpoint(config, ckpt)
    sp = load_sentencepiece(data.spm_model, add_eos=True)
    seqs = [sp.encode(t) for t in texts]
    lengths = torch.tensor([len(s) for s in seqs])
    tokens = torch.zeros(len(seqs), int(lengths.max()), dtype=torch.long)
    for i, s in enumerate(seqs):
        tokens[i, : len(s)] = torch.tensor(s)
    return sequence_log_likelihood(model, tokens, lengths, **kwargs)


def _dev_dataset(data) -> dict:
    return text_ogg_zip_dev_dataset(tk.Path(str(data.dev_ogg_zip)), tk.Path(str(data.spm_model)))


@pytest.mark.slow
def test_perplexity_exact_for_ar_and_seed_stable_for_mdlm(fresh_graph, tiny_lm_data, tmp_path):
    ar_ckpt = tmp_path / "ar.pt"
    ar_config = _train_tiny(tiny_lm_data, "ar", ar_ckpt)
    job = ComputePerplexityJob(
        PtCheckpoint(tk.Path(str(ar_ckpt))), ar_config, _dev_dataset(tiny_lm_data), device="cpu"
    )
    tk.run_job(job)
    direct = _direct_scores(tiny_lm_data, ar_config, ar_ckpt, list(tiny_lm_data.dev_text.values()))
    sp = load_sentencepiece(tiny_lm_data.spm_model, add_eos=True)
    num_tokens = sum(len(sp.encode(t)) for t in tiny_lm_data.dev_text.values())
    assert job.out_num_seqs.get() == len(tiny_lm_data.dev_text)
    assert job.out_num_tokens.get() == num_tokens
    assert job.out_perplexity.get() == pytest.approx(math.exp(-float(direct.sum()) / num_tokens), rel=1e-4)

    mdlm_ckpt = tmp_path / "mdlm.pt"
    mdlm_config = _train_tiny(tiny_lm_data, "mdlm", mdlm_ckpt)
    ppl = []
    for seed in (1, 2):
        j = ComputePerplexityJob(
            PtCheckpoint(tk.Path(str(mdlm_ckpt))),
            mdlm_config,
            _dev_dataset(tiny_lm_data),
            num_samples=256,
            seed=seed,
            device="cpu",
        )
        tk.run_job(j)
        ppl.append(j.out_perplexity.get())
    assert ppl[0] != ppl[1]  # really different noise
    assert abs(ppl[0] - ppl[1]) / ppl[0] < 0.005


@pytest.mark.slow
def test_rescoring_matches_direct_scores_and_resumes(fresh_graph, tiny_lm_data, tmp_path):
    ckpt = tmp_path / "ar.pt"
    config = _train_tiny(tiny_lm_data, "ar", ckpt)
    nbest = {
        "utt/1": [(-1.0, "the lord said unto moses"), (-2.0, "the lord said unto moss"), (-3.0, "")],
        "utt/2": [(-0.5, "go speak to children of israel"), (-0.7, "go speak to children of isra\u00ebl")],
        "utt/3": [(-0.1, "and aaron")],
    }
    hyp_file = tmp_path / "nbest.py.gz"
    write_search_output(hyp_file, nbest)
    job = RescoreNBestJob(
        tk.Path(str(hyp_file)),
        PtCheckpoint(tk.Path(str(ckpt))),
        config,
        tk.Path(str(tiny_lm_data.spm_model)),
        device="cpu",
    )
    # a crashed earlier run left utt/3 scored (with a marker value that must be kept, not recomputed)
    job._sis_setup_directory()
    with NBestScoreCheckpoint(job._sis_path("work/lm_scores.checkpoint", abspath=True)) as partial:
        partial.add("utt/3", ["and aaron"], [-123.0])
    tk.run_job(job)
    scores = read_nbest(job.out_lm_scores.get_path())
    assert list(scores) == list(nbest) and [t for _, t in scores["utt/1"]] == [t for _, t in nbest["utt/1"]]
    assert scores["utt/3"] == [(-123.0, "and aaron")]
    for tag in ("utt/1", "utt/2"):
        direct = _direct_scores(tiny_lm_data, config, ckpt, [t for _, t in nbest[tag]])
        assert [s for s, _ in scores[tag]] == pytest.approx(direct.tolist(), rel=1e-4)
    report = open(job.out_report.get_path()).read()
    assert "U+00EB" in report and "1 empty hypotheses" in report and "1 utterances already scored" in report


def test_unparsable_hypothesis_file_names_file_and_line(fresh_graph, tiny_lm_data, tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("{\n'utt/1': [(-1.0, 'fine')],\n'utt/2': [(-1.0, 'broken'\n}\n")
    job = RescoreNBestJob(
        tk.Path(str(bad)),
        PtCheckpoint(tk.Path(str(tmp_path / "none.pt"))),
        {"kind": "ar", "vocab_size": tiny_lm_data.vocab_size},
        tk.Path(str(tiny_lm_data.spm_model)),
        device="cpu",
    )
    with pytest.raises(RuntimeError) as e:
        tk.run_job(job)
    assert "bad.py:3" in str(e.value) or "bad.py:4" in str(e.value)

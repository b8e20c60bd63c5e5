"""Perplexity and n-best rescoring through RETURNN forward passes, against computations written here:
AR log-probabilities from the backbone's logits (log_softmax, summed with EOS), and the MDLM NELBO
enumerated over all masks of short sequences."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from jobs.lm_eval import ComputePerplexityJob, RescoreNBestJob
from jobs.returnn import PtCheckpoint
from recipe.asr.search_output import NBestScoreCheckpoint, read_nbest, write_search_output
from recipe.data.ogg_zip import write_text_ogg_zip
from recipe.data.sentencepiece_model import load_sentencepiece
from recipe.data.text_dict import read_text_dict
from recipe.lm.build import build_model, training_loss
from recipe.lm.config import LmConfig, preset_dims
from recipe.returnn_glue.datasets import text_ogg_zip_dev_dataset
from sisyphus import tk


def _lm_config(data, kind: str, **extra) -> LmConfig:
    fields = {"max_seq_len": 16, **preset_dims("tiny"), "dropout": 0.0, **extra}
    return LmConfig(kind=kind, vocab_size=data.vocab_size, eos_id=data.eos_id, **fields)


def _train_tiny(data, kind: str, path, steps: int = 60, **extra) -> tuple[LmConfig, torch.nn.Module]:
    """A quickly trained tiny LM saved as a RETURNN-style checkpoint; returns (lm_config, model)."""
    torch.manual_seed(0)
    config = _lm_config(data, kind, **extra)
    model = build_model(config)
    sp = load_sentencepiece(data.spm_model, add_eos=True)
    seqs = [sp.encode(line) for line in data.train_text.read_text().splitlines()[:64]]
    lengths = torch.tensor([len(s) for s in seqs])
    tokens = torch.zeros(len(seqs), int(lengths.max()), dtype=torch.long)
    for i, s in enumerate(seqs):
        tokens[i, : len(s)] = torch.tensor(s)
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    for _ in range(steps):
        total, n = training_loss(model, tokens, lengths, train=True)
        (total / n).backward()
        opt.step()
        opt.zero_grad()
    torch.save({"model": model.state_dict(), "epoch": 1}, path)
    return config, model.eval()


def _encode(data, texts) -> list[list[int]]:
    sp = load_sentencepiece(data.spm_model, add_eos=True)
    return [sp.encode(t) for t in texts]


@torch.no_grad()
def _ar_log_prob(model, ids: list[int], eos_id: int) -> float:
    """log p(x) = sum_i log softmax(backbone logits at [EOS, x_<i])[x_i], one sequence, no padding."""
    inputs = torch.tensor([[eos_id, *ids[:-1]]])
    logp = torch.log_softmax(model.backbone(inputs, causal=True)[0].double(), dim=-1)
    return float(logp[torch.arange(len(ids)), torch.tensor(ids)].sum())


@torch.no_grad()
def _exact_mdlm_nelbo(model, ids: list[int], eps_min: float = 1e-3, eps_max: float = 1.0) -> float:
    """The NELBO that the Monte-Carlo scores estimate, by enumerating all 2^n masks M of the sequence:

        E_{t ~ U[eps_min, eps_max]} (1/t) sum_M t^|M| (1 - t)^(n - |M|) sum_{l in M} -log x_theta(x_M)_l[x_l],

    the t-integral of each term in closed form (binomial expansion of (1 - t)^(n - k))."""
    n = len(ids)
    masks = [m for m in itertools.product((False, True), repeat=n) if any(m)]
    x = torch.tensor(ids)
    xt = torch.stack([torch.where(torch.tensor(m), model.mask_id, x) for m in masks])
    logp = model.denoiser_log_probs(xt, torch.full((len(masks),), n), xt).double()
    token_logp = logp[:, torch.arange(n), x]  # [masks, n]
    total = 0.0
    for row, m in enumerate(masks):
        k = sum(m)
        ce = -float(token_logp[row][torch.tensor(m)].sum())
        integral = sum(
            math.comb(n - k, j) * (-1) ** j * (eps_max ** (k + j) - eps_min ** (k + j)) / (k + j)
            for j in range(n - k + 1)
        )
        total += ce * integral / (eps_max - eps_min)
    return total


def _dev_dataset(data, texts: dict[str, str] | None = None, tmp_path=None) -> dict:
    ogg = data.dev_ogg_zip
    if texts is not None:
        ogg = tmp_path / "short_dev.ogg.zip"
        write_text_ogg_zip(texts, ogg)
    return text_ogg_zip_dev_dataset(tk.Path(str(ogg)), tk.Path(str(data.spm_model)))


SHORT_TEXTS = {"s/1": "go", "s/2": "the lord", "s/3": "moses said", "s/4": "aaron", "s/5": "speak to egypt"}


@pytest.mark.slow
def test_ar_perplexity_is_the_exact_likelihood_of_the_dev_text(fresh_graph, tiny_lm_data, tmp_path):
    ckpt = tmp_path / "ar.pt"
    config, model = _train_tiny(tiny_lm_data, "ar", ckpt)
    job = ComputePerplexityJob(
        PtCheckpoint(tk.Path(str(ckpt))), config, _dev_dataset(tiny_lm_data), device="cpu"
    )
    tk.run_job(job)
    dev = tiny_lm_data.dev_text
    ids = dict(zip(dev, _encode(tiny_lm_data, dev.values()), strict=True))
    direct = {tag: _ar_log_prob(model, seq, tiny_lm_data.eos_id) for tag, seq in ids.items()}
    num_tokens = sum(map(len, ids.values()))
    assert job.out_num_seqs.get() == len(dev)
    assert job.out_num_tokens.get() == num_tokens
    scores = {tag: float(v) for tag, v in read_text_dict(job.out_scores).items()}
    assert scores == pytest.approx(direct, rel=1e-4)
    assert job.out_perplexity.get() == pytest.approx(math.exp(-sum(direct.values()) / num_tokens), rel=1e-4)
    assert job.out_perplexity.get() > 1.0


@pytest.mark.slow
def test_mdlm_perplexity_estimates_the_exact_nelbo(fresh_graph, tiny_lm_data, tmp_path):
    """Monte-Carlo NELBO (2048 samples, two seeds) against the NELBO enumerated over all masks (the
    estimates' standard deviation is about 0.05 nats per sequence here; the tolerance is 4 of them)."""
    ckpt = tmp_path / "mdlm.pt"
    config, model = _train_tiny(tiny_lm_data, "mdlm", ckpt)
    ids = dict(zip(SHORT_TEXTS, _encode(tiny_lm_data, SHORT_TEXTS.values()), strict=True))
    assert max(map(len, ids.values())) <= 10
    exact = {tag: _exact_mdlm_nelbo(model, seq) for tag, seq in ids.items()}
    num_tokens = sum(map(len, ids.values()))
    exact_ppl = math.exp(sum(exact.values()) / num_tokens)
    ppl = []
    for seed in (1, 2):
        job = ComputePerplexityJob(
            PtCheckpoint(tk.Path(str(ckpt))),
            config,
            _dev_dataset(tiny_lm_data, SHORT_TEXTS, tmp_path),
            num_samples=2048,
            seed=seed,
            device="cpu",
        )
        tk.run_job(job)
        assert job.out_num_tokens.get() == num_tokens
        scores = {tag: -float(v) for tag, v in read_text_dict(job.out_scores).items()}
        assert scores == pytest.approx(exact, abs=0.2), seed
        ppl.append(job.out_perplexity.get())
    assert ppl[0] != ppl[1]  # really different noise ...
    assert ppl == pytest.approx([exact_ppl, exact_ppl], rel=0.02)  # ... around the same exact value


@pytest.mark.slow
def test_ar_rescoring_matches_direct_log_probs_and_resumes(fresh_graph, tiny_lm_data, tmp_path):
    ckpt = tmp_path / "ar.pt"
    config, model = _train_tiny(tiny_lm_data, "ar", ckpt)
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
        texts = [t for _, t in nbest[tag]]
        direct = [_ar_log_prob(model, seq, tiny_lm_data.eos_id) for seq in _encode(tiny_lm_data, texts)]
        assert [s for s, _ in scores[tag]] == pytest.approx(direct, rel=1e-4)
    # the empty hypothesis is scored as EOS alone
    assert scores["utt/1"][2][0] == pytest.approx(
        _ar_log_prob(model, [tiny_lm_data.eos_id], tiny_lm_data.eos_id), rel=1e-4
    )
    report = open(job.out_report.get_path()).read()
    assert "U+00EB" in report and "1 empty hypotheses" in report and "1 utterances already scored" in report


@pytest.mark.slow
def test_mdlm_rescoring_estimates_the_exact_nelbo(fresh_graph, tiny_lm_data, tmp_path):
    """-NELBO scores of short hypotheses with K = 2048 shared, stratified samples against the exact NELBO
    (standard deviation about 0.05 nats per hypothesis here)."""
    ckpt = tmp_path / "mdlm.pt"
    config, model = _train_tiny(tiny_lm_data, "mdlm", ckpt)
    texts = ["the lord", "the lord said", "moses said", "go"]
    hyp_file = tmp_path / "nbest.py.gz"
    write_search_output(hyp_file, {"utt/1": [(-1.0, t) for t in texts]})
    job = RescoreNBestJob(
        tk.Path(str(hyp_file)),
        PtCheckpoint(tk.Path(str(ckpt))),
        config,
        tk.Path(str(tiny_lm_data.spm_model)),
        sampling_number=2048,
        device="cpu",
    )
    tk.run_job(job)
    scores = [s for s, _ in read_nbest(job.out_lm_scores.get_path())["utt/1"]]
    exact = [-_exact_mdlm_nelbo(model, seq) for seq in _encode(tiny_lm_data, texts)]
    assert scores == pytest.approx(exact, abs=0.2)
    # the exact scores are far enough apart that the estimates rank the hypotheses like them
    assert sorted(range(4), key=scores.__getitem__) == sorted(range(4), key=exact.__getitem__)


def test_unparsable_hypothesis_file_names_file_and_line(fresh_graph, tiny_lm_data, tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("{\n'utt/1': [(-1.0, 'fine')],\n'utt/2': [(-1.0, 'broken'\n}\n")
    job = RescoreNBestJob(
        tk.Path(str(bad)),
        PtCheckpoint(tk.Path(str(tmp_path / "none.pt"))),
        _lm_config(tiny_lm_data, "ar"),
        tk.Path(str(tiny_lm_data.spm_model)),
        device="cpu",
    )
    with pytest.raises(RuntimeError) as e:
        tk.run_job(job)
    assert "bad.py:3" in str(e.value) or "bad.py:4" in str(e.value)

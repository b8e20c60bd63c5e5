"""A tiny GPT-2-style byte-level BPE trained here with ``tokenizers`` drives perplexity (the project's
protocol and bd3lms' wrapped-chunk protocol), n-best rescoring and sampling end to end through the real
``sis manager``; the numbers are checked against the same models run in this process. Bad tokenizer
input fails the job with a message naming the file, and the job is not marked finished."""

from __future__ import annotations

import ast
import gzip
import math
from pathlib import Path

import pytest
import torch

from recipe.asr.search_output import write_search_output
from recipe.data.text_dict import write_text_lines
from recipe.data.tokenizers import TokenizerFiles, load_tokenizer, wrap_chunks
from recipe.lm.build import build_model
from recipe.lm.config import LmConfig, preset_dims
from recipe.lm.likelihood import sequence_log_likelihood
from recipe.lm.sampling import sample_bd3lm
from recipe.returnn_glue.forward import tag_generator
from tests.data.test_tokenizers import train_byte_level_bpe, train_wordpiece
from tests.pipeline_run import REPO, run_manager_to_completion

TEXTS = ["the lord said unto moses", "let there be light", "and aaron went to egypt", "god created the earth"]
NBEST = {
    "utt/1": [(-1.0, "the lord said unto moses"), (-2.0, "the lord sad on to moses"), (-3.0, "")],
    "utt/2": [(-1.5, "let there be light"), (-1.0, "let their bee light")],
}
CONFIG = """
from jobs.diffusion import SampleLmJob
from jobs.lm_eval import ComputePerplexityJob, RescoreNBestJob
from jobs.returnn import PtCheckpoint
from jobs.text import TokenizeTextJob
from recipe.data.tokenizers import TokenizerFiles
from recipe.lm.config import LmConfig
from recipe.returnn_glue.datasets import token_id_dataset
from sisyphus import tk


def py():
    tokenizer = TokenizerFiles.tokenizer_json(tk.Path({tokenizer!r}))
    text = tk.Path({text!r})
    ar, ar_ckpt = {ar!r}, PtCheckpoint(tk.Path({ar_ckpt!r}))
    bd3, bd3_ckpt = {bd3!r}, PtCheckpoint(tk.Path({bd3_ckpt!r}))
    lines = TokenizeTextJob(text, tokenizer)
    lines.add_alias("bpe/lines")
    ppl = ComputePerplexityJob(ar_ckpt, ar, token_id_dataset(lines.out_text_dict, lines.out_vocab), device="cpu")
    ppl.add_alias("bpe/ar_ppl")
    tk.register_output("bpe/ar_ppl", ppl.out_perplexity)
    chunks = TokenizeTextJob(text, tokenizer, wrap_length=16)
    chunks.add_alias("bpe/chunks")
    dataset = token_id_dataset(chunks.out_text_dict, chunks.out_vocab)
    bd3_ppl = ComputePerplexityJob(bd3_ckpt, bd3, dataset, num_samples=3, protocol="bd3lms", device="cpu")
    bd3_ppl.add_alias("bpe/bd3lm_ppl")
    tk.register_output("bpe/bd3lm_ppl", bd3_ppl.out_perplexity)
    rescore = RescoreNBestJob(tk.Path({nbest!r}), ar_ckpt, ar, tokenizer=tokenizer, device="cpu")
    rescore.add_alias("bpe/ar_rescore")
    tk.register_output("bpe/ar_lm_scores.py.gz", rescore.out_lm_scores)
    samples = SampleLmJob(bd3_ckpt, bd3, tokenizer=tokenizer, num_samples=2, max_len=12, nucleus_rule="bd3lms")
    samples.add_alias("bpe/samples")
    tk.register_output("bpe/samples.txt", samples.out_samples)
"""


def _model(kind: str, path: Path, **extra) -> tuple[LmConfig, torch.nn.Module]:
    """A random tiny LM for the 300-token BPE unless ``extra`` says otherwise (output layer scaled so
    that scores differ), saved as a RETURNN checkpoint."""
    fields = {"vocab_size": 300, "eos_id": 0, "max_seq_len": 32, **preset_dims("tiny"), "dropout": 0.0}
    config = LmConfig(kind=kind, **(fields | extra))
    torch.manual_seed(0)
    model = build_model(config)
    with torch.no_grad():
        model.backbone.out.weight.normal_(0.0, 0.5, generator=torch.Generator().manual_seed(1))
    torch.save({"model": model.state_dict(), "epoch": 1}, path)
    return config, model.eval()


def _output(root: Path, alias: str, name: str) -> Path:
    return root / "alias" / alias / "output" / name


@pytest.mark.slow
def _check_bd3lms_protocol_perplexity(root: Path, alias: str, model, chunks: list[list[int]]) -> None:
    """The job's bd3lms-protocol perplexity of 16-token chunks: each chunk scored after its BOS (the 15
    tokens that follow, 3 independent samples, the noise from the tag's generator) and only those counted."""
    total = 0.0
    for i, chunk in enumerate(chunks):
        total += float(
            sequence_log_likelihood(
                model,
                torch.tensor([chunk[1:]]),
                torch.tensor([15]),
                num_samples=3,
                noise="independent",
                generator=[tag_generator(torch.device("cpu"), 0, f"chunk-{i}")],
            )
        )
    assert int(_output(root, alias, "num_tokens").read_text()) == 15 * len(chunks)
    nats = float(_output(root, alias, "nats_per_token").read_text())
    assert nats == pytest.approx(-total / (15 * len(chunks)), rel=1e-4)


def test_bpe_tokenizer_drives_perplexity_rescoring_and_sampling_through_sis_manager(tmp_path: Path):
    tok_path = train_byte_level_bpe(tmp_path / "bpe")
    tokenizer = load_tokenizer(TokenizerFiles.tokenizer_json(tok_path))
    write_text_lines(tmp_path / "text.txt", TEXTS)
    write_search_output(tmp_path / "nbest.py.gz", NBEST)
    ar, ar_model = _model("ar", tmp_path / "ar.pt")
    bd3, bd3_model = _model("bd3lm", tmp_path / "bd3lm.pt", block_size=4)
    root = tmp_path / "project"
    root.mkdir()
    (root / "settings.py").write_text((REPO / "settings.py").read_text())
    (root / "bpe_pipeline.py").write_text(
        CONFIG.format(
            tokenizer=str(tok_path),
            text=str(tmp_path / "text.txt"),
            ar=ar,
            ar_ckpt=str(tmp_path / "ar.pt"),
            bd3=bd3,
            bd3_ckpt=str(tmp_path / "bd3lm.pt"),
            nbest=str(tmp_path / "nbest.py.gz"),
        )
    )
    run_manager_to_completion(root, "bpe_pipeline.py")

    # AR perplexity: exact log p of every line's BPE ids + EOS
    seqs = [[*tokenizer.encode(t), tokenizer.eos_id] for t in TEXTS]
    ar_log_p = [
        float(sequence_log_likelihood(ar_model, torch.tensor([s]), torch.tensor([len(s)]))) for s in seqs
    ]
    tokens = sum(map(len, seqs))
    ppl = float(_output(root, "bpe/ar_ppl", "perplexity").read_text())
    assert ppl == pytest.approx(math.exp(-sum(ar_log_p) / tokens), rel=1e-4)
    assert int(_output(root, "bpe/ar_ppl", "num_tokens").read_text()) == tokens

    # bd3lms protocol: 16-token chunks [BOS] ... [EOS]; BOS (= EOS, the model's own BOS) is neither scored
    # nor counted: the model scores the rest after its BOS; each chunk's noise from its tag's generator
    chunks = wrap_chunks([tokenizer.encode(t) for t in TEXTS], 16, tokenizer.bos_id, tokenizer.eos_id)
    assert len(chunks) >= 2 and all(c[0] == tokenizer.eos_id == tokenizer.bos_id for c in chunks)
    _check_bd3lms_protocol_perplexity(root, "bpe/bd3lm_ppl", bd3_model, chunks)

    # rescoring: every hypothesis re-tokenised with the BPE, scored with the AR LM, input order kept
    scores = ast.literal_eval(
        gzip.decompress(_output(root, "bpe/ar_rescore", "lm_scores.py.gz").read_bytes()).decode()
    )
    assert list(scores) == list(NBEST)
    for tag, hyps in NBEST.items():
        assert [text for _, text in scores[tag]] == [text for _, text in hyps]
        for (score, text), (_, _) in zip(scores[tag], hyps, strict=True):
            ids = [*tokenizer.encode(text), tokenizer.eos_id]
            want = float(sequence_log_likelihood(ar_model, torch.tensor([ids]), torch.tensor([len(ids)])))
            assert score == pytest.approx(want, rel=1e-4), (tag, text)

    # samples: the same draws here (bd3lms' nucleus rule), decoded with the BPE, one line each
    drawn = sample_bd3lm(
        bd3_model, 2, 12, nucleus_p=0.9, nucleus_rule="bd3lms", generator=torch.Generator().manual_seed(0)
    )
    want = [" ".join(tokenizer.decode([t for t in s if t != 0]).splitlines()) for s in drawn.sequences]
    assert _output(root, "bpe/samples", "samples.txt").read_text(encoding="utf-8") == "".join(
        w + "\n" for w in want
    )


WORDPIECE_CONFIG = """
from jobs.lm_eval import ComputePerplexityJob
from jobs.pretrained import ImportBd3lmsCheckpointJob, bd3lms_lm_config
from jobs.text import TokenizeTextJob
from recipe.data.tokenizers import TokenizerFiles
from recipe.returnn_glue.datasets import token_id_dataset
from sisyphus import tk


def py():
    tokenizer = TokenizerFiles.wordpiece(tk.Path({vocab!r}))
    hf = tk.Path({hf!r})
    lm_config = bd3lms_lm_config(hf, tokenizer=tokenizer)
    imported = ImportBd3lmsCheckpointJob(hf, lm_config)
    chunks = TokenizeTextJob(tk.Path({text!r}), tokenizer, wrap_length=16)
    dataset = token_id_dataset(chunks.out_text_dict, chunks.out_vocab)
    ppl = ComputePerplexityJob(
        imported.out_checkpoint, lm_config, dataset, num_samples=3, protocol="bd3lms", device="cpu"
    )
    ppl.add_alias("wordpiece/bd3lm_ppl")
    tk.register_output("wordpiece/bd3lm_ppl", ppl.out_perplexity)
"""


@pytest.mark.slow
def test_wordpiece_tokenizer_and_bert_layout_checkpoint_through_sis_manager(tmp_path: Path):
    """An LM1B-style bd3lms checkpoint (WordPiece vocabulary with its own [MASK]; BOS [CLS], EOS [SEP])
    as a Hugging Face directory: its LmConfig from the vocab.txt, imported and scored with bd3lms'
    protocol on wrapped chunks [CLS] ... [SEP]; [CLS] is the model's BOS, neither scored nor counted."""
    from recipe.lm.bd3lms_checkpoints import export_huggingface_dir

    tokenizer = load_tokenizer(TokenizerFiles.wordpiece(train_wordpiece(tmp_path / "wp")))
    ids = {"eos_id": tokenizer.eos_id, "bos_id": tokenizer.bos_id, "mask_id": tokenizer.mask_id}
    bd3, model = _model(
        "bd3lm",
        tmp_path / "bd3lm.pt",
        vocab_size=tokenizer.vocab_size,
        max_seq_len=15,
        block_size=4,
        bd3lms_layout=True,
        **ids,
    )
    export_huggingface_dir(
        bd3, {k: v for k, v in model.state_dict().items() if k.startswith("backbone.")}, tmp_path / "hf"
    )
    write_text_lines(tmp_path / "text.txt", TEXTS)
    root = tmp_path / "project"
    root.mkdir()
    (root / "settings.py").write_text((REPO / "settings.py").read_text())
    (root / "wp_pipeline.py").write_text(
        WORDPIECE_CONFIG.format(
            vocab=str(tmp_path / "wp" / "vocab.txt"), hf=str(tmp_path / "hf"), text=str(tmp_path / "text.txt")
        )
    )
    run_manager_to_completion(root, "wp_pipeline.py")

    chunks = wrap_chunks([tokenizer.encode(t) for t in TEXTS], 16, tokenizer.bos_id, tokenizer.eos_id)
    assert len(chunks) >= 2 and all(c[0] == tokenizer.bos_id != tokenizer.eos_id for c in chunks)
    _check_bd3lms_protocol_perplexity(root, "wordpiece/bd3lm_ppl", model, chunks)


def test_tokenizer_that_does_not_fit_the_lm_fails_naming_the_file(fresh_graph, tmp_path: Path):
    """A 300-token BPE for an LM with vocab_size 301: the job fails before any scoring, the message
    names the tokenizer file, and nothing is marked finished."""
    from jobs.lm_eval import RescoreNBestJob
    from jobs.returnn import PtCheckpoint
    from sisyphus import tk

    tok_path = train_byte_level_bpe(tmp_path / "bpe")
    write_search_output(tmp_path / "nbest.py.gz", NBEST)
    config = LmConfig(kind="ar", vocab_size=301, eos_id=0, max_seq_len=32, **preset_dims("tiny"))
    job = RescoreNBestJob(
        tk.Path(str(tmp_path / "nbest.py.gz")),
        PtCheckpoint(tk.Path(str(tmp_path / "missing.pt"))),
        config,
        tokenizer=TokenizerFiles.tokenizer_json(tk.Path(str(tok_path))),
    )
    with pytest.raises(
        RuntimeError, match=r"tokenizer .*bpe/tokenizer\.json has vocab_size=300, eos_id=0; the LM"
    ):
        tk.run_job(job)
    assert not job._sis_finished()
    assert not Path(job.out_lm_scores.get_path()).exists()
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    job = RescoreNBestJob(
        tk.Path(str(tmp_path / "nbest.py.gz")),
        PtCheckpoint(tk.Path(str(tmp_path / "missing.pt"))),
        config,
        tokenizer=TokenizerFiles.tokenizer_json(tk.Path(str(broken))),
    )
    with pytest.raises(RuntimeError, match=r"broken\.json: not valid JSON"):
        tk.run_job(job)
    assert not job._sis_finished()


def test_bd3lms_protocol_scores_chunks_after_their_bos_or_with_position_zero_as_context() -> None:
    """``ignore_bos`` in the forward pass: a chunk starting with the model's BOS (the EOS id) is the
    model's score of the rest; another first token stays as unmasked, unscored context."""
    from recipe.returnn_glue.forward import _score_without_bos

    config = LmConfig(
        kind="bd3lm", vocab_size=9, eos_id=0, max_seq_len=8, block_size=2, **preset_dims("tiny")
    )
    torch.manual_seed(0)
    model = build_model(config).eval()
    tokens = torch.tensor([[0, 3, 4, 5, 0, 0], [2, 3, 4, 5, 6, 0], [0, 7, 8, 1, 2, 3]])
    lengths = torch.tensor([5, 6, 6])
    opts = {"num_samples": 3}

    def gens():
        return [torch.Generator().manual_seed(s) for s in (1, 2, 3)]

    got = _score_without_bos(model, tokens, lengths, gens(), opts)
    g = gens()
    for row, drop in ((0, True), (1, False), (2, True)):
        want = sequence_log_likelihood(
            model,
            tokens[row : row + 1, 1:] if drop else tokens[row : row + 1],
            lengths[row : row + 1] - int(drop),
            num_samples=3,
            noise="independent",
            generator=[g[row]],
            ignore_first=not drop,
        )
        assert float(got[row]) == pytest.approx(float(want), rel=1e-6), row


def test_in_process_jobs_with_a_bpe_tokenizer(fresh_graph, tmp_path: Path) -> None:
    """GenerativePerplexityJob and SearchNoiseRangeJob (bd3lms' per-block var_min statistic) encode
    their texts with the BPE: the perplexity is the AR model's exact one of the BPE ids."""
    from jobs.diffusion import GenerativePerplexityJob, SearchNoiseRangeJob
    from jobs.returnn import PtCheckpoint
    from recipe.data.text_dict import write_text_dict
    from sisyphus import tk

    files = TokenizerFiles.tokenizer_json(tk.Path(str(train_byte_level_bpe(tmp_path / "bpe"))))
    tokenizer = load_tokenizer(files)
    ar, ar_model = _model("ar", tmp_path / "ar.pt")
    bd3, _ = _model("bd3lm", tmp_path / "bd3lm.pt", block_size=4)
    write_text_lines(tmp_path / "samples.txt", TEXTS)
    gen = GenerativePerplexityJob(
        tk.Path(str(tmp_path / "samples.txt")),
        PtCheckpoint(tk.Path(str(tmp_path / "ar.pt"))),
        ar,
        tokenizer=files,
    )
    tk.run_job(gen)
    seqs = [[*tokenizer.encode(t), tokenizer.eos_id] for t in TEXTS]
    log_p = sum(
        float(sequence_log_likelihood(ar_model, torch.tensor([s]), torch.tensor([len(s)]))) for s in seqs
    )
    assert gen.out_perplexity.get() == pytest.approx(math.exp(-log_p / sum(map(len, seqs))), rel=1e-5)

    write_text_dict(tmp_path / "dev.py", {f"d/{i}": t for i, t in enumerate(TEXTS)})
    search = SearchNoiseRangeJob(
        PtCheckpoint(tk.Path(str(tmp_path / "bd3lm.pt"))),
        bd3,
        tk.Path(str(tmp_path / "dev.py")),
        tokenizer=files,
        clip_search_widths=(0.5,),
        clip_search_delta=0.5,
        statistic="block",
    )
    tk.run_job(search)
    table = Path(search.out_variances.get_path()).read_text().splitlines()
    assert table[0] == "beta\tomega\tsummed variance of the per-block mean loss (nats/token)^2"
    assert len(table) == 1 + 3 and search.out_noise_range.get() in [(0.001, 1.0), (0.001, 0.5), (0.5, 1.0)]

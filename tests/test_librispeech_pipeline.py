"""``config/librispeech.py``: (a) the default graph — 10k SentencePiece, "small" LMs on GPUs, no KJV job —
built in-process; (b) the same graph at toy sizes (``TINY``) end to end through ``sis manager`` on local
fixture archives in LibriSpeech's layout (``file://`` URLs), with finite perplexities on every subset."""

from __future__ import annotations

import ast
import gzip
import math
import random
import shutil
from pathlib import Path

import pytest

from config import librispeech
from jobs.corpus import KjvCorpusJob, MergeTextDictsJob, NormalizeTextLinesJob, SplitCorpusJob
from jobs.librispeech import DownloadLibriSpeechLmCorpusJob, DownloadLibriSpeechTranscriptionsJob
from jobs.lm_eval import ComputePerplexityJob
from jobs.returnn import ReturnnTrainingJob
from jobs.sentencepiece import SentencePieceType, TrainSentencePieceJob
from recipe.data.download import sha256_of_file
from recipe.data.librispeech import LIBRISPEECH_SUBSETS, LM_CORPUS_URL
from recipe.data.text_dict import read_text_dict, read_text_lines, write_text_dict
from recipe.lm.config import LmConfig
from tests.data.test_librispeech import make_librispeech_tar
from tests.pipeline_run import REPO, run_manager_to_completion
from tests.test_tiny_pipeline import _literal

EVAL = ("dev-clean", "dev-other", "test-clean", "test-other")


def _created_jobs() -> list:
    from sisyphus import job as job_module

    return list(job_module.created_jobs.values())


def test_default_graph(fresh_graph):
    librispeech.py()
    jobs = _created_jobs()
    by_type: dict[type, list] = {}
    for job in jobs:
        by_type.setdefault(type(job), []).append(job)
    assert KjvCorpusJob not in by_type and SplitCorpusJob not in by_type
    assert all(alias.startswith("librispeech/") for job in jobs for alias in job.get_aliases())

    # the real downloads: openslr URLs, published digests of the subsets (url/checksum left to the job)
    downloads = by_type[DownloadLibriSpeechTranscriptionsJob]
    assert sorted(j.subset for j in downloads) == sorted(LIBRISPEECH_SUBSETS)
    assert all(j.url is None and j.checksum is None for j in downloads)
    (lm_corpus,) = by_type[DownloadLibriSpeechLmCorpusJob]
    assert lm_corpus.url == LM_CORPUS_URL

    (spm,) = by_type[TrainSentencePieceJob]
    assert spm.vocab_size == 10_000 and spm.model_type == SentencePieceType.UNIGRAM

    trainings = by_type[ReturnnTrainingJob]
    configs = [t.returnn_config.config["lm_config"] for t in trainings]
    assert sorted((c.kind, c.block_size) for c in configs) == [
        ("ar", None),
        *[("bd3lm", b) for b in (4, 4, 8, 8, 16, 16)],  # full noise range, then the clipped range
        ("mdlm", None),
    ]
    for job, config in zip(trainings, configs, strict=True):
        assert isinstance(config, LmConfig)
        assert (config.hidden, config.n_layers, config.n_heads) == (768, 12, 12)
        assert (config.vocab_size, config.max_seq_len) == (10_000, 256)
        assert config.dropout == 0.1 and config.ema_decay == 0.9999
        assert job.device == "gpu" and job.rqmt["gpu"] == 1
        returnn = job.returnn_config.config
        assert returnn["learning_rate"] == 3e-4 and returnn["warmup_steps"] == 2500
        assert returnn["max_seqs"] == 512
        assert returnn["train"]["class"] == "LmDataset" and returnn["train"]["partition_epoch"] == 20
        assert returnn["dev"]["class"] == "MetaDataset"
        assert job.num_epochs in (200, 20)
        assert job.num_epochs in job.keep_epochs  # the last checkpoint is always kept
    assert sorted(j.num_epochs for j in trainings) == [20] * 6 + [200] * 2

    ppl_jobs = by_type[ComputePerplexityJob]
    assert len(ppl_jobs) == 5 * len(EVAL)  # AR, MDLM, BD3-LM L' = 4, 8, 16
    assert all(j.rqmt["gpu"] == 1 for j in ppl_jobs)
    aliases = {a for j in ppl_jobs for a in j.get_aliases()}
    assert "librispeech/eval/bd3lm_8/test-other_ppl" in aliases


def test_unknown_subset_in_urls_fails_at_graph_build_time(fresh_graph):
    from dataclasses import replace

    setup = replace(librispeech.TINY, subset_urls=(("train-clean-200", "file:///x.tar.gz", None),))
    with pytest.raises(ValueError, match=r"subset_urls: no LibriSpeech subset \['train-clean-200'\]"):
        librispeech.librispeech_experiment(setup)


def test_merge_and_normalize_jobs(fresh_graph):
    """The two data-preparation steps the LibriSpeech graph adds, run through the worker in-process."""
    from sisyphus import tk

    first, second = fresh_graph / "a.py.gz", fresh_graph / "b.py"
    write_text_dict(first, {"train-clean-100/1-2-0000/1-2-0000": "go do you hear"})
    write_text_dict(second, {"train-other-500/3-4-0000/3-4-0000": "nor is mister quilter's"})
    merged = MergeTextDictsJob([tk.Path(str(first)), tk.Path(str(second))])
    tk.run_job(merged)
    assert list(read_text_dict(merged.out_text_dict.get_path()).values()) == [
        "go do you hear",
        "nor is mister quilter's",
    ]
    assert merged.out_num_seqs.get() == 2
    with pytest.raises(Exception, match="already in an earlier text dict"):
        tk.run_job(MergeTextDictsJob([tk.Path(str(first)), tk.Path(str(first))]))

    lm_text = fresh_graph / "lm.txt.gz"
    lm_text.write_bytes(gzip.compress(b"MISTER QUILTER'S MANNER\n\n--\nGO  DO YOU HEAR\n"))
    plain = fresh_graph / "plain.txt"
    plain.write_text("Already lower case.\n")
    normalized = NormalizeTextLinesJob([tk.Path(str(lm_text)), tk.Path(str(plain))])
    tk.run_job(normalized)
    assert read_text_lines(normalized.out_text_lines.get_path()) == [
        "mister quilter's manner",
        "go do you hear",
        "already lower case",
    ]
    assert normalized.out_num_lines.get() == 3


# --- end to end on fixture archives -------------------------------------------------------------------

WORDS = (
    "the and of to a in that he was it his her you as had with for she not at but be my on have him is "
    "said me which by so this all from they no were if would or when what there been one could very an "
    "who them mister we now more out do are up their your will little than then some into any well much "
    "about time know should man did like upon such never only good how before other see must am own come "
    "down say after think made might being missus again great two can went away our must long house "
    "quilter's apostle middle classes manner interesting hear thought lady hand eyes face room night"
).split()


def _sentences(rng: random.Random, count: int) -> list[str]:
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 14))).upper() for _ in range(count)]


def make_fixtures(folder: Path) -> tuple[Path, dict[str, list[str]], dict[str, tuple[Path, int]]]:
    """The LM text (.gz, upper case) and one tarball per subset; returns the LM text, the lines of
    each subset and {subset: (tarball, number of utterances)}."""
    rng = random.Random(0)
    lm_lines = _sentences(rng, 1500)
    lm_text = folder / "librispeech-lm-norm.txt.gz"
    lm_text.write_bytes(gzip.compress(("\n".join(lm_lines) + "\n").encode(), mtime=0))
    tarballs, texts = {}, {}
    for number, subset in enumerate(LIBRISPEECH_SUBSETS):
        per_chapter = 25 if subset.startswith("train") else 8
        transcriptions = {}
        for speaker in (f"{100 + number}", f"{200 + number}"):
            chapter = f"{speaker}0"
            lines = _sentences(rng, per_chapter)
            transcriptions[(subset, speaker, chapter)] = [
                f"{speaker}-{chapter}-{i:04d} {line}" for i, line in enumerate(lines)
            ]
        texts[subset] = [line.split(" ", 1)[1] for lines in transcriptions.values() for line in lines]
        tarballs[subset] = (
            make_librispeech_tar(folder / f"{subset}.tar.gz", transcriptions),
            2 * per_chapter,
        )
    return lm_text, {"lm": lm_lines, **texts}, tarballs


def _var(root: Path, alias: str, name: str):
    return ast.literal_eval((root / "alias" / alias / "output" / name).read_text())


@pytest.mark.slow
def test_tiny_librispeech_end_to_end(tmp_path: Path):
    fixtures = tmp_path / "fixtures"
    fixtures.mkdir()
    lm_text, texts, tarballs = make_fixtures(fixtures)
    subset_urls = tuple(
        (subset, path.as_uri(), sha256_of_file(path)) for subset, (path, _) in tarballs.items()
    )
    root = tmp_path / "project"
    root.mkdir()
    shutil.copy(REPO / "settings.py", root / "settings.py")
    (root / "librispeech_fixture.py").write_text(
        "from dataclasses import replace\n"
        "from config.librispeech import TINY, librispeech_experiment\n\n\n"
        "def py():\n"
        f"    librispeech_experiment(replace(TINY, lm_corpus_url={lm_text.as_uri()!r}, "
        f"lm_corpus_sha256={sha256_of_file(lm_text)!r}, subset_urls={subset_urls!r}))\n"
    )
    run_manager_to_completion(root, "librispeech_fixture.py")
    check_outputs(root, lm_text, texts, tarballs)


def check_outputs(root: Path, lm_text: Path, texts: dict, tarballs: dict) -> None:
    """The finished tiny experiment in ``root`` against the fixtures it ran on."""

    tiny, data = librispeech.TINY, "librispeech/data"
    assert _var(root, f"{data}/lm_corpus", "sha256") == sha256_of_file(lm_text)
    used = {*librispeech.TRAIN_SUBSETS, *librispeech.DEV_SUBSETS, *tiny.eval_subsets}
    for subset in used:
        assert _var(root, f"{data}/{subset}", "num_seqs") == tarballs[subset][1]
    # the LM training text: the LM text, then the 960h transcriptions, all lowercased
    train = [line.lower() for s in librispeech.TRAIN_SUBSETS for line in texts[s]]
    lines = read_text_lines(root / "alias" / data / "lm_train_text" / "output" / "text_lines.txt.gz")
    assert sorted(lines) == sorted(line.lower() for line in texts["lm"] + [t.upper() for t in train])
    assert lines[: len(texts["lm"])] == [line.lower() for line in texts["lm"]]
    assert _var(root, f"{data}/lm_train_text", "num_lines") == len(lines)
    dev = read_text_dict(root / "alias" / data / "dev" / "output" / "text_dictionary.py.gz")
    assert sorted(dev.values()) == sorted(
        line.lower() for s in ("dev-clean", "dev-other") for line in texts[s]
    )
    assert (root / "output" / data / "spm.model").stat().st_size > 0

    # every training stage: one epoch with finite dev scores; a searched clip range for each BD3-LM
    stages = {"ar": ["train"], "mdlm": ["train"], "bd3lm_4": ["full_range", "clipped"]}
    for name, names in stages.items():
        for stage in names:
            epochs = _literal(root / "output" / "librispeech" / "lm" / name / stage / "learning_rates")
            assert list(epochs) == [1], (name, stage)  # TINY: one epoch per stage
            lr, scores = epochs[1]
            dev = scores["dev_loss_nll" if name == "ar" else "dev_loss_nelbo"]
            assert lr > 0 and math.isfinite(dev) and dev > 0, (name, stage)
    low, high = _var(root, "librispeech/lm/bd3lm_4/clip_search", "noise_range")
    assert 0.0 < low < high <= 1.0
    clipped = root / "alias" / "librispeech" / "lm" / "bd3lm_4" / "clipped" / "output" / "returnn.config"
    assert repr((low, high)) in clipped.read_text()  # what the clipped stage trained with

    report = ast.literal_eval((root / "output" / "librispeech" / "eval" / "perplexities.txt").read_text())
    assert sorted(report) == sorted(stages)
    assert all(sorted(r) == sorted(tiny.eval_subsets) for r in report.values())
    for name in stages:
        for subset in tiny.eval_subsets:
            alias = f"librispeech/eval/{name}/{subset}_ppl"
            ppl = _var(root, alias, "perplexity")
            assert math.isfinite(ppl) and ppl > 1.0, (name, subset)
            assert report[name][subset] == ppl
            assert _var(root, alias, "num_seqs") == tarballs[subset][1]
            assert _var(root, alias, "nats_per_token") == pytest.approx(math.log(ppl), rel=1e-9)
            if name == "ar":
                assert ppl < tiny.vocab_size  # exact and trained: below the uniform distribution's V

"""The data jobs run through the Sisyphus worker (``tk.run_job``) in a temporary base directory."""

from pathlib import Path

import pytest
from returnn.datasets import init_dataset

from jobs.corpus import KjvCorpusJob, SplitCorpusJob, TextFileCorpusJob
from jobs.librispeech import DownloadLibriSpeechLmCorpusJob, DownloadLibriSpeechTranscriptionsJob
from jobs.returnn import instanciate_paths
from jobs.returnn_data import TextDictToOggZipJob
from jobs.sentencepiece import (
    ApplySentencePieceToTextJob,
    ExtractSentencePieceVocabJob,
    SentencePieceType,
    TrainSentencePieceJob,
)
from jobs.text import TextDictToTextLinesJob
from recipe.data.download import sha256_of_file
from recipe.data.sentencepiece_model import EOS_ID, load_sentencepiece
from recipe.data.text_dict import read_text_dict, read_text_lines, write_text_dict
from recipe.returnn_glue.datasets import lm_train_dataset, text_ogg_zip_dev_dataset
from sisyphus import gs, tk
from tests.data.conftest import GENESIS
from tests.data.test_librispeech import TRANSCRIPTIONS, make_librispeech_tar


@pytest.fixture
def base_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh Sisyphus base directory (work/ lives here) as the current directory."""
    monkeypatch.setattr(gs, "BASE_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(*jobs) -> None:
    for job in jobs:
        tk.run_job(job)


def all_seqs(opts: dict, epochs: int = 1) -> dict[str, list[int]]:
    """``{tag: ids}`` over ``epochs`` (sub-)epochs of a RETURNN dataset (its tk.Paths resolved as in a config)."""
    dataset = init_dataset(instanciate_paths(opts))
    seqs: dict[str, list[int]] = {}
    for epoch in range(1, epochs + 1):
        dataset.init_seq_order(epoch=epoch)
        index = 0
        while dataset.is_less_than_num_seqs(index):
            dataset.load_seqs(index, index + 1)
            seqs[dataset.get_tag(index)] = dataset.get_data(index, "data").tolist()
            index += 1
    return seqs


def test_corpus_to_returnn_datasets_pipeline(base_dir: Path) -> None:
    corpus = KjvCorpusJob(verses=GENESIS)
    held_out = ["kjv/Ge1:1", "kjv/Ge50:26"]
    split = SplitCorpusJob(corpus.out_text_dict, dev_fraction=0.05, test_fraction=0.05, exclude_tags=held_out)
    train_text = TextDictToTextLinesJob(split.out_train_text_dict, gzip=True)
    spm = TrainSentencePieceJob(train_text.out_text_lines, 300, SentencePieceType.UNIGRAM)
    vocab = ExtractSentencePieceVocabJob(spm.out_model)
    pieces = ApplySentencePieceToTextJob(train_text.out_text_lines, spm.out_model)
    dev_zip = TextDictToOggZipJob(split.out_dev_text_dict)
    run(corpus, split, train_text, spm, vocab, pieces, dev_zip)

    assert corpus.out_num_seqs.get() == 1533
    counts = split.out_num_seqs.get()
    train, dev, test = (
        read_text_dict(p)
        for p in (split.out_train_text_dict, split.out_dev_text_dict, split.out_test_text_dict)
    )
    assert counts == {"train": len(train), "dev": len(dev), "test": len(test), "excluded": counts["excluded"]}
    assert counts["train"] + counts["dev"] + counts["test"] + counts["excluded"] == 1533
    assert not set(held_out) & set(train) and not set(train) & (set(dev) | set(test))
    assert read_text_lines(train_text.out_text_lines) == list(train.values())
    assert vocab.out_vocab_size.get() == 300
    assert len(read_text_lines(pieces.out_sentencepiece_text)) == len(train)

    sp = load_sentencepiece(spm.out_model)
    train_opts = lm_train_dataset(train_text.out_text_lines, spm.out_model, partition_epoch=2)
    train_seqs = all_seqs(train_opts, epochs=2)
    assert sorted(train_seqs) == sorted(f"line-{i}" for i in range(len(train)))
    for line, text in enumerate(train.values()):
        ids = train_seqs[f"line-{line}"]
        assert ids[-1] == EOS_ID and sp.decode(ids[:-1]) == text
    dev_seqs = all_seqs(text_ogg_zip_dev_dataset(dev_zip.out_ogg_zip, spm.out_model))
    assert set(dev_seqs) == set(dev)
    assert all(ids[-1] == EOS_ID and sp.decode(ids[:-1]) == dev[tag] for tag, ids in dev_seqs.items())


def test_sentencepiece_job_output_is_identical_in_another_base_dir(
    base_dir: Path, genesis_text_file: Path, spm_model: str
) -> None:
    job = TrainSentencePieceJob(tk.Path(str(genesis_text_file)), 300)
    run(job)
    assert Path(job.out_model.get_path()).read_bytes() == Path(spm_model).read_bytes()


def test_text_file_corpus_job_with_exclude_list_file(base_dir: Path) -> None:
    text = base_dir / "my corpus.txt"
    text.write_text("".join(f"Sentence number {i}!\n" for i in range(200)))
    corpus = TextFileCorpusJob(tk.Path(str(text)), "mine")
    refs = base_dir / "refs.py"
    write_text_dict(refs, {"mine/line-1": "sentence number 0", "mine/line-7": "sentence number 6"})
    split = SplitCorpusJob(
        corpus.out_text_dict,
        dev_fraction=0.1,
        test_fraction=0.0,
        exclude_tags=[tk.Path(str(refs)), "mine/line-9"],
    )
    run(corpus, split)
    train = read_text_dict(split.out_train_text_dict)
    assert corpus.out_num_seqs.get() == 200
    assert not {"mine/line-1", "mine/line-7", "mine/line-9"} & set(train)
    assert read_text_dict(split.out_test_text_dict) == {}


def test_librispeech_jobs_on_local_archives(base_dir: Path) -> None:
    archive = make_librispeech_tar(base_dir / "dev-clean.tar.gz", TRANSCRIPTIONS)
    job = DownloadLibriSpeechTranscriptionsJob(
        "dev-clean", url=archive.as_uri(), checksum=sha256_of_file(archive)
    )
    lm_text = base_dir / "lm.txt.gz"
    lm_text.write_bytes(b"\x1f\x8b" + archive.read_bytes()[2:40])  # any bytes: the job only downloads
    lm_job = DownloadLibriSpeechLmCorpusJob(checksum=None, url=lm_text.as_uri())
    run(job, lm_job)
    refs = read_text_dict(job.out_text_dict)
    assert job.out_num_seqs.get() == 3 and job.out_sha256.get() == sha256_of_file(archive)
    assert refs["dev-clean/84-121123-0000/84-121123-0000"] == "go do you hear"
    assert not list(Path(job._sis_path("work", abspath=True)).glob("*.tar.gz"))  # the tarball is not kept
    assert Path(lm_job.out_corpus_file.get_path()).read_bytes() == lm_text.read_bytes()
    assert lm_job.out_sha256.get() == sha256_of_file(lm_text)


def test_librispeech_job_rejects_wrong_checksum_and_unknown_subset(base_dir: Path) -> None:
    archive = make_librispeech_tar(base_dir / "dev-clean.tar.gz", TRANSCRIPTIONS)
    job = DownloadLibriSpeechTranscriptionsJob("dev-clean", url=archive.as_uri(), checksum="ab" * 32)
    actual = sha256_of_file(archive)
    expected = f"checksum mismatch for {archive.as_uri()}: expected sha256 {'ab' * 32}, got {actual}"
    with pytest.raises(RuntimeError, match=expected):
        run(job)
    with pytest.raises(ValueError, match="unknown LibriSpeech subset 'dev-cleen'"):
        DownloadLibriSpeechTranscriptionsJob("dev-cleen")


def test_job_errors_name_the_input(base_dir: Path) -> None:
    corpus = KjvCorpusJob(verses="Gen1:1-Gen1:20")
    split = SplitCorpusJob(corpus.out_text_dict, dev_fraction=0.001, test_fraction=0.0)
    run(corpus)
    with pytest.raises(
        RuntimeError, match=r"split of .*text_dictionary\.py\.gz \(20 sequences.*leaves dev empty"
    ):
        run(split)
    lines = TextDictToTextLinesJob(corpus.out_text_dict)
    spm = TrainSentencePieceJob(lines.out_text_lines, 5000)
    run(lines)
    with pytest.raises(
        RuntimeError, match=r"text_lines\.txt: vocab_size=5000 is larger than this corpus supports"
    ):
        run(spm)

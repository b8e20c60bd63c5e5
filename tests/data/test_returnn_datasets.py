"""Round trip text -> RETURNN datasets (iterated by RETURNN itself) -> ids -> text."""

from pathlib import Path
from typing import Any

import numpy
import pytest
from returnn.datasets import init_dataset

from recipe.data.corpus import split_corpus
from recipe.data.ogg_zip import write_text_ogg_zip
from recipe.data.sentencepiece_model import EOS_ID, load_sentencepiece
from recipe.data.text_dict import write_text_lines
from recipe.returnn_glue.datasets import lm_train_dataset, text_ogg_zip_dev_dataset


def iterate(opts: dict[str, Any], epoch: int = 1) -> list[tuple[str, numpy.ndarray]]:
    """All ``(seq_tag, data)`` of one (sub-)epoch of a RETURNN dataset built from ``opts``."""
    dataset = init_dataset(opts)
    dataset.init_seq_order(epoch=epoch)
    seqs = []
    index = 0
    while dataset.is_less_than_num_seqs(index):
        dataset.load_seqs(index, index + 1)
        seqs.append((dataset.get_tag(index), dataset.get_data(index, "data")))
        index += 1
    return seqs


@pytest.fixture(scope="module")
def dev(genesis: dict[str, str]) -> dict[str, str]:
    return split_corpus(genesis, dev_fraction=0.05, test_fraction=0.05).dev


def test_lm_train_dataset_partitions_cover_corpus_once_and_decode(
    genesis: dict[str, str], genesis_text_file: Path, spm_model: str
) -> None:
    opts = lm_train_dataset(genesis_text_file, spm_model, partition_epoch=3)
    assert opts["seq_ordering"] == "laplace:.1000"
    seqs = [seq for epoch in (1, 2, 3) for seq in iterate(opts, epoch)]
    tags = [tag for tag, _ in seqs]
    assert sorted(tags) == sorted(f"line-{i}" for i in range(len(genesis)))  # every line exactly once
    sp = load_sentencepiece(spm_model)
    texts = list(genesis.values())
    for tag, data in seqs:
        assert data.dtype == numpy.int32
        assert data[-1] == EOS_ID and EOS_ID not in data[:-1]
        assert sp.decode(data[:-1].tolist()) == texts[int(tag.removeprefix("line-"))]


def test_ogg_zip_dev_matches_lm_dataset_ids(dev: dict[str, str], spm_model: str, tmp_path: Path) -> None:
    write_text_ogg_zip(dev, tmp_path / "dev.ogg.zip")
    write_text_lines(tmp_path / "dev.txt", dev.values())
    ogg = dict(iterate(text_ogg_zip_dev_dataset(tmp_path / "dev.ogg.zip", spm_model)))
    lm = dict(iterate(lm_train_dataset(tmp_path / "dev.txt", spm_model, seq_ordering="sorted_reverse")))
    assert set(ogg) == set(dev)
    sp = load_sentencepiece(spm_model)
    for line, (tag, text) in enumerate(dev.items()):
        assert ogg[tag].dtype == lm[f"line-{line}"].dtype == numpy.int32
        assert ogg[tag].tolist() == lm[f"line-{line}"].tolist()
        assert ogg[tag][-1] == EOS_ID
        assert sp.decode(ogg[tag][:-1].tolist()) == text


def test_ogg_zip_read_through_a_symlink_with_another_name(
    dev: dict[str, str], spm_model: str, tmp_path: Path
) -> None:
    write_text_ogg_zip(dev, tmp_path / "out.ogg.zip")
    (tmp_path / "dev.ogg.zip").symlink_to(tmp_path / "out.ogg.zip")  # like Sisyphus' output/ links
    seqs = iterate(text_ogg_zip_dev_dataset(tmp_path / "dev.ogg.zip", spm_model))
    assert {tag for tag, _ in seqs} == set(dev)


def test_ogg_zip_sorted_and_subset(dev: dict[str, str], spm_model: str, tmp_path: Path) -> None:
    write_text_ogg_zip(dev, tmp_path / "dev.ogg.zip")
    seqs = iterate(text_ogg_zip_dev_dataset(tmp_path / "dev.ogg.zip", spm_model))
    lengths = [len(dev[tag]) for tag, _ in seqs]
    assert lengths == sorted(lengths, reverse=True)  # sorted_reverse by pseudo-duration = characters
    subset = iterate(text_ogg_zip_dev_dataset(tmp_path / "dev.ogg.zip", spm_model, fixed_random_subset=10))
    assert len(subset) == 10 and {tag for tag, _ in subset} <= set(dev)


def test_ogg_zip_keeps_quotes_and_non_ascii(spm_model: str, tmp_path: Path) -> None:
    texts = {"u/1": 'it\'s "so" na\u00efve', "u/2": "back\\slash", "u/3": "plain"}
    write_text_ogg_zip(texts, tmp_path / "odd.zip")
    opts = text_ogg_zip_dev_dataset(tmp_path / "odd.zip", spm_model)
    dataset = init_dataset(opts)
    dataset.init_seq_order(epoch=1)
    dataset.load_seqs(0, 3)
    raw = {dataset.get_tag(i): dataset.get_data(i, "data") for i in range(3)}
    assert set(raw) == set(texts)
    sp = load_sentencepiece(spm_model, add_eos=True)
    assert all(raw[tag].tolist() == sp.encode(text) for tag, text in texts.items())


def test_ogg_zip_is_byte_deterministic(dev: dict[str, str], tmp_path: Path) -> None:
    for run in ("a", "b"):
        (tmp_path / run).mkdir()
        write_text_ogg_zip(dev, tmp_path / run / "dev.ogg.zip")
    assert (tmp_path / "a" / "dev.ogg.zip").read_bytes() == (tmp_path / "b" / "dev.ogg.zip").read_bytes()

"""Bad input gives a clear error naming the file and, where there is one, the line."""

import gzip
import re
from pathlib import Path

import pytest

from recipe.data.corpus import split_corpus, text_file_corpus
from recipe.data.ogg_zip import write_text_ogg_zip
from recipe.data.sentencepiece_model import train_sentencepiece
from recipe.data.text_dict import TextFormatError, read_seq_tags, read_text_dict, read_text_lines


@pytest.mark.parametrize("content", [b"", b"\n  \n\n", b"... --- !!!\n"])
def test_empty_corpus(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "empty.txt"
    path.write_bytes(content)
    with pytest.raises(TextFormatError, match=rf"{path}: no non-empty sentence in the file \(empty corpus\)"):
        text_file_corpus(path, "empty")


def test_empty_gzipped_training_text_for_sentencepiece(tmp_path: Path) -> None:
    path = tmp_path / "train.txt.gz"
    path.write_bytes(gzip.compress(b"\n\n"))
    with pytest.raises(TextFormatError, match=rf"{path}: no non-empty line to train SentencePiece on"):
        train_sentencepiece(path, str(tmp_path / "spm"), vocab_size=10)


def test_binary_file(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(b"first line is text\nsecond \x00\x01\x02 is not\n")
    with pytest.raises(TextFormatError, match=rf"{path}:2: NUL bytes, looks like a binary file"):
        text_file_corpus(path, "bin")


def test_wrongly_encoded_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.txt"
    path.write_bytes("caf\u00e9 ok\n".encode() + "na\u00efve\n".encode("latin-1"))
    with pytest.raises(TextFormatError, match=rf"{path}:2: not valid utf-8 \(byte 0xef at column 3\)"):
        text_file_corpus(path, "latin")
    assert text_file_corpus(path, "latin", encoding="latin-1")["latin/line-2"] == "na\u00efve"


def test_truncated_gzip(tmp_path: Path) -> None:
    path = tmp_path / "cut.txt.gz"
    path.write_bytes(gzip.compress(b"line one\n" * 1000)[:60])
    with pytest.raises(TextFormatError, match=rf"{path}:\d+: cannot read"):
        read_text_lines(path)


def test_bad_input_in_sentencepiece_training_names_line(tmp_path: Path) -> None:
    path = tmp_path / "train.txt"
    path.write_bytes(b"good line\nanother good line\n\xff\xfe broken\n")
    with pytest.raises(TextFormatError, match=rf"{path}:3: not valid utf-8"):
        train_sentencepiece(path, str(tmp_path / "spm"), vocab_size=10)


def test_split_that_leaves_dev_empty(genesis: dict[str, str]) -> None:
    tiny = dict(list(genesis.items())[:20])
    with pytest.raises(
        ValueError, match=r"split of kjv-tiny \(20 sequences, dev_fraction=0\.001.*leaves dev empty"
    ):
        split_corpus(tiny, dev_fraction=0.001, test_fraction=0.0, source="kjv-tiny")


@pytest.mark.parametrize(("dev_fraction", "test_fraction"), [(0.0, 0.1), (0.6, 0.5), (-0.1, 0.0), (0.1, 1.0)])
def test_split_bad_fractions(genesis: dict[str, str], dev_fraction: float, test_fraction: float) -> None:
    with pytest.raises(ValueError, match="need 0 < dev_fraction < 1"):
        split_corpus(genesis, dev_fraction=dev_fraction, test_fraction=test_fraction)


def test_exclude_tags_in_the_wrong_format(genesis: dict[str, str]) -> None:
    with pytest.raises(
        ValueError, match=r"2 of 2 exclude tags are not in genesis, e\.g\. \['Ge1:1', 'Ge1:2'\]"
    ):
        split_corpus(
            genesis, dev_fraction=0.05, test_fraction=0.05, exclude_tags=["Ge1:1", "Ge1:2"], source="genesis"
        )


def test_vocab_size_larger_than_corpus_supports(tmp_path: Path) -> None:
    path = tmp_path / "small.txt"
    path.write_text("a small corpus\nwith few words\n")
    with pytest.raises(
        ValueError, match=rf"{path}: vocab_size=500 is larger than this corpus supports .*at most \d+"
    ):
        train_sentencepiece(path, str(tmp_path / "spm"), vocab_size=500)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", r": empty file, expected a text dict"),
        ("['a', 'b']\n", r":1: a text dict must start with '\{'"),
        ("{\n'a': 'x',\n'b': 'y,\n}\n", r":3: cannot parse text dict entry"),
        ("{\n'a': 'x',\n'b' 'y',\n}\n", r":3: expected 'tag': 'text' entries"),
        ("{\n'a': 'x',\n'b': 3,\n}\n", r":3: tag and text must be strings, got str: int"),
        ("{\n'a': 'x',\n'a': 'y',\n}\n", r":3: duplicate sequence tag 'a'"),
        ("{\n'a': 'x',\n", r": missing the closing '\}'"),
        ("{\n'a': 'x',\n}\n'b': 'y'\n", r":4: content after the closing '\}'"),
    ],
)
def test_malformed_text_dict(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "refs.py"
    path.write_text(content)
    with pytest.raises(TextFormatError, match=re.escape(str(path)) + message):
        read_text_dict(path)
    if content.startswith("{"):
        with pytest.raises(TextFormatError):
            read_seq_tags(path)


def test_empty_ogg_zip(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"dev\.ogg\.zip: no sequences to write"):
        write_text_ogg_zip({}, tmp_path / "dev.ogg.zip")
    with pytest.raises(ValueError, match=r"must end in \.zip"):
        write_text_ogg_zip({"a": "b"}, tmp_path / "dev.ogg")

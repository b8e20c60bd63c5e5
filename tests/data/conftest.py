"""Shared fixtures for the data tests: a small real KJV corpus and a SentencePiece model trained on it."""

from pathlib import Path

import pytest

from recipe.data.corpus import kjv_corpus
from recipe.data.sentencepiece_model import train_sentencepiece
from recipe.data.text_dict import write_text_lines

GENESIS = "Gen1:1-Gen50:26"


@pytest.fixture(scope="session")
def genesis() -> dict[str, str]:
    """The 1,533 verses of Genesis from the real ``bible`` program, normalized."""
    return kjv_corpus(verses=GENESIS)


@pytest.fixture(scope="session")
def genesis_text_file(genesis: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Genesis as a gzipped text-lines file."""
    path = tmp_path_factory.mktemp("genesis") / "genesis.txt.gz"
    write_text_lines(path, genesis.values())
    return path


@pytest.fixture(scope="session")
def spm_model(genesis_text_file: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A 300-piece unigram SentencePiece model trained on Genesis."""
    prefix = tmp_path_factory.mktemp("spm") / "spm"
    return train_sentencepiece(genesis_text_file, str(prefix), vocab_size=300)

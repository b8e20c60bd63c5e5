"""Tiny LM data for training tests: a SentencePiece model, train text lines and a dev ogg zip."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import pytest

WORDS = "the lord said unto moses and aaron go speak to children of israel in land egypt".split()


@dataclass
class TinyLmData:
    spm_model: Path
    vocab_size: int
    eos_id: int
    train_text: Path
    dev_ogg_zip: Path
    dev_text: dict[str, str]


def _sentences(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9))) for _ in range(n)]


@pytest.fixture(scope="session")
def tiny_lm_data(tmp_path_factory: pytest.TempPathFactory) -> TinyLmData:
    from recipe.data.ogg_zip import write_text_ogg_zip
    from recipe.data.sentencepiece_model import load_sentencepiece, train_sentencepiece
    from recipe.data.text_dict import write_text_lines

    d = tmp_path_factory.mktemp("tiny_lm")
    train = _sentences(300, 1)
    write_text_lines(d / "train.txt", train)
    model = train_sentencepiece(
        d / "train.txt", str(d / "spm"), vocab_size=40, additional_options={"hard_vocab_limit": False}
    )
    sp = load_sentencepiece(model)
    dev = {f"dev/{i}": s for i, s in enumerate(_sentences(20, 2))}
    write_text_ogg_zip(dev, d / "dev.ogg.zip")
    return TinyLmData(Path(model), sp.get_piece_size(), sp.eos_id(), d / "train.txt", d / "dev.ogg.zip", dev)

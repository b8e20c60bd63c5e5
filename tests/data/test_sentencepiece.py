"""SentencePiece training (deterministic, fixed id layout) and application."""

import hashlib
from pathlib import Path

from recipe.data.sentencepiece_model import (
    BOS_ID,
    EOS_ID,
    UNK_ID,
    SentencePieceType,
    apply_sentencepiece,
    load_sentencepiece,
    sentencepiece_vocab,
    train_sentencepiece,
)
from recipe.data.text_dict import read_text_lines, write_text_lines


def _sha256(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_training_is_deterministic(genesis_text_file: Path, spm_model: str, tmp_path: Path) -> None:
    again = train_sentencepiece(genesis_text_file, str(tmp_path / "again"), vocab_size=300)
    assert _sha256(again) == _sha256(spm_model)
    bpe_a = train_sentencepiece(
        genesis_text_file, str(tmp_path / "a"), vocab_size=300, model_type=SentencePieceType.BPE
    )
    bpe_b = train_sentencepiece(
        genesis_text_file, str(tmp_path / "b"), vocab_size=300, model_type=SentencePieceType.BPE
    )
    assert _sha256(bpe_a) == _sha256(bpe_b) != _sha256(spm_model)
    vocab_lines = Path(spm_model).with_suffix(".vocab").read_text(encoding="utf-8").splitlines()
    assert len(vocab_lines) == 300 and vocab_lines[:3] == ["</s>\t0", "<s>\t0", "<unk>\t0"]
    assert Path(again).with_suffix(".vocab").read_text(encoding="utf-8").splitlines() == vocab_lines


def test_id_layout_and_eos(spm_model: str) -> None:
    sp = load_sentencepiece(spm_model, add_eos=True)
    assert (
        (sp.eos_id(), sp.bos_id(), sp.unk_id(), sp.pad_id()) == (EOS_ID, BOS_ID, UNK_ID, -1) == (0, 1, 2, -1)
    )
    assert sp.vocab_size() == 300
    ids = sp.encode("in the beginning god created the heaven", out_type=int)
    assert ids[-1] == EOS_ID and EOS_ID not in ids[:-1] and BOS_ID not in ids
    assert sp.decode(ids[:-1]) == "in the beginning god created the heaven"


def test_vocab_dict(spm_model: str) -> None:
    vocab = sentencepiece_vocab(spm_model)
    assert len(vocab) == 300
    assert (vocab["</s>"], vocab["<s>"], vocab["<unk>"]) == (0, 1, 2)
    assert sorted(vocab.values()) == list(range(300))


def test_apply_sentencepiece(spm_model: str, tmp_path: Path) -> None:
    write_text_lines(tmp_path / "in.txt", ["in the beginning", "the zq\u00e9 land"])
    assert apply_sentencepiece(tmp_path / "in.txt", spm_model, tmp_path / "out.txt.gz") == 2
    with_unk = read_text_lines(tmp_path / "out.txt.gz")
    assert len(with_unk) == 2
    assert "".join(with_unk[0].split()).replace("\u2581", " ").strip() == "in the beginning"
    assert "<unk>" in with_unk[1].split()  # '\u00e9' never occurs in Genesis
    apply_sentencepiece(tmp_path / "in.txt", spm_model, tmp_path / "raw.txt", enable_unk=False)
    without_unk = read_text_lines(tmp_path / "raw.txt")
    assert "<unk>" not in without_unk[1] and "".join(without_unk[1].split()).endswith("\u2581land")

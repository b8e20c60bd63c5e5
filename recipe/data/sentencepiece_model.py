"""Training and applying SentencePiece models with a fixed id layout.

Id layout (as in zeyer's i6 LibriSpeech setups): ``eos_id=0`` (``</s>``), ``bos_id=1`` (``<s>``),
``unk_id=2`` (``<unk>``), no padding id; the learned pieces follow from id 3. The LM data contract
built on this: a sequence is the piece ids of one sentence followed by EOS (id 0), no BOS.

Training is deterministic: ``num_threads=1`` and the whole input is used unless the caller passes
``input_sentence_size`` in ``additional_options``.
"""

import enum
import io
import os
import re
from collections.abc import Iterator, Mapping
from typing import Any

import sentencepiece as spm

from recipe.data.text_dict import TextFormatError, read_lines, write_text_lines

EOS_ID = 0
BOS_ID = 1
UNK_ID = 2
DEFAULT_TRAINER_OPTIONS: dict[str, Any] = {
    "eos_id": EOS_ID,
    "bos_id": BOS_ID,
    "unk_id": UNK_ID,
    "pad_id": -1,
    "num_threads": 1,
}


class SentencePieceType(enum.Enum):
    """SentencePiece ``model_type`` values (same names and values as in i6_core)."""

    UNIGRAM = "unigram"
    BPE = "bpe"
    CHAR = "char"
    WORD = "word"


def train_sentencepiece(
    text_file: str | os.PathLike,
    model_prefix: str,
    *,
    vocab_size: int,
    model_type: SentencePieceType = SentencePieceType.UNIGRAM,
    character_coverage: float = 1.0,
    normalization_rule_name: str = "nmt_nfkc",
    additional_options: Mapping[str, Any] | None = None,
) -> str:
    """Train on the non-empty lines of a text-lines file (optionally gzipped); returns the model path.

    Writes ``<model_prefix>.model`` and ``<model_prefix>.vocab`` (lines ``piece<TAB>score``, as
    ``spm_train`` writes them). The sentences are streamed to the trainer, so no file path ends up in
    the model: the same text and options give a byte-identical model. ``additional_options`` are
    further ``SentencePieceTrainer`` options and override :data:`DEFAULT_TRAINER_OPTIONS`.
    Raises TextFormatError for an empty, binary or wrongly encoded input (naming file and line) and
    ValueError naming the file when ``vocab_size`` is larger than the corpus supports.
    """
    options = {**DEFAULT_TRAINER_OPTIONS, **(additional_options or {})}
    num_sentences = 0
    reader_error: list[Exception] = []

    def sentences() -> Iterator[str]:
        nonlocal num_sentences
        try:
            for _, line in read_lines(text_file):
                if line.strip():
                    num_sentences += 1
                    yield line
        except TextFormatError as exc:
            reader_error.append(exc)
            raise

    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=sentences(),
            model_writer=model,
            model_type=model_type.value,
            vocab_size=vocab_size,
            character_coverage=character_coverage,
            normalization_rule_name=normalization_rule_name,
            **options,
        )
    except RuntimeError as exc:
        if reader_error:
            raise reader_error[0] from None
        if num_sentences == 0:
            raise TextFormatError(
                f"{text_file}: no non-empty line to train SentencePiece on (empty corpus)"
            ) from exc
        too_high = re.search(
            r"Vocabulary size too high \((\d+)\)\. Please set it to a value <= (\d+)", str(exc)
        )
        if too_high:
            raise ValueError(
                f"{text_file}: vocab_size={vocab_size} is larger than this corpus supports for a"
                f" {model_type.value} model ({num_sentences} sentences allow at most {too_high[2]});"
                f" lower vocab_size or use more text"
            ) from exc
        raise
    model_file = model_prefix + ".model"
    with open(model_file, "wb") as f:
        f.write(model.getvalue())
    sp = spm.SentencePieceProcessor(model_proto=model.getvalue())
    with open(model_prefix + ".vocab", "w", encoding="utf-8") as f:
        f.writelines(f"{sp.id_to_piece(i)}\t{sp.get_score(i):g}\n" for i in range(sp.vocab_size()))
    return model_file


def load_sentencepiece(model_file: str | os.PathLike, *, add_eos: bool = False) -> spm.SentencePieceProcessor:
    """Load a model; with ``add_eos`` every ``encode`` appends the EOS id."""
    return spm.SentencePieceProcessor(model_file=os.fspath(model_file), add_eos=add_eos)


def apply_sentencepiece(
    text_file: str | os.PathLike,
    model_file: str | os.PathLike,
    out_file: str | os.PathLike,
    *,
    enable_unk: bool = True,
) -> int:
    """Segment each line of a text-lines file into space-joined pieces (one output line per input line).

    With ``enable_unk`` pieces unknown to the model are written as ``<unk>``; without, their surface
    string is kept. Output is gzipped if ``out_file`` ends in ``.gz``. Returns the number of lines.
    """
    sp = load_sentencepiece(model_file)
    unk_piece = sp.id_to_piece(sp.unk_id())

    def segment(line: str) -> str:
        ids = sp.encode(line, out_type=int)
        pieces = sp.encode(line, out_type=str)
        if enable_unk:
            pieces = [unk_piece if i == sp.unk_id() else p for i, p in zip(ids, pieces, strict=True)]
        return " ".join(pieces)

    return write_text_lines(out_file, (segment(line) for _, line in read_lines(text_file)))


def sentencepiece_vocab(model_file: str | os.PathLike) -> dict[str, int]:
    """``{piece: id}`` for all ids of a model (i6 ``ExtractSentencePieceVocabJob`` format)."""
    sp = load_sentencepiece(model_file)
    return {sp.id_to_piece(i): i for i in range(sp.vocab_size())}

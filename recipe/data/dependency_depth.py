"""Dependency depth per SentencePiece token, and the token weights w of depth-adaptive masking.

Depth of a word in its dependency tree (each parsed sentence of a sequence has its own root):

    d(root) = 0,        d(w) = d(head(w)) + 1.

Words are the parser's tokens (spaCy / Stanza split punctuation and clitics off whitespace words), so
pieces and words are aligned by *character offsets* in the sequence's text: a SentencePiece piece covers
the characters of its surface without leading whitespace (the '▁' that starts a new whitespace word);
it gets the depth of the shallowest word that shares a character with it (usually exactly one word),
and a bare '▁' piece (no characters of its own) the depth of the next piece.  EOS (appended after the
pieces, as the LM data does) gets ``NO_WORD``.

Token weights (``depth_token_weights``, the formula of this project; the code of the dependency-depth
BD3-LM is not public): over the n word tokens of a sequence

    d~ = d / max_j d_j  (normalize; 0 when max d = 0),   s = 1 - d~ (reverse) or d~,
    w_i = n exp(s_i / tau) / sum_j exp(s_j / tau),

and w = 1 for EOS, so w has mean 1 over the real tokens.  With reverse, shallow words (heads) get larger
w, hence larger rates g = (1 - alpha) + alpha w (``recipe.lm.token_schedule``), and are masked earlier.

Feature file (``write_depth_hdf``): RETURNN's HDF layout (as ``returnn.datasets.hdf.SimpleHDFWriter``
writes it; read by RETURNN's ``HDFDataset``), written with h5py, one sequence per text-dict tag: data
``[T, 1]`` float32 = the depth of each of the T = pieces + 1 tokens, and the target ``piece_ids`` [T]
int32 = their SentencePiece ids (with EOS), so that a reader can check that the features line up with
its ids.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import sentencepiece as spm
import torch

NO_WORD = -1.0
"""Depth feature of a token that belongs to no word (EOS): its weight w is 1."""


class DepthAlignmentError(ValueError):
    """Depth features that do not line up with the SentencePiece ids; the message names the sequence."""


@dataclass(frozen=True)
class Word:
    """A parsed word: characters [start, end) of the sequence's text and its head (index into the
    sequence's word list; None for the root of a sentence)."""

    start: int
    end: int
    head: int | None


def word_depths(words: Sequence[Word]) -> list[int]:
    """d(root) = 0, d(w) = d(head(w)) + 1 for every word; a head cycle or a bad index is a ValueError."""
    depths: list[int | None] = [None] * len(words)
    for first in range(len(words)):
        chain = []
        i: int | None = first
        while i is not None and depths[i] is None:
            if i in chain:
                raise ValueError(f"dependency heads form a cycle through word {i}")
            chain.append(i)
            head = words[i].head
            if head is not None and not 0 <= head < len(words):
                raise ValueError(f"word {i} has head {head} outside the {len(words)} words")
            i = head
        base = -1 if i is None else depths[i]
        for j in reversed(chain):
            base += 1
            depths[j] = base
    return [int(d) for d in depths]  # type: ignore[arg-type]


def piece_spans(processor: spm.SentencePieceProcessor, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    """(ids, character spans) of the pieces of ``text``; a span excludes the leading whitespace of the
    piece's surface (empty for a bare '▁')."""
    proto = processor.encode(text, out_type="proto")
    byte_to_char = np.zeros(len(text.encode("utf-8")) + 1, dtype=np.int64)
    offset = 0
    for index, char in enumerate(text):
        width = len(char.encode("utf-8"))
        byte_to_char[offset : offset + width] = index
        offset += width
    byte_to_char[offset] = len(text)
    ids, spans = [], []
    for piece in proto.pieces:
        start, end = int(byte_to_char[piece.begin]), int(byte_to_char[piece.end])
        while start < end and text[start].isspace():
            start += 1
        ids.append(piece.id)
        spans.append((start, end))
    return ids, spans


def piece_depths(spans: Sequence[tuple[int, int]], words: Sequence[Word], where: str) -> list[float]:
    """Depth of every piece: the shallowest word sharing a character with it; a bare '▁' takes the
    next piece's (the last one the previous piece's).  A piece that overlaps no word is an error."""
    depths = word_depths(words)
    result: list[float | None] = []
    for start, end in spans:
        overlap = [depths[k] for k, w in enumerate(words) if w.start < end and start < w.end]
        if start < end and not overlap:
            raise DepthAlignmentError(
                f"{where}: characters {start}..{end} of the text belong to no parsed word"
            )
        result.append(float(min(overlap)) if overlap else None)
    for i in reversed(range(len(result) - 1)):
        if result[i] is None:
            result[i] = result[i + 1]
    for i in range(1, len(result)):
        if result[i] is None:
            result[i] = result[i - 1]
    if any(d is None for d in result):
        raise DepthAlignmentError(f"{where}: no parsed word in the text")
    return [float(d) for d in result]  # type: ignore[arg-type]


def sequence_depth_features(
    processor: spm.SentencePieceProcessor, text: str, words: Sequence[Word], where: str
) -> tuple[np.ndarray, np.ndarray]:
    """(ids int32 [T], depths float32 [T]) of one sequence: its pieces, then EOS with ``NO_WORD``."""
    ids, spans = piece_spans(processor, text)
    depths = piece_depths(spans, words, where) if ids else []
    return (
        np.array([*ids, processor.eos_id()], dtype=np.int32),
        np.array([*depths, NO_WORD], dtype=np.float32),
    )


def write_depth_hdf(
    path: str | os.PathLike, vocab_size: int, sequences: Iterable[tuple[str, np.ndarray, np.ndarray]]
) -> int:
    """Write (tag, ids, depths) sequences in RETURNN's HDF layout (module docstring; the layout that
    ``returnn.datasets.hdf.SimpleHDFWriter`` writes, which takes milliseconds per sequence, written
    here with h5py in one go); returns the number of sequences."""
    import h5py

    tags, ids, depths = [], [], []
    for tag, seq_ids, seq_depths in sequences:
        if len(seq_ids) != len(seq_depths):
            raise DepthAlignmentError(
                f"{path}: sequence {tag!r}: {len(seq_ids)} ids but {len(seq_depths)} depths"
            )
        tags.append(tag)
        ids.append(np.asarray(seq_ids, dtype=np.int32))
        depths.append(np.asarray(seq_depths, dtype=np.float32))
    lengths = np.array([len(d) for d in depths], dtype=np.int32)
    with h5py.File(os.fspath(path), "w") as f:
        f.attrs.update(
            {
                "inputPattSize": 1,
                "numDims": 1,
                "numLabels": 1,
                "numSeqs": len(tags),
                "numTimesteps": int(lengths.sum()),
            }
        )
        f.create_dataset("inputs", data=np.concatenate(depths or [np.zeros(0, np.float32)])[:, None])
        f.create_dataset("labels", shape=(0,), dtype="S5")
        f.create_dataset("seqLengths", data=np.stack([lengths, lengths], axis=1).reshape(-1, 2))
        f.create_dataset("seqTags", data=tags, dtype=h5py.string_dtype())
        f.create_dataset("targets/data/piece_ids", data=np.concatenate(ids or [np.zeros(0, np.int32)]))
        f.create_dataset("targets/labels/piece_ids", data=[b"dummy-label"])
        f.create_group("targets/size").attrs["piece_ids"] = np.array([vocab_size, 1])
    return len(tags)


def read_depth_hdf(path: str | os.PathLike) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{tag: (ids, depths)} of a file written by ``write_depth_hdf`` (read with h5py)."""
    import h5py

    with h5py.File(os.fspath(path), "r") as f:
        tags = [t.decode() if isinstance(t, bytes) else str(t) for t in f["seqTags"][...]]
        lengths = f["seqLengths"][...]
        depths, ids = f["inputs"][...], f["targets/data/piece_ids"][...]
    out, pos = {}, 0
    for tag, (length, id_length) in zip(tags, lengths, strict=True):
        out[tag] = (ids[pos : pos + id_length], depths[pos : pos + length, 0])
        pos += length
    return out


def check_depth_features(
    features: Mapping[str, tuple[np.ndarray, np.ndarray]],
    texts: Mapping[str, str],
    processor: spm.SentencePieceProcessor,
    where: str,
) -> None:
    """Every text's ids (pieces + EOS) must equal the feature file's ids, and the depths have one value
    per id; a DepthAlignmentError names the first sequence that does not line up."""
    missing = [tag for tag in texts if tag not in features]
    if missing:
        raise DepthAlignmentError(
            f"{where}: no depth features for sequence {missing[0]!r} ({len(missing)} missing)"
        )
    for tag, text in texts.items():
        ids, depths = features[tag]
        want = [*processor.encode(text), processor.eos_id()]
        if list(ids) != want or len(depths) != len(want):
            raise DepthAlignmentError(
                f"{where}: sequence {tag!r}: depth features for {len(depths)} tokens with ids {list(ids)[:8]}..., "
                f"but the SentencePiece model gives {len(want)} ids {want[:8]}... (another text or model?)"
            )


def depth_token_weights(
    depth: torch.Tensor, lengths: torch.Tensor, normalize: bool, reverse: bool, temperature: float
) -> torch.Tensor:
    """Token weights w [B, L] (module docstring) from depth features [B, L] (``NO_WORD`` off words)."""
    real = torch.arange(depth.shape[1], device=depth.device)[None, :] < lengths[:, None]
    word = real & (depth >= 0)
    d = torch.where(word, depth.float(), torch.zeros((), device=depth.device))
    if normalize:
        top = d.amax(dim=1, keepdim=True)
        d = torch.where(top > 0, d / top.clamp(min=1e-12), torch.zeros_like(d))
    score = 1.0 - d if reverse else d
    logits = torch.where(word, score / temperature, torch.full_like(score, -torch.inf))
    n = word.sum(dim=1, keepdim=True)
    soft = torch.softmax(torch.where(n > 0, logits, torch.zeros_like(logits)), dim=1)
    return torch.where(word, n * soft, torch.ones_like(soft))

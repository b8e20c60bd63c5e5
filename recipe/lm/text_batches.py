"""Texts to LM batches: token ids + EOS, grouped by length into padded (tokens, lengths) batches."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from recipe.data.tokenizers import Tokenizer


def encode_texts(tokenizer: Tokenizer, texts: Sequence[str]) -> list[list[int]]:
    """The tokenizer's ids of each text followed by EOS (the LM data contract)."""
    return [[*tokenizer.encode(text), tokenizer.eos_id] for text in texts]


def pad_batch(seqs: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """(tokens [B, max len] zero-padded, lengths [B])."""
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    tokens = torch.zeros(len(seqs), max(1, int(lengths.max())), dtype=torch.long)
    for i, s in enumerate(seqs):
        tokens[i, : len(s)] = torch.tensor(s, dtype=torch.long)
    return tokens, lengths


def length_batches(
    seqs: Sequence[Sequence[int]], max_tokens: int
) -> Iterator[tuple[list[int], torch.Tensor, torch.Tensor]]:
    """Batches of similar length with at most ``max_tokens`` padded positions: (indices, tokens, lengths)."""
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]), reverse=True)
    start = 0
    while start < len(order):
        width = len(seqs[order[start]])
        size = max(1, max_tokens // max(1, width))
        idx = order[start : start + size]
        yield idx, *pad_batch([seqs[i] for i in idx])
        start += size

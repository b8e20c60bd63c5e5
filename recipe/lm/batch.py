"""The LM batch contract: ``tokens`` LongTensor [B, T] (right-padded) and ``lengths`` LongTensor [B].

Row b holds the SentencePiece ids of one sentence followed by EOS in ``tokens[b, :lengths[b]]``; the
padding values are arbitrary and never read.  Helpers to validate a batch and to pad it.
"""

from __future__ import annotations

import torch


def valid_mask(lengths: torch.Tensor, seq_len: int) -> torch.Tensor:
    """Bool [B, seq_len]: position i of row b is a real token iff i < lengths[b]."""
    return torch.arange(seq_len, device=lengths.device)[None, :] < lengths[:, None]


def check_batch(
    tokens: torch.Tensor, lengths: torch.Tensor, vocab_size: int, max_seq_len: int, mask_id: int | None = None
) -> None:
    """Raise ValueError unless (tokens, lengths) follows the batch contract for this model (``mask_id``:
    a [MASK] id inside the vocabulary, which no real token may be)."""
    if tokens.dim() != 2 or lengths.dim() != 1 or lengths.shape[0] != tokens.shape[0]:
        raise ValueError(
            f"batch: expected tokens [B, T] and lengths [B], "
            f"got {tuple(tokens.shape)} and {tuple(lengths.shape)}"
        )
    if tokens.dtype not in (torch.int64, torch.int32) or lengths.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"batch: tokens/lengths must be integer tensors, got {tokens.dtype}/{lengths.dtype}")
    if tokens.shape[0] == 0:
        raise ValueError("batch: empty batch (B = 0)")
    lo, hi = int(lengths.min()), int(lengths.max())
    if lo < 1 or hi > tokens.shape[1]:
        raise ValueError(f"batch: lengths must lie in [1, T={tokens.shape[1]}], got min {lo}, max {hi}")
    if hi > max_seq_len:
        raise ValueError(f"batch: sequence length {hi} exceeds the model's max_seq_len={max_seq_len}")
    real = tokens[valid_mask(lengths, tokens.shape[1])]
    if int(real.min()) < 0 or int(real.max()) >= vocab_size:
        raise ValueError(
            f"batch: token ids must lie in [0, vocab_size={vocab_size}), got min {int(real.min())}, "
            f"max {int(real.max())}"
        )
    if mask_id is not None and bool((real == mask_id).any()):
        raise ValueError(f"batch: token id {mask_id} is the model's [MASK] id and cannot be a real token")


def clean_padding(tokens: torch.Tensor, lengths: torch.Tensor, fill: int) -> torch.Tensor:
    """Copy of tokens [B, T] (as int64) with every padding position set to ``fill``."""
    return tokens.long().masked_fill(~valid_mask(lengths, tokens.shape[1]), fill)


def pad_to_multiple(tokens: torch.Tensor, multiple: int, fill: int) -> torch.Tensor:
    """Right-pad tokens [B, T] with ``fill`` to the next multiple of ``multiple`` along T."""
    extra = -tokens.shape[1] % multiple
    if extra == 0:
        return tokens
    return torch.nn.functional.pad(tokens, (0, extra), value=fill)

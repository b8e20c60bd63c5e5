"""Autoregressive Transformer LM baseline on the DiT backbone (causal attention, no time conditioning).

Token i of a sequence x (SentencePiece ids + EOS) is predicted from EOS (used as BOS) and x_<i:

    log p(x) = sum_{i < n} log softmax(f([EOS, x_0, ..., x_{i-1}]))_{x_i},

so all ``lengths`` positions are scored, EOS included.  Right-padding needs no key mask: a causal
query never sees a later (padding) key.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from recipe.lm.batch import check_batch, clean_padding, valid_mask
from recipe.lm.checkpoints import CheckedLoadMixin
from recipe.lm.config import LmConfig
from recipe.lm.dit import DiT


class ARLM(CheckedLoadMixin):
    """Causal Transformer LM over V SentencePiece ids (input and output size V)."""

    def __init__(self, config: LmConfig) -> None:
        super().__init__()
        if config.kind != "ar":
            raise ValueError(f"ARLM: needs an LmConfig of kind 'ar', got {config.describe()}")
        self.config = config
        self.vocab_size = config.vocab_size
        self.eos_id = config.eos_id
        self.bos_id = config.bos_index
        self.max_seq_len = config.max_seq_len
        self.backbone = DiT(config)

    def token_log_probs(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """log p(x_i | EOS, x_<i) as float32 [B, T]; 0 at padding positions."""
        check_batch(tokens, lengths, self.vocab_size, self.max_seq_len, self.config.mask_id)
        x = clean_padding(tokens, lengths, self.eos_id)
        inputs = torch.cat((torch.full_like(x[:, :1], self.bos_id), x[:, :-1]), dim=1)
        logits = self.backbone(inputs, causal=True).float()
        logp = torch.gather(F.log_softmax(logits, dim=-1), -1, x[..., None])[..., 0]
        return logp * valid_mask(lengths, x.shape[1])

    def sequence_log_prob(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Exact log p(x) per sequence, float32 [B]."""
        return self.token_log_probs(tokens, lengths).sum(dim=1)

    def loss(self, tokens: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(summed NLL over all tokens of the batch, number of tokens)."""
        return -self.token_log_probs(tokens, lengths).sum(), lengths.sum()

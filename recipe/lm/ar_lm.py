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
from recipe.lm.dit import DiT, DiTConfig


class ARLM(CheckedLoadMixin):
    """Causal Transformer LM over V SentencePiece ids (input and output size V)."""

    def __init__(self, backbone: DiTConfig, eos_id: int, max_seq_len: int) -> None:
        super().__init__()
        if backbone.time_conditioning:
            raise ValueError("ARLM: the AR baseline has no noise level; set time_conditioning=False")
        if backbone.input_size != backbone.output_size:
            raise ValueError(
                f"ARLM: input_size ({backbone.input_size}) must equal output_size ({backbone.output_size})"
            )
        if not 0 <= eos_id < backbone.output_size:
            raise ValueError(f"ARLM: eos_id={eos_id} outside the vocabulary [0, {backbone.output_size})")
        self.vocab_size = backbone.output_size
        self.eos_id = eos_id
        self.max_seq_len = max_seq_len
        self.backbone = DiT(backbone)

    def config_summary(self) -> str:
        c = self.backbone.cfg
        return f"config (kind=ar, vocab_size={self.vocab_size}, hidden={c.hidden}, n_layers={c.n_layers})"

    def token_log_probs(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """log p(x_i | EOS, x_<i) as float32 [B, T]; 0 at padding positions."""
        check_batch(tokens, lengths, self.vocab_size, self.max_seq_len)
        x = clean_padding(tokens, lengths, self.eos_id)
        inputs = torch.cat((torch.full_like(x[:, :1], self.eos_id), x[:, :-1]), dim=1)
        logits = self.backbone(inputs, causal=True).float()
        logp = torch.gather(F.log_softmax(logits, dim=-1), -1, x[..., None])[..., 0]
        return logp * valid_mask(lengths, x.shape[1])

    def sequence_log_prob(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Exact log p(x) per sequence, float32 [B]."""
        return self.token_log_probs(tokens, lengths).sum(dim=1)

    def loss(self, tokens: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(summed NLL over all tokens of the batch, number of tokens)."""
        return -self.token_log_probs(tokens, lengths).sum(), lengths.sum()

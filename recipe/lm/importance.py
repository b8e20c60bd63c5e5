"""ATAT (adaptive token-aware training): a learned per-token importance and a curriculum over it that
sets each token's masking rate g_i (the per-token schedule m_i(t) = t^(1/g_i) of the MDLM / BD3-LM loss).

MDLM-ATAT published the sizes and the phases, but its public code never connected the estimator and
the curriculum to training and its loss was not an ELBO, so the formulation below is this project's own:

Importance estimator (2 layers, 256 hidden, 4 heads, its own embedding of the clean tokens x_0):

    s = sigmoid(w^T Enc(E[x_0] + P)) in [0, 1]^L,     Enc = 2 pre-LN Transformer layers (bidirectional
                                                     over the real tokens), P learned positions.

Its target is the denoiser's per-token cross-entropy at the current step, detached and normalised over
the batch's masked real tokens M to [0, 1]:

    c_l = -log x_theta(z_t)_l[x_l],   y_l = (c_l - min_M c) / (max_M c - min_M c),
    L_imp = mean_{l in M} (s_l - y_l)^2,  added to the training loss with weight lambda
            (``LmConfig.importance_loss_weight``).

Curriculum: the training progress p in [0, 1] selects a phase k = 0 (easy) for p < b_1, 1 (medium) for
p < b_2, 2 (hard) otherwise ((b_1, b_2) = ``LmConfig.curriculum``, default (0.3, 0.7)); phase k focuses
on the importance band B_k = [0, .3), [.3, .7), [.7, 1]:

    v_l = f if s_l in B_k else 1,     w_l = v_l / mean_{j real} v_j,     g_l = (1 - alpha) + alpha w_l,

with the importance s detached, f = ``LmConfig.focus_weight`` (default 2) and alpha = ``mix_alpha``.
Focus tokens get g > 1: they are masked earlier, i.e. trained on more often. The average rate stays 1.

``atat_loss`` is one training step's objective: the per-token-schedule NELBO with these rates
(``recipe.lm.token_schedule``, a bound on -log p(x | g), so a training objective only) and L_imp.
Scoring ignores the estimator and uses the uniform bound.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from recipe.lm.batch import check_batch, clean_padding, valid_mask
from recipe.lm.noise_schedule import NoiseRange
from recipe.lm.token_schedule import mix_token_rates

ESTIMATOR_HIDDEN = 256
ESTIMATOR_LAYERS = 2
ESTIMATOR_HEADS = 4
IMPORTANCE_BANDS = ((0.0, 0.3), (0.3, 0.7), (0.7, 1.0))  # easy, medium, hard (the last one includes 1)
PHASES = ("easy", "medium", "hard")
# where the estimator lives in an LM's state dict (model.importance, and its EMA shadows)
ESTIMATOR_KEY_PREFIXES = ("importance.", "ema.shadow__importance__")


class ImportanceEstimator(nn.Module):
    """s = sigmoid(head(Enc(E[x_0] + P))): the importance in [0, 1] of every clean token, float32 [B, L]."""

    def __init__(self, vocab_size: int, max_seq_len: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, ESTIMATOR_HIDDEN)
        self.positions = nn.Parameter(torch.zeros(max_seq_len, ESTIMATOR_HIDDEN))
        nn.init.normal_(self.positions, std=0.02)
        layer = nn.TransformerEncoderLayer(
            ESTIMATOR_HIDDEN,
            ESTIMATOR_HEADS,
            dim_feedforward=4 * ESTIMATOR_HIDDEN,
            dropout=0.0,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, ESTIMATOR_LAYERS, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(ESTIMATOR_HIDDEN)
        self.head = nn.Linear(ESTIMATOR_HIDDEN, 1)

    def forward(self, x0: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        seq_len = x0.shape[1]
        h = self.embed(x0) + self.positions[:seq_len]
        h = self.encoder(h, src_key_padding_mask=~valid_mask(lengths, seq_len))
        return torch.sigmoid(self.head(self.norm(h))[..., 0].float())


def importance_targets(nll: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
    """y [B, L]: the detached per-token cross-entropy ``nll`` min-max normalised to [0, 1] over the
    batch's ``masked`` positions (0 elsewhere, and everywhere if all masked values are equal)."""
    c = nll.detach().float()
    if not bool(masked.any()):
        return torch.zeros_like(c)
    low, high = c[masked].min(), c[masked].max()
    return torch.where(masked, (c - low) / (high - low).clamp(min=1e-12), 0.0)


def importance_loss(importance: torch.Tensor, nll: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
    """L_imp: mean squared error of the estimator's ``importance`` against ``importance_targets`` over
    the ``masked`` positions (0 when nothing is masked)."""
    if not bool(masked.any()):
        return importance.sum() * 0.0
    return F.mse_loss(importance[masked], importance_targets(nll, masked)[masked])


def curriculum_phase(progress: float, boundaries: tuple[float, float]) -> int:
    """Phase k (0 easy, 1 medium, 2 hard) at training progress p: 0 if p < b_1, 1 if p < b_2, else 2."""
    first, second = boundaries
    return 0 if progress < first else 1 if progress < second else 2


def focus_weights(importance: torch.Tensor, lengths: torch.Tensor, phase: int, focus: float) -> torch.Tensor:
    """w [B, L]: f on real tokens whose importance lies in phase ``phase``'s band, 1 on the others,
    normalised to mean 1 over each sequence's real tokens (1 on padding)."""
    low, high = IMPORTANCE_BANDS[phase]
    s = importance.detach()
    in_band = (s >= low) & ((s <= high) if high >= 1.0 else (s < high))
    valid = valid_mask(lengths, importance.shape[1])
    v = torch.where(in_band & valid, focus, 1.0)
    mean = torch.where(valid, v, 0.0).sum(1, keepdim=True) / lengths.clamp(min=1)[:, None]
    return torch.where(valid, v / mean, 1.0)


def atat_loss(
    model: nn.Module,
    tokens: torch.Tensor,
    lengths: torch.Tensor,
    noise_range: NoiseRange,
    phase: int,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(NELBO summed over the batch under the curriculum's rates g, number of tokens, L_imp) for an MDLM
    or BD3-LM ``model`` with an estimator ``model.importance``, t ~ U[``noise_range``], in ``phase``."""
    config = model.config
    check_batch(tokens, lengths, model.vocab_size, model.max_seq_len)
    x0 = clean_padding(tokens, lengths, model.eos_id)
    batch, seq_len = x0.shape
    importance = model.importance(x0, lengths)
    weights = focus_weights(importance, lengths, phase, config.focus_weight)
    rates = mix_token_rates(weights, lengths, config.mix_alpha)
    t = model.draw_t(batch, model.num_blocks(seq_len), generator, x0.device, *noise_range)
    mask = model.draw_mask(t, lengths, seq_len, generator, noise_range, rates)
    terms = model.nelbo_terms(x0, lengths, t, mask, rates)
    cross_entropy = terms * rates * model.expand_t(t, seq_len)  # undo the weight 1 / (g t)
    return terms.sum(), lengths.sum(), importance_loss(importance, cross_entropy, mask)

"""The one way to build, load and run an LM from its ``LmConfig``.

RETURNN training and forward passes (``recipe.returnn_glue``) and the in-process jobs (noise-range
search, sampling, generative perplexity) all go through these functions:

    build_model(config, scoring)             the network (random init; ATAT's importance estimator as
                                             ``model.importance`` when training a config that has one;
                                             EMA shadows if ema_decay > 0)
    model.load_state_dict(state)             the only place a checkpoint's weights enter a model (also
                                             what RETURNN calls for ``load`` and ``preload_from_files``)
    use_averaged_weights(model)              evaluate the EMA weights, as the reference work does
    load_model(config, checkpoint)           the three above for a checkpoint file, in eval mode
    training_loss(model, tokens, lengths, train)
                                             (summed NLL (AR) or NELBO (diffusion), number of tokens)
"""

from __future__ import annotations

import os

import torch

from recipe.lm.ar_lm import ARLM
from recipe.lm.block_diffusion import BD3LM
from recipe.lm.checkpoints import check_compatible, read_checkpoint
from recipe.lm.config import LmConfig
from recipe.lm.ema import ExponentialMovingAverage
from recipe.lm.importance import ImportanceEstimator
from recipe.lm.mdlm import MDLM

LanguageModel = ARLM | MDLM | BD3LM
_CLASSES = {"ar": ARLM, "mdlm": MDLM, "bd3lm": BD3LM}


def build_model(config: LmConfig, scoring: bool = False) -> LanguageModel:
    """The LM described by ``config``, randomly initialised. ATAT's importance estimator only serves
    training: with ``scoring`` it is left out (and its tensors in a checkpoint are skipped on load)."""
    if not isinstance(config, LmConfig):
        raise TypeError(f"build_model: expected an LmConfig, got {type(config).__name__}")
    model = _CLASSES[config.kind](config)
    if config.importance_estimator and not scoring:
        model.importance = ImportanceEstimator(config.vocab_size, config.max_seq_len)
    if config.ema_decay > 0.0:
        model.ema = ExponentialMovingAverage(model, config.ema_decay)
    return model


def training_loss(
    model: LanguageModel,
    tokens: torch.Tensor,
    lengths: torch.Tensor,
    train: bool,
    generator: torch.Generator | None = None,
    token_rates: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum over the batch of the NLL (AR) or NELBO (diffusion) in nats, float32; number of tokens).

    Training (``train``) draws t from the model config's ``noise_range`` and, given ``token_rates`` g
    [B, T], masks with the per-token schedule (``recipe.lm.token_schedule``); evaluation always uses
    the uniform schedule over the full range [sampling_eps, 1], so dev scores are NELBO bounds
    comparable across trainings."""
    if token_rates is not None and not (train and isinstance(model, MDLM)):
        raise ValueError(
            "training_loss: token_rates only apply to diffusion LM training; scoring uses the uniform bound"
        )
    if isinstance(model, ARLM):
        return model.loss(tokens, lengths)
    config = model.config
    noise_range = config.training_noise_range() if train else (config.sampling_eps, 1.0)
    return model.loss(tokens, lengths, noise_range, generator, token_rates)


@torch.no_grad()
def use_averaged_weights(model: LanguageModel) -> None:
    """Replace the weights by their EMA (once; a no-op without EMA shadows)."""
    ema = getattr(model, "ema", None)
    if ema is not None and not getattr(model, "_ema_applied", False):
        ema.copy_to(model)
        model._ema_applied = True


def load_model(
    config: LmConfig, checkpoint: str | os.PathLike, use_ema: bool = True, device: str | torch.device = "cpu"
) -> LanguageModel:
    """The model of ``config`` with the weights of a RETURNN ``epoch.NNN.pt`` (or a bare state dict),
    in eval mode on ``device``, for scoring (without ATAT's importance estimator). With ``use_ema`` the
    checkpoint's EMA weights (if any) are used."""
    model = build_model(config, scoring=True)
    state = read_checkpoint(checkpoint)
    has_ema = any(k.startswith("ema.") for k in state)
    if has_ema and not hasattr(model, "ema"):
        model.ema = ExponentialMovingAverage(model, 0.5)  # decay is irrelevant: the shadows are loaded
    if not has_ema and hasattr(model, "ema"):
        del model.ema
    check_compatible(model, state, f"checkpoint {os.fspath(checkpoint)}", config.describe())
    model.load_state_dict(state, strict=True)
    if use_ema:
        use_averaged_weights(model)
    return model.to(device).eval()

"""One entry point to build the LMs from a plain dict config and to compute their training loss.

Config keys (``build_model``):
    kind            "ar" | "mdlm" | "bd3lm"                      (required)
    vocab_size      V, the SentencePiece vocabulary size          (required)
    eos_id          SentencePiece EOS id                          (required)
    max_seq_len     model length L (tokens incl. EOS)             (required)
    block_size      BD3-LM block size L', divides max_seq_len     (required for bd3lm only)
    preset          "tiny" | "mini" | "small" | "medium"          (default "small", see recipe.lm.dit.PRESETS)
    hidden, n_blocks, n_heads, cond_dim, mlp_ratio                (override the preset)
    dropout 0.1, tie_embeddings False, time_conditioning False    (time conditioning: diffusion only)
    sampling_eps 1e-3, antithetic True                            (diffusion only)
    noise_clip None -> [sampling_eps, 1]; resample False          (diffusion / bd3lm only)
    ema_decay 0.0                                                 (> 0 attaches model.ema)
Unknown keys are an error (typos would otherwise be silently ignored).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from recipe.lm.ar_lm import ARLM
from recipe.lm.block_diffusion import BD3LM
from recipe.lm.checkpoint_compat import check_compatible
from recipe.lm.dit import PRESETS, DiTConfig
from recipe.lm.ema import ExponentialMovingAverage
from recipe.lm.mdlm import MDLM

KINDS = ("ar", "mdlm", "bd3lm")
LanguageModel = ARLM | MDLM | BD3LM

_COMMON_KEYS = {
    "kind",
    "vocab_size",
    "eos_id",
    "max_seq_len",
    "preset",
    "hidden",
    "n_blocks",
    "n_heads",
    "cond_dim",
    "mlp_ratio",
    "dropout",
    "tie_embeddings",
    "ema_decay",
}
_DIFFUSION_KEYS = {"time_conditioning", "sampling_eps", "antithetic", "noise_clip"}
_BD3_KEYS = {"block_size", "resample"}


def _allowed_keys(kind: str) -> set[str]:
    if kind == "ar":
        return _COMMON_KEYS
    if kind == "mdlm":
        return _COMMON_KEYS | _DIFFUSION_KEYS
    return _COMMON_KEYS | _DIFFUSION_KEYS | _BD3_KEYS


def _require(config: Mapping[str, Any], key: str) -> Any:
    if key not in config:
        raise ValueError(f"LM config for kind={config.get('kind')!r} misses the required key {key!r}")
    return config[key]


def backbone_config(config: Mapping[str, Any]) -> DiTConfig:
    """The DiTConfig implied by an LM config (input rows V for AR, V + 1 with [MASK] otherwise)."""
    preset = config.get("preset", "small")
    if preset not in PRESETS:
        raise ValueError(f"LM config: unknown preset {preset!r}, choose one of {sorted(PRESETS)}")
    dims = dict(PRESETS[preset])
    for key in ("hidden", "n_blocks", "n_heads", "cond_dim", "mlp_ratio"):
        if key in config:
            dims[key] = int(config[key])
    vocab = int(_require(config, "vocab_size"))
    return DiTConfig(
        input_size=vocab if config["kind"] == "ar" else vocab + 1,
        output_size=vocab,
        dropout=float(config.get("dropout", 0.1)),
        time_conditioning=bool(config.get("time_conditioning", False)),
        tie_embeddings=bool(config.get("tie_embeddings", False)),
        **dims,
    )


def build_model(config: Mapping[str, Any]) -> LanguageModel:
    """Build the LM for ``config['kind']`` (see the module docstring for the keys)."""
    kind = config.get("kind")
    if kind not in KINDS:
        raise ValueError(f"LM config: 'kind' must be one of {KINDS}, got {kind!r}")
    unknown = set(config) - _allowed_keys(kind)
    if unknown:
        raise ValueError(f"LM config for kind={kind!r} has unknown keys {sorted(unknown)}")
    backbone = backbone_config(config)
    vocab, max_len = int(config["vocab_size"]), int(_require(config, "max_seq_len"))
    eos_id = int(_require(config, "eos_id"))
    if not 0 <= eos_id < vocab:
        raise ValueError(f"LM config: eos_id={eos_id} outside [0, vocab_size={vocab})")
    model: LanguageModel
    if kind == "ar":
        model = ARLM(backbone, eos_id, max_len)
    else:
        eps, anti = float(config.get("sampling_eps", 1e-3)), bool(config.get("antithetic", True))
        if kind == "mdlm":
            model = MDLM(backbone, vocab, eos_id, max_len, eps, anti)
        else:
            block = int(_require(config, "block_size"))
            resample = bool(config.get("resample", False))
            model = BD3LM(backbone, vocab, eos_id, max_len, block, eps, anti, resample)
        if config.get("noise_clip") is not None:
            low, high = config["noise_clip"]
            model.set_noise_clip(float(low), float(high))
    decay = float(config.get("ema_decay", 0.0))
    if decay > 0.0:
        model.ema = ExponentialMovingAverage(model, decay)
    return model


def loss(
    model: nn.Module, tokens: torch.Tensor, lengths: torch.Tensor, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum over the batch of the NLL (AR) or NELBO (diffusion) in nats, float32; number of tokens).

    The per-token training loss is their quotient; tokens are all ``lengths`` positions incl. EOS.
    """
    if not isinstance(model, ARLM | MDLM):
        raise TypeError(f"lm_models.loss: expected a model from build_model, got {type(model).__name__}")
    return model.loss(tokens, lengths, generator)


def load_checkpoint(
    config: Mapping[str, Any], checkpoint: str | os.PathLike, use_ema: bool = True, map_location: str = "cpu"
) -> LanguageModel:
    """Build the model from ``config`` and load a RETURNN ``epoch.NNN.pt`` (``{"model": state_dict}``) or a
    bare state dict; with ``use_ema`` and EMA weights present they replace the raw weights.  Returns the
    model in eval mode.  A checkpoint of another architecture is a ValueError naming file and config."""
    model = build_model(config)
    state = torch.load(os.fspath(checkpoint), map_location=map_location, weights_only=False)
    state = state.get("model", state) if isinstance(state, dict) else state
    if not isinstance(state, Mapping):
        raise ValueError(f"checkpoint {os.fspath(checkpoint)!r} holds no state dict")
    # earlier checkpoints stored the training noise range; it comes from the config now
    state = {k: v for k, v in state.items() if k != "noise_clip"}
    has_ema = any(k.startswith("ema.") for k in state)
    if has_ema and not hasattr(model, "ema"):
        model.ema = ExponentialMovingAverage(model, 0.5)
    if not has_ema and hasattr(model, "ema"):
        del model.ema
    check_compatible(model, state, f"checkpoint {os.fspath(checkpoint)!r}", model.config_summary())
    model.load_state_dict(state, strict=True)
    if use_ema and has_ema:
        model.ema.copy_to(model)
    return model.eval()

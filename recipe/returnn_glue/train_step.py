"""The functions a RETURNN (torch backend) config calls to train the LMs of ``recipe.lm.build``.

The config defines ``lm_config`` (the plain dict of ``lm_models.build_model``) and imports
``get_model`` and ``train_step`` from here. ``train_step`` reports the summed NELBO (diffusion)
or NLL (AR) of the batch with ``custom_inv_norm_factor`` = number of tokens, so RETURNN's scores
(and its learning-rate file, ``dev_loss_nelbo``) are nats per token and exp(score) is the
(bound on the) perplexity. Training draws t from the model's (possibly clipped) noise range; dev
scores always use the full range [sampling_eps, 1], so they are NELBO bounds comparable across
trainings. EMA weights, when configured, are updated at every training step.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from recipe.lm import build as lm_models
from recipe.lm.checkpoint_compat import check_compatible

LOSS_NAME = "nelbo"


def _config() -> dict[str, Any]:
    from returnn.config import get_global_config

    config = get_global_config()
    lm_config = config.typed_value("lm_config")
    if not isinstance(lm_config, dict):
        raise ValueError("RETURNN config: 'lm_config' (the dict for recipe.lm.build.build_model) is missing")
    return lm_config


def _check_preload(model: torch.nn.Module, lm_config: dict[str, Any]) -> None:
    """A ``preload_from_files`` checkpoint must fit the model: a clear error naming file and config."""
    from returnn.config import get_global_config

    preload = get_global_config().typed_value("preload_from_files") or {}
    for name, opts in preload.items():
        filename = os.fspath(opts["filename"])
        if not os.path.exists(filename):
            raise FileNotFoundError(f"preload_from_files[{name!r}]: checkpoint {filename} does not exist")
        state = torch.load(filename, map_location="cpu", weights_only=False)
        state = state.get("model", state)
        if opts.get("ignore_missing"):
            own = model.state_dict()
            state = {k: v for k, v in state.items() if k in own}
        check_compatible(model, state, f"preload_from_files[{name!r}] checkpoint {filename}", str(lm_config))


def get_model(*, epoch: int, step: int, **_: Any) -> torch.nn.Module:
    """RETURNN entry point: the LM described by the config's ``lm_config``."""
    lm_config = _config()
    model = lm_models.build_model(lm_config)
    if epoch == 1 and step == 0:
        _check_preload(model, lm_config)
    return model


def batch_from_extern_data(extern_data: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(tokens [B, T] int64, lengths [B] int64) from RETURNN's ``extern_data["data"]``."""
    data = extern_data["data"]
    tokens = data.raw_tensor.long()
    lengths = data.dims[1].dyn_size_ext.raw_tensor.to(tokens.device).long()
    return tokens, lengths


def train_step(*, model: torch.nn.Module, extern_data: Any, **_: Any) -> None:
    """RETURNN entry point: mark the batch's NELBO (or NLL) sum as loss, normalised per token."""
    import returnn.frontend as rf

    tokens, lengths = batch_from_extern_data(extern_data)
    ctx = rf.get_run_ctx()
    ema = getattr(model, "ema", None)
    if ema is not None and ctx.train_flag:
        ema.update(model)  # the average of the weights as they were after the previous update
    clip = getattr(model, "noise_clip", None)
    if clip is not None and not ctx.train_flag:
        saved = clip.clone()
        clip.copy_(torch.tensor([model.schedule.eps, 1.0]))  # evaluate the full-range NELBO
        try:
            total, num_tokens = lm_models.loss(model, tokens, lengths)
        finally:
            clip.copy_(saved)
    else:
        total, num_tokens = lm_models.loss(model, tokens, lengths)
    if not torch.isfinite(total):
        raise FloatingPointError(
            f"non-finite {LOSS_NAME} loss ({total.item()}) on a batch of {tokens.shape[0]} sequences; "
            "lower the learning rate or check the data"
        )
    ctx.mark_as_loss(
        total,
        LOSS_NAME,
        custom_inv_norm_factor=rf.convert_to_tensor(num_tokens.float()),
        use_normalized_loss=True,
    )

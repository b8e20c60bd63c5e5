"""The functions a RETURNN (torch backend) config calls to train the LMs of ``recipe.lm``.

The config defines ``lm_config`` (``LmConfig.as_dict()``) and ``warmup_steps`` and imports
``get_model``, ``train_step`` and ``dynamic_learning_rate`` from here. ``train_step`` reports the summed
NELBO (diffusion; loss name ``nelbo``) or NLL (AR; ``nll``) of the batch with ``custom_inv_norm_factor``
= number of tokens, so RETURNN's scores (``dev_loss_nelbo`` / ``dev_loss_nll`` in its learning-rate file)
are nats per token and exp(score) is the (bound on the) perplexity. Training draws t from the config's
noise range, dev scores from the full range (``recipe.lm.build.training_loss``). EMA weights, when
configured, are updated at every training step.

ATAT (``LmConfig.importance_estimator``): training batches use ``recipe.lm.importance.atat_loss``; its
curriculum phase is a function of RETURNN's (sub-)epoch, p = (epoch - 1) / num_epochs. RETURNN saves
the epoch and global step in every checkpoint and restores them when a training resumes, so a resumed
training continues in the phase its checkpoint was in. The estimator's MSE is the loss ``importance``
(scaled by ``importance_loss_weight``) and the phase (0 easy, 1 medium, 2 hard) is reported, outside the
gradient (``as_error``), as ``curriculum_phase``: RETURNN's learning-rate file shows it for every
sub-epoch (``train_loss_curriculum_phase``). Dev scores stay the uniform bound. A forward (scoring)
config builds the model without the estimator.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from recipe.data.dependency_depth import DepthAlignmentError, depth_token_weights
from recipe.lm.build import build_model, training_loss
from recipe.lm.checkpoints import check_compatible, read_checkpoint
from recipe.lm.config import LmConfig
from recipe.lm.importance import atat_loss, curriculum_phase
from recipe.lm.token_schedule import mix_token_rates


def loss_name(config: LmConfig) -> str:
    """The name RETURNN reports the loss under: ``nll`` for the AR LM, ``nelbo`` for diffusion LMs."""
    return "nelbo" if config.is_diffusion else "nll"


def lm_config_from_returnn() -> LmConfig:
    """The ``LmConfig`` of the running RETURNN config (its ``lm_config`` dict, validated again here)."""
    from returnn.config import get_global_config

    value = get_global_config().typed_value("lm_config")
    if not isinstance(value, dict):
        raise ValueError("RETURNN config: 'lm_config' (the dict of recipe.lm.config.LmConfig) is missing")
    return LmConfig(**value)


def _check_preload(model: torch.nn.Module, config: LmConfig) -> None:
    """A ``preload_from_files`` checkpoint must fit the model: a clear error naming file and config."""
    from returnn.config import get_global_config

    preload = get_global_config().typed_value("preload_from_files") or {}
    for name, opts in preload.items():
        filename = os.fspath(opts["filename"])
        state = read_checkpoint(filename)
        if opts.get("ignore_missing"):
            own = model.state_dict()
            state = {k: v for k, v in state.items() if k in own}
        check_compatible(
            model, state, f"preload_from_files[{name!r}] checkpoint {filename}", config.describe()
        )


def get_model(*, epoch: int, step: int, **_: Any) -> torch.nn.Module:
    """RETURNN entry point: the LM described by the config's ``lm_config`` (for a task other than
    ``train``, i.e. scoring, without ATAT's importance estimator)."""
    from returnn.config import get_global_config

    config = lm_config_from_returnn()
    model = build_model(config, scoring=get_global_config().value("task", "train") != "train")
    if epoch == 1 and step == 0:
        _check_preload(model, config)
    return model


def batch_from_extern_data(extern_data: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(tokens [B, T] int64, lengths [B] int64) from RETURNN's ``extern_data["data"]``."""
    data = extern_data["data"]
    tokens = data.raw_tensor.long()
    lengths = data.dims[1].dyn_size_ext.raw_tensor.to(tokens.device).long()
    return tokens, lengths


def token_rates_from_extern_data(
    config: LmConfig, extern_data: Any, tokens: torch.Tensor, lengths: torch.Tensor
) -> torch.Tensor | None:
    """Per-token rates g [B, T] of depth-adaptive masking (None without ``depth_mode``): the depth features
    (``token_depth``, with their ids ``token_depth_ids``; ``recipe.returnn_glue.datasets.
    text_ogg_zip_depth_dataset``) must line up with the batch's ids, else a DepthAlignmentError names
    the sequence; then w from the depths (``depth_token_weights``) and g = (1 - alpha) + alpha w."""
    if config.depth_mode is None:
        return None
    depth_data = extern_data["token_depth"]
    depth = depth_data.raw_tensor[..., 0].to(tokens.device)
    ids = extern_data["token_depth_ids"].raw_tensor.to(tokens.device).long()
    depth_lengths = depth_data.dims[1].dyn_size_ext.raw_tensor.to(tokens.device).long()
    bad = depth_lengths != lengths
    if not bool(bad.any()):  # equal lengths, hence equal padded shapes: compare the ids
        valid = torch.arange(tokens.shape[1], device=tokens.device)[None, :] < lengths[:, None]
        bad = ((ids != tokens) & valid).any(dim=1)
    if bool(bad.any()):
        row = int(bad.nonzero()[0, 0])
        tag = extern_data["seq_tag"].raw_tensor[row]
        raise DepthAlignmentError(
            f"sequence {tag!s}: its depth features ({int(depth_lengths[row])} tokens) do not line up with its "
            f"SentencePiece ids ({int(lengths[row])} tokens): the depth HDF was made from another text or "
            "SentencePiece model than the training data"
        )
    weights = depth_token_weights(depth, lengths, config.normalize_depth, config.reverse, config.depth_temp)
    return mix_token_rates(weights, lengths, config.mix_alpha)


def train_step(*, model: torch.nn.Module, extern_data: Any, **_: Any) -> None:
    """RETURNN entry point: mark the batch's NELBO (or NLL) sum as loss, normalised per token. Training
    with ``depth_mode`` masks with per-token rates (``token_rates_from_extern_data``); dev scores use the
    uniform bound."""
    import returnn.frontend as rf

    tokens, lengths = batch_from_extern_data(extern_data)
    ctx = rf.get_run_ctx()
    ema = getattr(model, "ema", None)
    if ema is not None and ctx.train_flag:
        ema.update(model)  # the average of the weights as they were after the previous update
    if ctx.train_flag and hasattr(model, "importance"):
        total, num_tokens = _atat_training_loss(model, tokens, lengths, int(ctx.epoch))
    else:
        rates = (
            token_rates_from_extern_data(model.config, extern_data, tokens, lengths)
            if ctx.train_flag
            else None
        )
        total, num_tokens = training_loss(model, tokens, lengths, train=ctx.train_flag, token_rates=rates)
    name = loss_name(model.config)
    if not torch.isfinite(total):
        raise FloatingPointError(
            f"non-finite {name} loss ({total.item()}) on a batch of {tokens.shape[0]} sequences; "
            "lower the learning rate or check the data"
        )
    ctx.mark_as_loss(
        total, name, custom_inv_norm_factor=rf.convert_to_tensor(num_tokens.float()), use_normalized_loss=True
    )


def training_progress(epoch: int, num_epochs: int) -> float:
    """p = (epoch - 1) / num_epochs in [0, 1): the fraction of the training done when (sub-)epoch
    ``epoch`` (1-based, as RETURNN counts) starts."""
    if num_epochs < 1 or not 1 <= epoch <= num_epochs:
        raise ValueError(f"training_progress: epoch {epoch} is not in 1..num_epochs={num_epochs}")
    return (epoch - 1) / num_epochs


def _atat_training_loss(
    model: torch.nn.Module, tokens: torch.Tensor, lengths: torch.Tensor, epoch: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """ATAT's training NELBO (returned) and, marked here, the estimator's loss and the curriculum phase."""
    import returnn.frontend as rf
    from returnn.config import get_global_config

    config = model.config
    num_epochs = get_global_config().int("num_epochs", 0)
    phase = curriculum_phase(training_progress(epoch, num_epochs), config.curriculum)
    total, num_tokens, estimator_loss = atat_loss(
        model, tokens, lengths, config.training_noise_range(), phase
    )
    ctx = rf.get_run_ctx()
    ctx.mark_as_loss(estimator_loss, "importance", scale=config.importance_loss_weight)
    ctx.mark_as_loss(rf.convert_to_tensor(torch.tensor(float(phase))), "curriculum_phase", as_error=True)
    return total, num_tokens


def warmup_learning_rate(learning_rate: float, global_train_step: int, warmup_steps: int) -> float:
    """Linear warmup, then constant (the MDLM/BD3-LM recipe): lr * min(1, (step + 1) / warmup_steps)."""
    return learning_rate * min(1.0, (global_train_step + 1) / max(1, warmup_steps))


def dynamic_learning_rate(*, global_train_step: int, learning_rate: float, **_: Any) -> float:
    """RETURNN entry point (``dynamic_learning_rate``): ``warmup_learning_rate`` with the config's
    ``warmup_steps``."""
    from returnn.config import get_global_config

    warmup_steps = get_global_config().int("warmup_steps", 0)
    return warmup_learning_rate(learning_rate, global_train_step, warmup_steps)

"""Reading checkpoints safely, and clear errors when one does not fit the model built from a config.

``read_checkpoint`` loads tensors only (``torch.load(weights_only=True)``): nothing in a checkpoint file
can run code. ``load_state_dict`` of the LM classes (also called by RETURNN) first compares the architecture read off the state dict
(embedding rows, hidden size, number of blocks, output size, time conditioning) with the model's own
and raises a ValueError that names both, instead of torch's per-tensor size-mismatch list.  Shape
mismatches and unexpected backbone tensors are errors even with ``strict=False`` (which RETURNN uses),
since they mean a different architecture, not a partial initialisation.
"""

from __future__ import annotations

import os
import pickle
import re
import zipfile
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from recipe.lm.importance import ESTIMATOR_KEY_PREFIXES

# state-dict entries of earlier versions of this project that are no longer model state
_LEGACY_KEYS = ("noise_clip",)

_BLOCK_KEY = re.compile(r"^backbone\.blocks\.(\d+)\.")


def describe_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Architecture facts of an LM state dict: embedding rows, hidden, n_layers, output size, conditioning."""
    desc: dict[str, Any] = {}
    emb = state_dict.get("backbone.embed.weight")
    if emb is not None:
        desc["embedding_rows"], desc["hidden"] = tuple(emb.shape)
    blocks = {int(m.group(1)) for k in state_dict for m in [_BLOCK_KEY.match(k)] if m}
    desc["n_layers"] = len(blocks)
    out = state_dict.get("backbone.out.weight")
    desc["output_size"] = int(out.shape[0]) if out is not None else "tied"
    cond = state_dict.get("backbone.time_embed.mlp.0.weight")
    desc["time_conditioning"] = cond is not None
    if cond is not None:
        desc["cond_dim"] = int(cond.shape[0])
    mlp = state_dict.get("backbone.blocks.0.mlp.0.weight")
    if mlp is not None:
        desc["mlp_hidden"] = int(mlp.shape[0])
    return desc


def read_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The model state dict of a RETURNN ``epoch.NNN.pt`` (``{"model": state_dict, ...}``) or of a bare
    state-dict file, on the CPU. Only tensors and plain containers are unpickled (weights_only)."""
    name = os.fspath(path)
    try:
        data = torch.load(name, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"checkpoint {name} does not exist") from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as e:
        raise ValueError(f"checkpoint {name} cannot be read as tensors: {str(e).splitlines()[0]}") from None
    state = data.get("model", data) if isinstance(data, dict) else data
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"checkpoint {name} holds no state dict of tensors")
    return {k: v for k, v in state.items() if k not in _LEGACY_KEYS}


def check_compatible(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str, config: str
) -> None:
    """Raise ValueError naming ``source`` and ``config`` if state_dict has another architecture than model."""
    own = model.state_dict()
    mismatched = [
        f"{k}: {tuple(v.shape)} in {source} vs {tuple(own[k].shape)} from the config"
        for k, v in state_dict.items()
        if k in own and tuple(v.shape) != tuple(own[k].shape)
    ]
    unexpected = [k for k in state_dict if k.startswith("backbone.") and k not in own]
    if not mismatched and not unexpected:
        return
    theirs_desc, own_desc = describe_state_dict(state_dict), describe_state_dict(own)
    diffs = [
        f"{key}={theirs_desc.get(key)} (checkpoint) vs {own_desc.get(key)} (config)"
        for key in sorted(set(theirs_desc) | set(own_desc))
        if theirs_desc.get(key) != own_desc.get(key)
    ]
    details = mismatched[:5] + [f"unexpected tensor {k}" for k in unexpected[:5]]
    raise ValueError(
        f"{source} does not match the model built from {config}: "
        + "; ".join(diffs or ["tensor shapes differ"])
        + ". Details: "
        + "; ".join(details)
    )


class CheckedLoadMixin(nn.Module):
    """nn.Module whose load_state_dict first runs ``check_compatible`` (needs ``self.config``, an LmConfig).
    A model built for scoring has no ATAT importance estimator: a checkpoint's estimator tensors are
    skipped then."""

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False):
        skipped = ESTIMATOR_KEY_PREFIXES if not hasattr(self, "importance") else ()
        state_dict = {
            k: v for k, v in state_dict.items() if k not in _LEGACY_KEYS and not k.startswith(skipped)
        }
        check_compatible(self, state_dict, "checkpoint state dict", self.config.describe())
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

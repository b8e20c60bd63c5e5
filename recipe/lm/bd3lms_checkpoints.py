"""Checkpoints of the official bd3lms / MDLM code (kuleshov-group) in, and this project's models out.

Two formats hold a reference model (its DiT under ``backbone.``; see ``../shared/design/bd3lms_checkpoints.md``):

* a Lightning ``.ckpt``: ``state_dict`` (``backbone.<name>``, possibly with torch.compile's ``_orig_mod.``
  inside the key, plus the 0-dim buffers ``sampling_eps_min`` / ``sampling_eps_max``), ``ema``
  (``shadow_params``: the EMA weights, a list in the backbone's ``parameters()`` order, i.e. the order
  of the parameter keys in ``state_dict``) and ``hyper_parameters["config"]`` (the hydra config);
* a Hugging Face directory: ``config.json`` (``model_type`` bd3lm / mdlm, ``model_length``,
  ``hidden_dim``, ``n_blocks``, ...) and ``model.safetensors`` or ``pytorch_model.bin`` with the same
  ``backbone.`` keys and buffers; its weights are already the EMA weights.

Such a model is this project's LM with ``LmConfig.bd3lms_layout``; the parameters correspond one to one
(``reference_name``).  The reference vocabulary is the tokenizer's V ids plus [MASK] = V (V + 1
embedding and output rows) when the tokenizer has no mask token (GPT-2), else the tokenizer's own V ids
with its [MASK] inside (``LmConfig.mask_id``; bert-base-uncased of the LM1B models: V = 30522,
[MASK] = 103).  Its sequences are [BOS] + tokens, ``model_length`` positions, so the project's
``max_seq_len`` (tokens incl. EOS, without BOS) is ``model_length - 1``.  EOS is ``eos_id`` (default
V - 1, ``<|endoftext|>`` of GPT-2) and BOS the same id unless the tokenizer has its own (BERT: BOS =
[CLS] = 101, EOS = [SEP] = 102, as bd3lms' data code sets them).  The special ids come from, first to
last: the caller (or a tokenizer it gives), config.json's ``eos/bos/mask_token_id``, the hydra config's
``data.tokenizer_name_or_path`` if it is one of ``KNOWN_TOKENIZERS``.

Nothing read can run code: ``.ckpt`` / ``.bin`` files go through ``torch.load(weights_only=True)``, the
hydra config's and tokenizer's classes are mapped to inert records (``_Record``) that only keep their
pickled state, and safetensors holds tensors only.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from recipe.data.tokenizers import TokenizerError
from recipe.lm.build import build_model
from recipe.lm.config import LmConfig
from recipe.lm.dit import ROTARY_BASE

REFERENCE_KINDS = {"ar": "ar", "mdlm": "mdlm", "bd3lm": "bd3lm"}
"""bd3lms ``algo.name`` / HF ``model_type`` -> ``LmConfig.kind``."""

KNOWN_TOKENIZERS: dict[str, dict[str, int]] = {
    "bert-base-uncased": {"vocab_size": 30522, "mask_id": 103, "bos_id": 101, "eos_id": 102},
}
"""Tokenizers named in bd3lms' hydra configs that have their own [MASK] (``data.tokenizer_name_or_path``):
vocabulary size and special ids ([CLS] as BOS and [SEP] as EOS, as bd3lms' ``get_tokenizer`` sets them)."""

BUFFERS = ("rotary_emb.inv_freq",)
"""Backbone buffers of the reference (recomputed here from the head size, checked on import)."""

NOISE_RANGE_KEYS = ("sampling_eps_min", "sampling_eps_max")

_ORIG_MOD = "_orig_mod."

# ours -> reference, for the parameter names that differ (all others are the same name)
_TO_REFERENCE = [
    (re.compile(r"^embed\.weight$"), "vocab_embed.embedding"),
    (re.compile(r"^time_embed\.(.*)$"), r"sigma_map.\1"),
    (re.compile(r"^blocks\.(\d+)\.qkv\.weight$"), r"blocks.\1.attn_qkv.weight"),
    (re.compile(r"^blocks\.(\d+)\.ada\.(weight|bias)$"), r"blocks.\1.adaLN_modulation.\2"),
    (re.compile(r"^norm_out\.weight$"), "output_layer.norm_final.weight"),
    (re.compile(r"^out\.(weight|bias)$"), r"output_layer.linear.\1"),
    (re.compile(r"^ada_out\.(weight|bias)$"), r"output_layer.adaLN_modulation.\1"),
]


def reference_name(name: str) -> str:
    """The bd3lms backbone parameter name (without ``backbone.``) of our backbone parameter ``name``."""
    for pattern, replacement in _TO_REFERENCE:
        if pattern.match(name):
            return pattern.sub(replacement, name)
    return name


@dataclass(frozen=True)
class ReferenceCheckpoint:
    """What a bd3lms checkpoint holds, in reference terms: backbone tensors (no prefix), the EMA
    shadows (Lightning only; name -> tensor) and the plain config (hydra dict or config.json)."""

    source: str
    fmt: str  # "lightning" | "huggingface"
    backbone: dict[str, torch.Tensor]
    ema: dict[str, torch.Tensor] | None
    noise_range: tuple[float, float] | None
    config: dict[str, Any]


class _Record:
    """Inert stand-in for a class named in a checkpoint's pickle (omegaconf, transformers, tokenizers):
    keeps the arguments and the pickled state, runs nothing."""

    def __init__(self, *args: Any) -> None:
        self.args = args
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state


def _plain_dict(*_: Any) -> dict:
    """Stand-in for ``collections.defaultdict`` (items are set afterwards)."""
    return {}


_RECORDED_CLASSES = (
    "omegaconf.dictconfig.DictConfig",
    "omegaconf.listconfig.ListConfig",
    "omegaconf.nodes.AnyNode",
    "omegaconf.nodes.StringNode",
    "omegaconf.nodes.IntegerNode",
    "omegaconf.nodes.FloatNode",
    "omegaconf.nodes.BooleanNode",
    "omegaconf.base.ContainerMetadata",
    "omegaconf.base.Metadata",
    "transformers.tokenization_utils_fast.PreTrainedTokenizerFast",
    "transformers.models.gpt2.tokenization_gpt2_fast.GPT2TokenizerFast",
    "transformers.models.bert.tokenization_bert_fast.BertTokenizerFast",
    "tokenizers.Tokenizer",
    "tokenizers.AddedToken",
    "tokenizers.models.Model",
    "typing.Any",
)


def _safe_globals() -> list[Any]:
    records = [(type(name.rsplit(".", 1)[1], (_Record,), {}), name) for name in _RECORDED_CLASSES]
    return [*records, (_plain_dict, "collections.defaultdict"), dict, list, int]


def _hydra_to_plain(node: Any) -> Any:
    """omegaconf records -> plain dicts / lists / values (interpolations stay strings like '${a.b}')."""
    if isinstance(node, _Record):
        kind = type(node).__name__
        state = node.state if isinstance(node.state, dict) else {}
        if kind in ("DictConfig", "ListConfig"):
            content = state.get("_content")
            if isinstance(content, dict):
                return {k: _hydra_to_plain(v) for k, v in content.items()}
            if isinstance(content, list):
                return [_hydra_to_plain(v) for v in content]
            return content
        return state.get("_val")
    if isinstance(node, dict):
        return {k: _hydra_to_plain(v) for k, v in node.items()}
    return node


_INTERPOLATION = re.compile(r"^\$\{([A-Za-z_][\w.]*)\}$")


def _lookup(config: dict[str, Any], key: str, source: str) -> Any:
    """config[a][b] for key "a.b", following plain ``${x.y}`` interpolations; KeyError names the file."""
    value: Any = config
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            raise KeyError(f"{source}: the config has no key {key!r}")
        value = value[part]
    match = _INTERPOLATION.match(value) if isinstance(value, str) else None
    return _lookup(config, match.group(1), source) if match else value


def _load_tensors(path: Path, what: str) -> Any:
    """torch.load(weights_only=True) with the inert records, memory-mapped (reading the config of a 2 GB
    checkpoint when the graph is built touches only what it reads); clear errors for missing / corrupt
    files."""
    try:
        with torch.serialization.safe_globals(_safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} {path} does not exist") from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"{what} {path} is truncated or not a torch checkpoint: {first}") from None


def _strip_compile_prefix(state: Mapping[str, Any]) -> dict[str, Any]:
    return {k.replace(_ORIG_MOD, ""): v for k, v in state.items()}


def _split_backbone(state: Mapping[str, Any], source: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(backbone tensors without 'backbone.', the other top-level entries); non-tensors are errors."""
    backbone, rest = {}, {}
    for key, value in state.items():
        if key.startswith("backbone."):
            if not isinstance(value, torch.Tensor):
                raise ValueError(f"{source}: {key} is not a tensor")
            backbone[key[len("backbone.") :]] = value
        else:
            rest[key] = value
    if not backbone:
        raise ValueError(
            f"{source}: no 'backbone.*' weights; not a bd3lms / MDLM checkpoint "
            f"(keys: {', '.join(sorted(state)[:8])})"
        )
    return backbone, rest


def _noise_range(entries: Mapping[str, Any], source: str) -> tuple[float, float] | None:
    present = [k for k in NOISE_RANGE_KEYS if k in entries]
    if not present:
        return None
    if len(present) == 1:
        raise ValueError(f"{source}: has {present[0]} but not its partner of {NOISE_RANGE_KEYS}")
    return (float(entries["sampling_eps_min"]), float(entries["sampling_eps_max"]))


def read_lightning_checkpoint(path: str | os.PathLike) -> ReferenceCheckpoint:
    """A bd3lms Lightning ``.ckpt`` (weights, EMA shadows, sampling_eps buffers, hydra config)."""
    path = Path(path)
    data = _load_tensors(path, "Lightning checkpoint")
    if not isinstance(data, dict) or not isinstance(data.get("state_dict"), Mapping):
        raise ValueError(f"Lightning checkpoint {path}: no 'state_dict' entry; not a Lightning checkpoint")
    source = f"Lightning checkpoint {path}"
    backbone, rest = _split_backbone(_strip_compile_prefix(data["state_dict"]), f"{source}, state_dict")
    hyper = data.get("hyper_parameters")
    config = _hydra_to_plain(hyper.get("config")) if isinstance(hyper, dict) else None
    if not isinstance(config, dict):
        raise ValueError(f"{source}: no hydra config in 'hyper_parameters'")
    ema = None
    if isinstance(data.get("ema"), dict) and "shadow_params" in data["ema"]:
        params = [k for k in backbone if k not in BUFFERS]
        shadows = data["ema"]["shadow_params"]
        if len(shadows) != len(params):
            raise ValueError(
                f"{source}: ema.shadow_params has {len(shadows)} tensors, the backbone {len(params)} parameters"
            )
        ema = dict(zip(params, shadows, strict=True))
        for key, shadow in ema.items():
            if tuple(shadow.shape) != tuple(backbone[key].shape):
                raise ValueError(
                    f"{source}: EMA shadow of {key} has shape {tuple(shadow.shape)}, "
                    f"the weight {tuple(backbone[key].shape)} (the ema list is not in parameters() order)"
                )
    return ReferenceCheckpoint(str(path), "lightning", backbone, ema, _noise_range(rest, source), config)


def read_huggingface_dir(path: str | os.PathLike) -> ReferenceCheckpoint:
    """A Hugging Face directory: config.json + model.safetensors (or pytorch_model.bin)."""
    path = Path(path)
    config_file = path / "config.json"
    try:
        config = json.loads(config_file.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"Hugging Face directory {path} has no config.json") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{config_file}: not valid JSON ({e})") from None
    if not isinstance(config, dict):
        raise ValueError(f"{config_file}: must hold a JSON object")
    weights = path / "model.safetensors"
    if weights.exists():
        try:
            state = load_file(weights)
        except (SafetensorError, OSError, ValueError) as e:
            raise ValueError(f"{weights} is truncated or not a safetensors file: {e}") from None
    elif (path / "pytorch_model.bin").exists():
        weights = path / "pytorch_model.bin"
        state = _load_tensors(weights, "weights file")
        if not isinstance(state, Mapping):
            raise ValueError(f"{weights}: holds no state dict")
    else:
        raise FileNotFoundError(
            f"Hugging Face directory {path} has neither model.safetensors nor pytorch_model.bin"
        )
    source = f"weights file {weights}"
    backbone, rest = _split_backbone(_strip_compile_prefix(state), source)
    noise_range = _noise_range(rest, source)
    if noise_range is None and all(k in config for k in NOISE_RANGE_KEYS):
        noise_range = (float(config["sampling_eps_min"]), float(config["sampling_eps_max"]))
    return ReferenceCheckpoint(str(path), "huggingface", backbone, None, noise_range, config)


def read_reference_checkpoint(path: str | os.PathLike) -> ReferenceCheckpoint:
    """A Hugging Face directory (a folder) or a Lightning ``.ckpt`` (a file)."""
    path = Path(path)
    if path.is_dir():
        return read_huggingface_dir(path)
    if not path.exists():
        raise FileNotFoundError(f"bd3lms checkpoint {path} does not exist")
    return read_lightning_checkpoint(path)


def _hf_field(ckpt: ReferenceCheckpoint, key: str) -> Any:
    if key not in ckpt.config:
        raise KeyError(f"{ckpt.source}/config.json: missing key {key!r}")
    return ckpt.config[key]


def _reference_hyper(ckpt: ReferenceCheckpoint) -> dict[str, Any]:
    """The architecture facts of either format, under one set of names (checked, with clear errors)."""
    if ckpt.fmt == "huggingface":
        kind = _hf_field(ckpt, "model_type")
        if kind not in REFERENCE_KINDS:
            raise ValueError(
                f"{ckpt.source}/config.json: model_type {kind!r} is not one of {sorted(REFERENCE_KINDS)}"
            )
        hyper = {
            "kind": REFERENCE_KINDS[kind],
            "model_length": _hf_field(ckpt, "model_length"),
            "hidden": _hf_field(ckpt, "hidden_dim"),
            "cond_dim": _hf_field(ckpt, "cond_dim"),
            "n_layers": _hf_field(ckpt, "n_blocks"),
            "n_heads": _hf_field(ckpt, "n_heads"),
            "dropout": float(ckpt.config.get("dropout", 0.1)),
            "time_conditioning": bool(ckpt.config.get("time_conditioning", False)),
            "vocab_rows": _hf_field(ckpt, "vocab_size"),
            "block_size": ckpt.config.get("block_size") if kind == "bd3lm" else None,
            "eos_id": ckpt.config.get("eos_token_id"),
            "bos_id": ckpt.config.get("bos_token_id"),
            "mask_id": ckpt.config.get("mask_token_id"),
        }
        if kind == "bd3lm" and hyper["block_size"] is None:
            raise KeyError(f"{ckpt.source}/config.json: missing key 'block_size' (model_type bd3lm)")
        if kind == "bd3lm" and ckpt.config.get("cross_attn", True) is not True:
            raise ValueError(f"{ckpt.source}/config.json: cross_attn must be true for model_type bd3lm")
        return hyper
    cfg, src = ckpt.config, f"{ckpt.source}, hyper_parameters"
    algo = _lookup(cfg, "algo.name", src)
    if algo not in REFERENCE_KINDS:
        raise ValueError(f"{src}: algo.name {algo!r} is not one of {sorted(REFERENCE_KINDS)}")
    kind = REFERENCE_KINDS[algo]
    parameterization = _lookup(cfg, "algo.parameterization", src)
    expected = "ar" if kind == "ar" else "subs"
    if parameterization != expected:
        raise ValueError(f"{src}: algo.parameterization {parameterization!r}; only {expected!r} is supported")
    noise = _lookup(cfg, "noise.type", src)
    if noise != "loglinear":
        raise ValueError(f"{src}: noise.type {noise!r}; only 'loglinear' is supported")
    if kind != "ar" and _lookup(cfg, "algo.ignore_bos", src) is not True:
        raise ValueError(f"{src}: algo.ignore_bos must be true (BOS is never masked in the bd3lms layout)")
    if kind == "bd3lm" and _lookup(cfg, "algo.cross_attn", src) is not True:
        raise ValueError(f"{src}: algo.cross_attn must be true for algo bd3lm")
    try:
        known = KNOWN_TOKENIZERS.get(_lookup(cfg, "data.tokenizer_name_or_path", src), {})
    except KeyError:
        known = {}
    return {
        "kind": kind,
        "model_length": _lookup(cfg, "model.length", src),
        "hidden": _lookup(cfg, "model.hidden_size", src),
        "cond_dim": _lookup(cfg, "model.cond_dim", src),
        "n_layers": _lookup(cfg, "model.n_blocks", src),
        "n_heads": _lookup(cfg, "model.n_heads", src),
        "dropout": float(_lookup(cfg, "model.dropout", src)),
        "time_conditioning": bool(_lookup(cfg, "algo.time_conditioning", src)),
        "vocab_rows": known.get("vocab_size"),
        "block_size": _lookup(cfg, "block_size", src) if kind == "bd3lm" else None,
        "eos_id": known.get("eos_id"),
        "bos_id": known.get("bos_id"),
        "mask_id": known.get("mask_id"),
        "sampling_eps": float(_lookup(cfg, "training.sampling_eps", src)),
        "antithetic": bool(_lookup(cfg, "training.antithetic_sampling", src)),
    }


def _special_ids(
    ckpt: ReferenceCheckpoint, hyper: dict[str, Any], rows: int, given: dict[str, int | None]
) -> tuple[int, dict[str, int | None]]:
    """(V, {eos_id, bos_id, mask_id}) for an embedding of ``rows`` rows: the ``given`` ids first, then
    the checkpoint's (``_reference_hyper``).  A mask id below rows - 1 is inside the vocabulary (V = rows);
    none, or rows - 1, is bd3lms' extra [MASK] = V (V = rows - 1)."""
    ids = {k: given[k] if given.get(k) is not None else hyper.get(k) for k in ("eos_id", "bos_id", "mask_id")}
    if ids["mask_id"] is not None and not 0 <= ids["mask_id"] < rows:
        raise ValueError(
            f"{ckpt.source}: mask id {ids['mask_id']} is outside backbone.vocab_embed.embedding's {rows} rows"
        )
    if ids["mask_id"] == rows - 1:
        ids["mask_id"] = None
    vocab_size = rows if ids["mask_id"] is not None else rows - 1
    if ids["eos_id"] is None:
        ids["eos_id"] = vocab_size - 1
    return vocab_size, ids


def tokenizer_ids(tokenizer: Any, ckpt: ReferenceCheckpoint) -> dict[str, int | None]:
    """The special ids of a tokenizer (``recipe.data.tokenizers``) for a checkpoint, as bd3lms derives
    them: its own [MASK] if it has one (then V rows), else the extra id V (V + 1 rows); TokenizerError
    naming both files if the checkpoint's rows say otherwise."""
    rows = int(ckpt.backbone["vocab_embed.embedding"].shape[0])
    expected = tokenizer.vocab_size + (tokenizer.mask_id is None)
    if rows != expected:
        has = "its own [MASK]" if tokenizer.mask_id is not None else "no [MASK] (bd3lms adds one)"
        raise TokenizerError(
            f"{ckpt.source}: backbone.vocab_embed.embedding has {rows} rows, but the tokenizer "
            f"{tokenizer.source} has {tokenizer.vocab_size} ids and {has}, so it needs {expected}"
        )
    return {"eos_id": tokenizer.eos_id, "bos_id": tokenizer.bos_id, "mask_id": tokenizer.mask_id}


def lm_config_of(
    ckpt: ReferenceCheckpoint,
    eos_id: int | None = None,
    *,
    bos_id: int | None = None,
    mask_id: int | None = None,
) -> LmConfig:
    """The ``LmConfig`` (bd3lms layout) of a reference checkpoint; ``eos_id``, ``bos_id``, ``mask_id``
    override what the checkpoint says (module docstring; defaults EOS = V - 1, BOS = EOS, [MASK] = V).
    Errors name the file and key."""
    hyper = _reference_hyper(ckpt)
    emb = ckpt.backbone.get("vocab_embed.embedding")
    if emb is None or emb.dim() != 2:
        raise ValueError(
            f"{ckpt.source}: missing weight backbone.vocab_embed.embedding (the token embedding)"
        )
    rows, hidden = (int(n) for n in emb.shape)
    if hyper["vocab_rows"] is not None and hyper["vocab_rows"] != rows:
        raise ValueError(
            f"{ckpt.source}: config vocab_size={hyper['vocab_rows']} but backbone.vocab_embed.embedding "
            f"has {rows} rows"
        )
    if hyper["hidden"] != hidden:
        raise ValueError(
            f"{ckpt.source}: config hidden size {hyper['hidden']} but backbone.vocab_embed.embedding is "
            f"{rows} x {hidden}"
        )
    mlp = ckpt.backbone.get("blocks.0.mlp.0.weight")
    mlp_ratio = int(mlp.shape[0]) // hidden if mlp is not None and mlp.dim() == 2 else 4
    vocab_size, ids = _special_ids(
        ckpt, hyper, rows, {"eos_id": eos_id, "bos_id": bos_id, "mask_id": mask_id}
    )
    noise_range = None
    if ckpt.noise_range is not None and hyper["kind"] == "bd3lm":
        low, high = ckpt.noise_range
        if not (math.isclose(low, hyper.get("sampling_eps", 1e-3), rel_tol=1e-6) and high == 1.0):
            noise_range = (low, high)
    try:
        return LmConfig(
            kind=hyper["kind"],
            vocab_size=vocab_size,
            eos_id=ids["eos_id"],
            bos_id=ids["bos_id"],
            mask_id=ids["mask_id"],
            max_seq_len=int(hyper["model_length"]) - 1,
            hidden=hidden,
            n_layers=int(hyper["n_layers"]),
            n_heads=int(hyper["n_heads"]),
            cond_dim=int(hyper["cond_dim"]),
            mlp_ratio=mlp_ratio,
            dropout=hyper["dropout"],
            time_conditioning=hyper["time_conditioning"] and hyper["kind"] != "ar",
            sampling_eps=hyper.get("sampling_eps", 1e-3),
            antithetic=hyper.get("antithetic", True),
            block_size=None if hyper["block_size"] is None else int(hyper["block_size"]),
            noise_range=noise_range,
            bd3lms_layout=True,
        )
    except ValueError as e:
        raise ValueError(f"{ckpt.source}: its config gives no valid LM: {e}") from None


def _rotary_inv_freq(head_dim: int) -> torch.Tensor:
    return 1.0 / (ROTARY_BASE ** (torch.arange(0, head_dim, 2).float() / head_dim))


def project_state_dict(
    ckpt: ReferenceCheckpoint, config: LmConfig, use_ema: bool = True
) -> dict[str, torch.Tensor]:
    """Our model's state dict (``backbone.<our name>``) from the reference weights, EMA shadows by
    default (as bd3lms evaluates; a Hugging Face directory already holds them).  Missing, unexpected
    and mis-shaped tensors are errors naming the file and the key."""
    own = build_model(config).backbone.state_dict()
    weights = dict(ckpt.backbone)
    if use_ema and ckpt.ema is not None:
        weights.update(ckpt.ema)
    missing = [reference_name(k) for k in own if reference_name(k) not in weights]
    unexpected = sorted(set(weights) - {reference_name(k) for k in own} - set(BUFFERS))
    if missing or unexpected:
        raise ValueError(
            f"{ckpt.source}: weights do not fit the {config.kind} model of its config ({config.describe()}): "
            + "; ".join(
                [f"missing backbone.{k}" for k in missing[:5]]
                + [f"unexpected backbone.{k}" for k in unexpected[:5]]
            )
        )
    state = {}
    for name, tensor in own.items():
        ref = reference_name(name)
        if tuple(weights[ref].shape) != tuple(tensor.shape):
            raise ValueError(
                f"{ckpt.source}: backbone.{ref} has shape {tuple(weights[ref].shape)}, but its config "
                f"({config.describe()}) needs {tuple(tensor.shape)}"
            )
        state[f"backbone.{name}"] = weights[ref].detach().clone().to(torch.float32)
    inv_freq = weights.get("rotary_emb.inv_freq")
    head_dim = config.hidden // config.n_heads
    if inv_freq is not None and not torch.allclose(
        inv_freq.float(), _rotary_inv_freq(head_dim), rtol=1e-6, atol=0
    ):
        raise ValueError(
            f"{ckpt.source}: backbone.rotary_emb.inv_freq is not the base-10000 rotary of head size {head_dim}"
        )
    return state


def import_checkpoint(
    path: str | os.PathLike, use_ema: bool = True, eos_id: int | None = None, **ids: int | None
) -> tuple[LmConfig, dict[str, torch.Tensor]]:
    """(LmConfig, our state dict) of a bd3lms Lightning ``.ckpt`` or Hugging Face directory (``ids``:
    ``bos_id`` / ``mask_id`` overrides, as ``lm_config_of``)."""
    ckpt = read_reference_checkpoint(path)
    config = lm_config_of(ckpt, eos_id, **ids)
    return config, project_state_dict(ckpt, config, use_ema)


def hf_config(config: LmConfig) -> dict[str, Any]:
    """config.json of the Hugging Face layout of kuleshov-group/bd3lm-owt-* / mdlm-owt for ``config``."""
    low, high = (
        config.training_noise_range() if config.noise_range is not None else (config.sampling_eps, 1.0)
    )
    out: dict[str, Any] = {
        "model_type": config.kind,
        "model_length": config.max_seq_len + 1,
        "vocab_size": config.vocab_size + (config.mask_id is None),
        "hidden_dim": config.hidden,
        "cond_dim": config.cond_dim,
        "n_blocks": config.n_layers,
        "n_heads": config.n_heads,
        "dropout": config.dropout,
        "time_conditioning": config.time_conditioning,
        "attn_backend": "sdpa",
        "adaln": config.is_diffusion,
        "causal": not config.is_diffusion,
        "cross_attn": config.kind == "bd3lm",
        "eos_token_id": config.eos_id,
        "bos_token_id": config.bos_index,
        "mask_token_id": config.mask_index,
    }
    if config.kind == "bd3lm":
        out |= {
            "block_size": config.block_size,
            "var_min": True,
            "sampling_eps_min": low,
            "sampling_eps_max": high,
        }
    return out


def export_huggingface_dir(
    config: LmConfig, state: Mapping[str, torch.Tensor], directory: str | os.PathLike
) -> None:
    """Write our model (``config``, its state dict ``state`` with ``backbone.`` keys and no EMA) as a
    Hugging Face directory in bd3lms' layout: config.json + model.safetensors.  Exact (the same
    tensors) for bd3lms-layout models; the project's default layout (separate BOS position, LayerNorm
    biases, no output bias or [MASK] row) is a different network and is refused."""
    if not config.bd3lms_layout:
        raise ValueError(
            f"export: {config.describe()} is not in the bd3lms layout (LmConfig.bd3lms_layout=False): its "
            "separate BOS position and LayerNorm biases have no counterpart in the reference network"
        )
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for key, value in state.items():
        if not key.startswith("backbone."):
            raise ValueError(
                f"export: state dict entry {key!r} is not a backbone weight (EMA shadows must be applied first)"
            )
        tensors[f"backbone.{reference_name(key[len('backbone.') :])}"] = value.detach().contiguous().cpu()
    tensors["backbone.rotary_emb.inv_freq"] = _rotary_inv_freq(config.hidden // config.n_heads)
    hf = hf_config(config)
    if config.kind == "bd3lm":
        tensors["sampling_eps_min"] = torch.tensor(float(hf["sampling_eps_min"]))
        tensors["sampling_eps_max"] = torch.tensor(float(hf["sampling_eps_max"]))
    save_file(tensors, directory / "model.safetensors")
    (directory / "config.json").write_text(json.dumps(hf, indent=2) + "\n")

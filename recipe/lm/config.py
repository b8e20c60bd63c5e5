"""``LmConfig``: the one typed description of an LM of this project (AR baseline, MDLM, BD3-LM).

It is built in the Sisyphus config (``config/exp.py``) and validated there, so a wrong block size,
vocabulary or preset fails when the graph is built, naming the field. Jobs hash it (all fields), RETURNN
configs carry it as a plain dict (``as_dict``, read back with ``LmConfig(**d)``), and
``recipe.lm.build`` turns it into a model. One name per concept:

    kind            "ar" | "mdlm" | "bd3lm"
    vocab_size      V, the SentencePiece vocabulary (diffusion LMs add [MASK] = V as input row V)
    eos_id          the SentencePiece model's EOS id; it also serves as BOS (position 0 of the input)
    max_seq_len     L, tokens per sequence incl. EOS (longer sequences are not trained on)
    hidden, n_layers, n_heads, cond_dim, mlp_ratio   the DiT backbone (``preset_dims`` gives the presets)
    block_size      L', tokens per diffusion block (BD3-LM only; divides max_seq_len)
    noise_range     (beta, omega): training draws t ~ U[beta, omega]; None = [sampling_eps, 1]. Scoring
                    (perplexity, rescoring) always uses the full range, so every model is compared on
                    the same bound. May be a Sisyphus Variable (the output of ``SearchNoiseRangeJob``).
    resample        BD3-LM: redraw a block whose masked fraction falls outside noise_range
    sampling_eps    eps of the log-linear schedule alpha_t = 1 - (1 - eps) t
    bd3lms_layout   the network and input layout of the official bd3lms / MDLM code, so that their
                    checkpoints load exactly (``recipe.lm.bd3lms_checkpoints``): LayerNorms without bias;
                    an output layer with bias and V + 1 rows (the [MASK] row last; its logit is dropped,
                    as the reference's -1e6 makes its probability 0); diffusion LMs keep adaLN with
                    sigma = 0 when time conditioning is off (a constant modulation) and, with it on,
                    condition every position (x_0 half included) on block 0's sigma; BOS is the first
                    token of block 0 (never masked, never scored: ``ignore_bos``) rather than an extra
                    position, and the AR LM has V + 1 embedding rows.  Blocks then hold
                    [BOS, x_0 .. x_{L'-2}], [x_{L'-1} ..], ..., so L' divides max_seq_len + 1.
                    Padding stays hidden from attention (bd3lms attends to its pads, but the data it
                    evaluates on are wrapped chunks without any, where both agree).
    mix_alpha       token-adaptive masking (``recipe.lm.token_schedule``): training masks token i with
                    the per-token rate g_i = (1 - mix_alpha) + mix_alpha * w_i; 0 = the uniform schedule
    depth_mode      where w comes from: None, or "dependency" (parse depths read from the data,
                    ``recipe.data.dependency_depth``)
    reverse, normalize_depth, depth_temp
                    dependency depth d -> w: d / max depth (normalize_depth), s = 1 - d (reverse: heads
                    are masked earlier) or s = d, w = n softmax(s / depth_temp) over the n word tokens
    importance_estimator  ATAT (diffusion LMs): train an importance estimator with the model and mask by
                    its curriculum (``recipe.lm.importance``); scoring ignores the estimator
    curriculum      (b_1, b_2): ATAT's phases easy / medium / hard end at these fractions of the training
    focus_weight    f: ATAT's weight of the tokens in the current phase's importance band (others 1)
    importance_loss_weight  lambda: weight of the estimator's MSE loss in the training loss
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

KINDS = ("ar", "mdlm", "bd3lm")

# Fields added after job ids were published, with the value that reproduces the earlier behaviour: while
# a config keeps that value, the field is left out of the hash (as i6_core's ``__sis_hash_exclude__``),
# so existing ids stay.
HASH_EXCLUDED_DEFAULTS: dict[str, Any] = {
    "bd3lms_layout": False,
    "mix_alpha": 0.0,
    "depth_mode": None,
    "reverse": False,
    "normalize_depth": True,
    "depth_temp": 1.0,
    "importance_estimator": False,
    "curriculum": (0.3, 0.7),
    "focus_weight": 2.0,
    "importance_loss_weight": 0.1,
}
DEPTH_MODES = (None, "dependency")

PRESETS: dict[str, dict[str, int]] = {
    "tiny": {"hidden": 64, "n_layers": 2, "n_heads": 4, "cond_dim": 32},
    "mini": {"hidden": 256, "n_layers": 4, "n_heads": 4, "cond_dim": 64},
    "small": {"hidden": 768, "n_layers": 12, "n_heads": 12, "cond_dim": 128},
    "medium": {"hidden": 1024, "n_layers": 24, "n_heads": 16, "cond_dim": 128},
}


def preset_dims(preset: str) -> dict[str, int]:
    """Backbone sizes of a named preset ("small" is the size of the MDLM/BD3-LM papers' OWT models)."""
    if preset not in PRESETS:
        raise ValueError(f"LmConfig: unknown preset {preset!r}, choose one of {sorted(PRESETS)}")
    return dict(PRESETS[preset])


@dataclass(frozen=True)
class LmConfig:
    """An LM of this project (see the module docstring for the fields); validated on construction."""

    kind: str
    vocab_size: int
    eos_id: int
    max_seq_len: int
    hidden: int = 768
    n_layers: int = 12
    n_heads: int = 12
    cond_dim: int = 128
    mlp_ratio: int = 4
    dropout: float = 0.1
    tie_embeddings: bool = False
    time_conditioning: bool = False
    sampling_eps: float = 1e-3
    antithetic: bool = True
    block_size: int | None = None
    noise_range: Any = None
    resample: bool = False
    ema_decay: float = 0.0
    bd3lms_layout: bool = False
    mix_alpha: float = 0.0
    depth_mode: str | None = None
    reverse: bool = False
    normalize_depth: bool = True
    depth_temp: float = 1.0
    importance_estimator: bool = False
    curriculum: tuple[float, float] = (0.3, 0.7)
    focus_weight: float = 2.0
    importance_loss_weight: float = 0.1

    def __post_init__(self) -> None:
        for name in ("noise_range", "curriculum"):
            if isinstance(getattr(self, name), list):
                object.__setattr__(self, name, tuple(getattr(self, name)))
        for name, error in self._errors():
            raise ValueError(f"LmConfig.{name}: {error} (in {self.describe()})")

    def _errors(self) -> list[tuple[str, str]]:
        errors = []
        if self.kind not in KINDS:
            errors.append(("kind", f"must be one of {KINDS}, got {self.kind!r}"))
        for name in ("vocab_size", "max_seq_len", "hidden", "n_layers", "n_heads", "cond_dim", "mlp_ratio"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                errors.append((name, f"must be a positive int, got {value!r}"))
        if errors:
            return errors
        if self.vocab_size < 2:
            errors.append(("vocab_size", f"must be at least 2, got {self.vocab_size}"))
        if not isinstance(self.eos_id, int) or not 0 <= self.eos_id < self.vocab_size:
            errors.append(
                ("eos_id", f"must be an id in [0, vocab_size={self.vocab_size}), got {self.eos_id!r}")
            )
        if self.hidden % self.n_heads or (self.hidden // self.n_heads) % 2:
            errors.append(
                ("n_heads", f"must divide hidden={self.hidden} into even head dims, got {self.n_heads}")
            )
        if not 0.0 <= self.dropout < 1.0:
            errors.append(("dropout", f"must be in [0, 1), got {self.dropout}"))
        if not 0.0 <= self.ema_decay < 1.0:
            errors.append(("ema_decay", f"must be in [0, 1) (0 = no EMA), got {self.ema_decay}"))
        if not 0.0 < self.sampling_eps < 1.0:
            errors.append(("sampling_eps", f"must be in (0, 1), got {self.sampling_eps}"))
        if self.kind == "bd3lm":
            if not isinstance(self.block_size, int) or self.block_size < 1:
                errors.append(("block_size", f"BD3-LM needs a positive block size, got {self.block_size!r}"))
            elif (self.max_seq_len + self.bos_in_first_block) % self.block_size:
                total = "max_seq_len + 1 (BOS inside block 0)" if self.bos_in_first_block else "max_seq_len"
                errors.append(
                    (
                        "block_size",
                        f"{self.block_size} does not divide {total}={self.max_seq_len + self.bos_in_first_block}",
                    )
                )
        elif self.block_size is not None:
            errors.append(("block_size", f"only BD3-LM has diffusion blocks, not kind={self.kind!r}"))
        if self.resample and self.kind != "bd3lm":
            errors.append(("resample", f"only BD3-LM resamples masks, not kind={self.kind!r}"))
        if self.kind == "ar":
            for name in ("time_conditioning", "noise_range"):
                if getattr(self, name) not in (None, False):
                    errors.append((name, "the AR LM has no diffusion time"))
        if not isinstance(self.bd3lms_layout, bool):
            errors.append(("bd3lms_layout", f"must be a bool, got {self.bd3lms_layout!r}"))
        elif self.bd3lms_layout:
            if self.tie_embeddings:
                errors.append(("tie_embeddings", "the bd3lms layout has its own output layer with a bias"))
            if self.resample:
                errors.append(("resample", "mask resampling is not implemented for the bd3lms layout"))
        errors.extend(self._masking_errors())
        errors.extend(self._importance_errors())
        if isinstance(self.noise_range, tuple):
            low, high = self.noise_range if len(self.noise_range) == 2 else (None, None)
            if not (isinstance(low, float | int) and isinstance(high, float | int) and 0 < low <= high <= 1):
                errors.append(
                    (
                        "noise_range",
                        f"must be (beta, omega) with 0 < beta <= omega <= 1, got {self.noise_range}",
                    )
                )
        elif self.noise_range is not None and not callable(getattr(self.noise_range, "get", None)):
            errors.append(
                ("noise_range", f"must be None, a (beta, omega) pair or a Variable, got {self.noise_range!r}")
            )
        return errors

    def _masking_errors(self) -> list[tuple[str, str]]:
        """Token-adaptive masking options: ranges, and a weight source whenever mix_alpha > 0."""
        errors = []
        if not isinstance(self.mix_alpha, float | int) or not 0.0 <= self.mix_alpha <= 1.0:
            errors.append(("mix_alpha", f"must be in [0, 1] (0 = uniform masking), got {self.mix_alpha!r}"))
        if self.depth_mode not in DEPTH_MODES:
            errors.append(("depth_mode", f"must be one of {DEPTH_MODES}, got {self.depth_mode!r}"))
        for name in ("reverse", "normalize_depth"):
            if not isinstance(getattr(self, name), bool):
                errors.append((name, f"must be a bool, got {getattr(self, name)!r}"))
        if not isinstance(self.depth_temp, float | int) or not self.depth_temp > 0:
            errors.append(("depth_temp", f"must be a positive temperature, got {self.depth_temp!r}"))
        if self.kind == "ar" and (self.mix_alpha or self.depth_mode is not None):
            errors.append(("mix_alpha", "token-adaptive masking needs a diffusion LM, not the AR LM"))
        elif self.mix_alpha and self.depth_mode is None and not self.importance_estimator:
            errors.append(
                (
                    "mix_alpha",
                    f"{self.mix_alpha} > 0 needs a token weight source: depth_mode or importance_estimator",
                )
            )
        elif self.depth_mode is not None and self.importance_estimator:
            errors.append(
                ("importance_estimator", "one token weight source: depth_mode or importance_estimator")
            )
        return errors

    def _importance_errors(self) -> list[tuple[str, str]]:
        """ATAT's options: a diffusion LM, phase boundaries in [0, 1] in order, positive weights."""
        errors = []
        if self.importance_estimator and self.kind == "ar":
            errors.append(("importance_estimator", "only diffusion LMs mask tokens, not kind='ar'"))
        pair = isinstance(self.curriculum, tuple) and len(self.curriculum) == 2
        first, second = self.curriculum if pair else (None, None)
        if not (
            isinstance(first, float | int) and isinstance(second, float | int) and 0 <= first <= second <= 1
        ):
            errors.append(
                ("curriculum", f"must be (b_1, b_2) with 0 <= b_1 <= b_2 <= 1, got {self.curriculum}")
            )
        if not self.focus_weight > 0:
            errors.append(("focus_weight", f"must be positive, got {self.focus_weight}"))
        if not self.importance_loss_weight >= 0:
            errors.append(("importance_loss_weight", f"must be >= 0, got {self.importance_loss_weight}"))
        return errors

    @property
    def is_diffusion(self) -> bool:
        return self.kind != "ar"

    @property
    def bos_in_first_block(self) -> int:
        """1 if BOS is the first token of diffusion block 0 (bd3lms layout), else 0 (an extra position)."""
        return int(self.bd3lms_layout and self.is_diffusion)

    def training_noise_range(self) -> tuple[float, float]:
        """(beta, omega) that training draws t from; needs a resolved noise_range (inside RETURNN)."""
        if self.noise_range is None:
            return (self.sampling_eps, 1.0)
        if not isinstance(self.noise_range, tuple):
            raise ValueError(
                f"LmConfig.noise_range: {self.noise_range!r} is not resolved to (beta, omega) yet"
            )
        return (float(self.noise_range[0]), float(self.noise_range[1]))

    def __sis_state__(self) -> dict[str, Any]:
        """What Sisyphus hashes: every field, except new ones at their ``HASH_EXCLUDED_DEFAULTS`` value."""
        return {
            name: value
            for name, value in self.as_dict().items()
            if name not in HASH_EXCLUDED_DEFAULTS or value != HASH_EXCLUDED_DEFAULTS[name]
        }

    def as_dict(self) -> dict[str, Any]:
        """Field name -> value, as written into RETURNN configs (``LmConfig(**d)`` reads it back)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def describe(self) -> str:
        """Short summary for error messages: kind and the fields that set the architecture."""
        block = f", block_size={self.block_size}" if self.kind == "bd3lm" else ""
        return (
            f"LmConfig(kind={self.kind!r}, vocab_size={self.vocab_size}, hidden={self.hidden}, "
            f"n_layers={self.n_layers}, time_conditioning={self.time_conditioning}{block})"
        )

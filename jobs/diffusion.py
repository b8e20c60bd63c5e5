"""LM jobs that run in-process (not as a RETURNN task): the data-driven noise-range search of BD3-LM,
sampling, and the generative perplexity of samples under the AR baseline. Models are loaded with
``recipe.lm.build.load_model`` (EMA weights if present), on a GPU when there is one."""

from __future__ import annotations

import math
from typing import Any

from jobs.returnn import PtCheckpoint
from recipe.data.tokenizers import Tokenizer, TokenizerFiles, tokenizer_files
from recipe.lm.config import LmConfig
from sisyphus import Job, Task, tk

# Arguments added after job ids were pinned: left out of the hash at their default, so ids stay.
TOKENIZER_HASH_EXCLUDE: dict[str, Any] = {"tokenizer": None}


def _load(lm_config: LmConfig, checkpoint: PtCheckpoint, files: TokenizerFiles):
    """(model in eval mode, device, tokenizer) after checking that the tokenizer fits the LM."""
    import torch

    from recipe.data.tokenizers import check_lm_tokenizer, load_tokenizer
    from recipe.lm.build import load_model

    tokenizer = load_tokenizer(files)
    check_lm_tokenizer(tokenizer, lm_config.vocab_size, lm_config.eos_id)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return load_model(lm_config, checkpoint.path.get_path(), device=device), device, tokenizer


def _encode(texts: list[str], tokenizer: Tokenizer, lm_config: LmConfig, max_tokens: int):
    """Length-sorted (tokens, lengths) batches of the texts + EOS, cut to the model length."""
    from recipe.lm.text_batches import encode_texts, length_batches

    seqs = [s[: lm_config.max_seq_len] for s in encode_texts(tokenizer, texts)]
    return [(tok, lens) for _, tok, lens in length_batches(seqs, max_tokens)]


class SearchNoiseRangeJob(Job):
    """BD3-LM's clipped noise schedule, chosen on held-out text (bd3lms' ``var_min``): among the candidate
    ranges t ~ U[β, ω] given by ``clip_search_widths`` and ``clip_search_delta``, the one that minimises
    the variance of the per-sequence training loss. Outputs ``out_noise_range`` (Variable ``(β, ω)``, for
    ``LmConfig.noise_range``) and ``out_variances`` (a table of all candidates). The text is encoded
    with ``spm_model`` or ``tokenizer`` (``TokenizerFiles``), exactly one of them. ``statistic``:
    "sequence" (the variance of the per-sequence loss) or "block" (bd3lms' ``var_min``: the variance of
    the per-block mean loss, see ``recipe.lm.block_diffusion.search_noise_range``)."""

    __sis_hash_exclude__ = {**TOKENIZER_HASH_EXCLUDE, "statistic": "sequence"}

    def __init__(
        self,
        checkpoint: PtCheckpoint,
        lm_config: LmConfig,
        text_dict: tk.Path,
        spm_model: tk.Path | None = None,
        *,
        clip_search_widths: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.9),
        clip_search_delta: float = 0.05,
        max_seqs: int = 512,
        seed: int = 0,
        tokenizer: TokenizerFiles | None = None,
        statistic: str = "sequence",
    ) -> None:
        from recipe.lm.block_diffusion import VAR_STATISTICS

        if statistic not in VAR_STATISTICS:
            raise ValueError(
                f"SearchNoiseRangeJob: statistic must be one of {VAR_STATISTICS}, got {statistic!r}"
            )
        self.checkpoint = checkpoint
        self.lm_config = lm_config
        self.text_dict = text_dict
        self.tokenizer = tokenizer_files(spm_model, tokenizer, type(self).__name__)
        self.statistic = statistic
        self.clip_search_widths = clip_search_widths
        self.clip_search_delta = clip_search_delta
        self.max_seqs = max_seqs
        self.seed = seed
        self.out_noise_range = self.output_var("noise_range")
        self.out_variances = self.output_path("variances.txt")

    def tasks(self):
        yield Task("run", rqmt={"cpu": 1, "mem": 4, "time": 1})

    def run(self) -> None:
        import torch

        from recipe.data.text_dict import read_text_dict
        from recipe.lm.block_diffusion import search_noise_range

        model, device, tokenizer = _load(self.lm_config, self.checkpoint, self.tokenizer)
        texts = [t for _, t in sorted(read_text_dict(self.text_dict).items())][: self.max_seqs]
        batches = [
            (tok.to(device), lens.to(device)) for tok, lens in _encode(texts, tokenizer, self.lm_config, 4096)
        ]
        generator = torch.Generator(device=device).manual_seed(self.seed)
        best, table = search_noise_range(
            model,
            batches,
            self.clip_search_widths,
            self.clip_search_delta,
            generator=generator,
            statistic=self.statistic,
        )
        what = {
            "sequence": "variance of the per-sequence loss",
            "block": "summed variance of the per-block mean loss",
        }
        with open(self.out_variances.get_path(), "w") as f:
            f.write(f"beta\tomega\t{what[self.statistic]} (nats/token)^2\n")
            for (low, high), var in sorted(table.items(), key=lambda kv: kv[1]):
                f.write(f"{low:.3f}\t{high:.3f}\t{var:.6f}{'  <- chosen' if (low, high) == best else ''}\n")
        self.out_noise_range.set(best)


class SampleLmJob(Job):
    """Unconditional samples: BD3-LM semi-autoregressive (KV cache, first-hitting, nucleus), MDLM
    ``ddpm_cache``, or AR ancestral sampling. Output ``out_samples`` (one text line per sample, decoded
    with ``spm_model`` or ``tokenizer``, exactly one of them; line breaks become spaces),
    ``out_num_forward``. ``nucleus_rule``:
    "project" keeps the token crossing ``nucleus_p``, "bd3lms" drops it (``recipe.lm.sampling``)."""

    __sis_hash_exclude__ = {**TOKENIZER_HASH_EXCLUDE, "nucleus_rule": "project"}

    def __init__(
        self,
        checkpoint: PtCheckpoint,
        lm_config: LmConfig,
        spm_model: tk.Path | None = None,
        *,
        num_samples: int = 32,
        max_len: int = 64,
        nucleus_p: float = 0.9,
        num_steps: int = 64,
        seed: int = 0,
        tokenizer: TokenizerFiles | None = None,
        nucleus_rule: str = "project",
    ) -> None:
        from recipe.lm.sampling import NUCLEUS_RULES

        if nucleus_rule not in NUCLEUS_RULES:
            raise ValueError(
                f"SampleLmJob: nucleus_rule must be one of {NUCLEUS_RULES}, got {nucleus_rule!r}"
            )
        self.checkpoint = checkpoint
        self.lm_config = lm_config
        self.tokenizer = tokenizer_files(spm_model, tokenizer, type(self).__name__)
        self.nucleus_rule = nucleus_rule
        self.num_samples = num_samples
        self.max_len = max_len
        self.nucleus_p = nucleus_p
        self.num_steps = num_steps
        self.seed = seed
        self.out_samples = self.output_path("samples.txt")
        self.out_num_forward = self.output_var("num_forward")

    def tasks(self):
        yield Task("run", rqmt={"cpu": 1, "mem": 4, "time": 1})

    def run(self) -> None:
        import torch

        from recipe.lm import sampling

        model, device, tokenizer = _load(self.lm_config, self.checkpoint, self.tokenizer)
        generator = torch.Generator(device=device).manual_seed(self.seed)
        common = {
            "nucleus_p": self.nucleus_p,
            "nucleus_rule": self.nucleus_rule,
            "generator": generator,
            "device": device,
        }
        if self.lm_config.kind == "bd3lm":
            samples = sampling.sample_bd3lm(model, self.num_samples, self.max_len, **common)
        elif self.lm_config.kind == "mdlm":
            samples = sampling.sample_mdlm(
                model, self.num_samples, self.max_len, num_steps=self.num_steps, **common
            )
        else:
            samples = sampling.sample_ar(model, self.num_samples, self.max_len, **common)
        with open(self.out_samples.get_path(), "w", encoding="utf-8") as f:
            for seq in samples.sequences:
                text = tokenizer.decode([t for t in seq if t != self.lm_config.eos_id])
                f.write(" ".join(text.splitlines()) + "\n")  # byte-level BPE can decode line breaks
        self.out_num_forward.set(samples.num_forward)


class GenerativePerplexityJob(Job):
    """Perplexity of sample texts under a scoring LM (usually the AR baseline): exp(−Σ log p / Σ tokens),
    the texts encoded with ``spm_model`` or ``tokenizer`` (exactly one of them)."""

    __sis_hash_exclude__ = TOKENIZER_HASH_EXCLUDE

    def __init__(
        self,
        samples: tk.Path,
        checkpoint: PtCheckpoint,
        lm_config: LmConfig,
        spm_model: tk.Path | None = None,
        *,
        tokenizer: TokenizerFiles | None = None,
    ) -> None:
        self.samples = samples
        self.checkpoint = checkpoint
        self.lm_config = lm_config
        self.tokenizer = tokenizer_files(spm_model, tokenizer, type(self).__name__)
        self.out_perplexity = self.output_var("perplexity")

    def tasks(self):
        yield Task("run", mini_task=True)

    def run(self) -> None:
        from recipe.lm.likelihood import sequence_log_likelihood

        model, device, tokenizer = _load(self.lm_config, self.checkpoint, self.tokenizer)
        texts = [line.rstrip("\n") for line in open(self.samples.get_path(), encoding="utf-8")]
        if not texts:
            raise ValueError(f"{self.samples}: no samples to score")
        total, tokens = 0.0, 0
        for tok, lens in _encode(texts, tokenizer, self.lm_config, 8192):
            total += float(sequence_log_likelihood(model, tok.to(device), lens.to(device)).sum())
            tokens += int(lens.sum())
        self.out_perplexity.set(math.exp(-total / tokens))

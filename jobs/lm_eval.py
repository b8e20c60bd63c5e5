"""LM evaluation jobs that run a RETURNN forward pass: perplexity and n-best rescoring.

Both write a RETURNN config (task=forward, ``load`` = the checkpoint, the model from
``recipe.returnn_glue.train_step.get_model``, ``forward_step``/``forward_callback`` from
``recipe.returnn_glue.forward``) and run RETURNN in the job's work directory. Diffusion LMs are scored
with the NELBO over the full noise range (``noise_range``, default [1e-3, 1] as in the reference work),
whatever range they were trained on.
"""

from __future__ import annotations

import math
import os
import subprocess
from typing import Any

from jobs.returnn import PtCheckpoint, ReturnnConfig, _resolve_device, project_root, returnn_python
from recipe.data.tokenizers import TokenizerFiles, tokenizer_files
from recipe.lm.config import LmConfig
from sisyphus import Job, Task, tk

FULL_NOISE_RANGE = (1e-3, 1.0)
PROTOCOLS = ("project", "bd3lms")

# Arguments added after job ids were pinned: left out of the hash at their default, so ids stay.
HASH_EXCLUDED_DEFAULTS: dict[str, Any] = {
    "noise": None,
    "lattice": False,
    "tokenizer": None,
    "protocol": "project",
}

FORWARD_EPILOG = """
import sys
sys.path.insert(0, {project_root!r})
from recipe.returnn_glue.train_step import get_model
from recipe.returnn_glue.forward import forward_step, forward_callback
"""


def run_returnn_forward(
    config: dict[str, Any], checkpoint: PtCheckpoint | tk.Path, device: str, cpus: int
) -> None:
    """Write ``returnn.config`` into the cwd and run RETURNN's forward task with it."""
    path = checkpoint.path if isinstance(checkpoint, PtCheckpoint) else checkpoint
    full = {
        "backend": "torch",
        "task": "forward",
        "load": path,
        **config,
    }
    post = {"device": _resolve_device(device), "log": ["./returnn.log"], "log_verbosity": 4}
    epilog = FORWARD_EPILOG.format(project_root=project_root())
    ReturnnConfig(full, post, python_epilog=epilog).write("returnn.config")
    python = returnn_python()
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = os.environ.get("SIS_ENGINE_CPUS", str(cpus))
    subprocess.check_call([python, "-m", "returnn", "returnn.config"], env=env)


def check_finite_scores(scores: dict[str, list[float]], source: str) -> list[str]:
    """Report lines (also printed as warnings) for NaN/inf LM scores; a ValueError if no score is finite."""
    values = [v for hyp_scores in scores.values() for v in hyp_scores]
    bad = [(tag, v) for tag, hyp_scores in scores.items() for v in hyp_scores if not math.isfinite(v)]
    if values and len(bad) == len(values):
        raise ValueError(f"{source}: every LM score is non-finite (e.g. {bad[0][1]} for {bad[0][0]})")
    if not bad:
        return []
    line = f"WARNING: {len(bad)} of {len(values)} LM scores are non-finite, e.g. {bad[0][1]} for {bad[0][0]}"
    print(line, flush=True)
    return [line]


class ComputePerplexityJob(Job):
    """Perplexity of an LM on a RETURNN dataset: exact for the AR LM, the NELBO bound for diffusion LMs.

    ``scoring`` options: ``num_samples`` Monte-Carlo samples per sequence (diffusion), ``noise_range``
    (beta, omega) of the evaluation, ``stratified``, ``seed`` (each sequence's noise is seeded from it
    and the sequence's tag, so its score does not depend on the other sequences of the dataset).
    Outputs: ``out_perplexity`` = exp(−Σ score / Σ tokens) (EOS counted), ``out_nats_per_token`` (−Σ score / Σ tokens: NLL for AR, NELBO for diffusion LMs),
    ``out_num_tokens``, ``out_num_seqs`` (Variables) and ``out_scores`` (``{tag: score}`` python literal).

    ``protocol="bd3lms"``: bd3lms' ``val/nll`` (``main.py mode=ppl_eval``) on its wrapped chunks
    (``TokenizeTextJob(wrap_length=model_length)``): position 0 of every chunk is context, never masked
    and not counted (``ignore_bos``; a chunk that starts with the model's BOS, the EOS id, is scored
    after the model's own BOS, see ``recipe.returnn_glue.forward``), t ~ U[1e-3, 1] (the full range),
    one t per block, EOS counted; the number is then an unbiased estimate of the same NELBO per token.
    "project" (default): every token of the dataset counts.
    """

    __sis_hash_exclude__ = {"protocol": "project"}

    def __init__(
        self,
        checkpoint: PtCheckpoint,
        lm_config: LmConfig,
        dataset: dict[str, Any],
        *,
        num_samples: int = 32,
        noise_range: tuple[float, float] = FULL_NOISE_RANGE,
        stratified: bool = True,
        seed: int = 0,
        batch_size: int = 4000,
        device: str = "auto",
        cpu_rqmt: int = 1,
        mem_rqmt: float = 4,
        time_rqmt: float = 1,
        protocol: str = "project",
    ) -> None:
        if protocol not in PROTOCOLS:
            raise ValueError(f"ComputePerplexityJob: protocol must be one of {PROTOCOLS}, got {protocol!r}")
        if protocol == "bd3lms" and tuple(noise_range) != FULL_NOISE_RANGE:
            raise ValueError(
                f"ComputePerplexityJob: protocol 'bd3lms' evaluates on t ~ U{list(FULL_NOISE_RANGE)}, got"
                f" noise_range={noise_range}"
            )
        self.checkpoint = checkpoint
        self.lm_config = lm_config
        self.dataset = dataset
        self.protocol = protocol
        self.scoring = {
            "num_samples": num_samples,
            "noise_range": noise_range,
            "stratified": stratified,
            "seed": seed,
            "ignore_bos": protocol == "bd3lms",
        }
        self.batch_size = batch_size
        self.device = device
        self.rqmt = {"cpu": cpu_rqmt, "mem": mem_rqmt, "time": time_rqmt, "gpu": 1 if device == "gpu" else 0}
        self.out_perplexity = self.output_var("perplexity")
        self.out_nats_per_token = self.output_var("nats_per_token")
        self.out_num_tokens = self.output_var("num_tokens")
        self.out_num_seqs = self.output_var("num_seqs")
        self.out_scores = self.output_path("scores.py")

    @classmethod
    def hash(cls, parsed_args: dict[str, Any]) -> str:
        return super().hash(
            {k: v for k, v in parsed_args.items() if not k.endswith("_rqmt") and k != "device"}
        )

    def tasks(self):
        yield Task("run", rqmt=self.rqmt)

    def run(self) -> None:
        from recipe.data.text_dict import write_text_dict
        from recipe.returnn_glue.forward import read_score_lines

        if os.path.exists("scores.jsonl"):
            os.unlink("scores.jsonl")  # a perplexity is computed in one go
        run_returnn_forward(
            {
                "lm_config": self.lm_config,
                "forward_data": self.dataset,
                "extern_data": {"data": {"dim": self.lm_config.vocab_size, "sparse": True, "dtype": "int32"}},
                "batch_size": self.batch_size,
                "max_seqs": 64,
                "scoring": {**self.scoring, "output": os.path.abspath("scores.jsonl")},
            },
            self.checkpoint,
            self.device,
            self.rqmt["cpu"],
        )
        entries = read_score_lines("scores.jsonl")
        if not entries:
            raise RuntimeError(f"RETURNN scored no sequences of {self.dataset}")
        total = sum(e["score"] for e in entries.values())
        tokens = sum(e["num_tokens"] for e in entries.values())
        write_text_dict(self.out_scores.get_path(), {t: repr(e["score"]) for t, e in sorted(entries.items())})
        self.out_nats_per_token.set(-total / tokens)
        self.out_perplexity.set(math.exp(-total / tokens))
        self.out_num_tokens.set(tokens)
        self.out_num_seqs.set(len(entries))


class RescoreNBestJob(Job):
    """LM scores for every hypothesis of an n-best file in the RETURNN search-output format.

    Diffusion LMs: Monte-Carlo −NELBO with ``sampling_number`` samples; all hypotheses of one utterance
    are scored in one batch, with ``shared_noise`` under the same noise draws and ``stratified`` t/mask
    uniforms. ``noise`` (default None: "shared" if ``shared_noise`` else "independent") selects how the
    hypotheses of an utterance share noise: "shared" (by position), "aligned" (uniforms tied to the
    tokens aligned to the first hypothesis, see ``recipe.lm.likelihood``) or "independent"; ``lattice``
    draws t on a randomised lattice over the samples. Each utterance's noise is seeded from ``seed`` and
    its tag, so a subset, another order or a resumed run gives the same scores. AR LM: exact
    log-probability. Output ``out_lm_scores``: ``{tag: [(lm_score, text), ...]}``
    in the input order (gzipped); ``out_report``: what was found in the input (characters the
    tokenizer cannot encode, empty hypotheses). Finished utterances are checkpointed in the
    work directory, so a rerun after a crash scores only the rest. The hypotheses are tokenised with
    ``spm_model`` or ``tokenizer`` (``TokenizerFiles``, e.g. the GPT-2 BPE of an imported model),
    exactly one of them.
    """

    def __init__(
        self,
        hypothesis_file: tk.Path,
        checkpoint: PtCheckpoint,
        lm_config: LmConfig,
        spm_model: tk.Path | None = None,
        *,
        sampling_number: int = 10,
        shared_noise: bool = True,
        stratified: bool = True,
        seed: int = 0,
        noise_range: tuple[float, float] = FULL_NOISE_RANGE,
        noise: str | None = None,
        lattice: bool = False,
        batch_size: int = 100000,
        device: str = "auto",
        cpu_rqmt: int = 1,
        mem_rqmt: float = 4,
        time_rqmt: float = 1,
        tokenizer: TokenizerFiles | None = None,
    ) -> None:
        self.hypothesis_file = hypothesis_file
        self.checkpoint = checkpoint
        self.lm_config = lm_config
        self.tokenizer = tokenizer_files(spm_model, tokenizer, type(self).__name__)
        self.scoring = {
            "num_samples": sampling_number,
            "shared_noise": shared_noise,
            "stratified": stratified,
            "seed": seed,
            "noise_range": noise_range,
            "noise": noise,
            "lattice": lattice,
        }
        if noise not in (None, "independent", "shared", "aligned"):
            raise ValueError(
                f"RescoreNBestJob: noise must be None, 'independent', 'shared' or 'aligned', got {noise!r}"
            )
        self.batch_size = batch_size
        self.device = device
        self.rqmt = {"cpu": cpu_rqmt, "mem": mem_rqmt, "time": time_rqmt, "gpu": 1 if device == "gpu" else 0}
        self.out_lm_scores = self.output_path("lm_scores.py.gz")
        self.out_report = self.output_path("report.txt")
        self.out_num_hypotheses = self.output_var("num_hypotheses")

    @classmethod
    def hash(cls, parsed_args: dict[str, Any]) -> str:
        return super().hash(
            {
                k: v
                for k, v in parsed_args.items()
                if not k.endswith("_rqmt")
                and k not in ("device", "batch_size")
                and not (k in HASH_EXCLUDED_DEFAULTS and v == HASH_EXCLUDED_DEFAULTS[k])
            }
        )

    def tasks(self):
        yield Task("run", resume="run", rqmt=self.rqmt)

    def run(self) -> None:
        from recipe.asr.nbest import describe_unknown_characters, unknown_characters
        from recipe.asr.search_output import (
            NBestScoreCheckpoint,
            nbest_with_scores,
            read_nbest,
            write_search_output,
        )
        from recipe.data.tokenizers import check_lm_tokenizer, load_tokenizer, write_id_vocabulary

        tokenizer = load_tokenizer(self.tokenizer)
        check_lm_tokenizer(tokenizer, self.lm_config.vocab_size, self.lm_config.eos_id)
        nbest = read_nbest(self.hypothesis_file)  # errors name file and line
        report = [
            f"{self.hypothesis_file}: {len(nbest)} utterances, {sum(map(len, nbest.values()))} hypotheses"
        ]
        unknown = describe_unknown_characters(
            unknown_characters(nbest, tokenizer),
            str(self.hypothesis_file),
            tokenizer.vocabulary,
            tokenizer.unknown_effect,
        )
        if unknown:
            report.append(unknown)
        empty = [tag for tag, hyps in nbest.items() for _, text in hyps if not text.strip()]
        if empty:
            report.append(f"{len(empty)} empty hypotheses (scored as EOS only), e.g. in {empty[0]}")
        no_hyps = [tag for tag, hyps in nbest.items() if not hyps]
        if no_hyps:
            report.append(f"{len(no_hyps)} utterances without hypotheses (kept empty), e.g. {no_hyps[0]}")
        print("\n".join(report), flush=True)

        checkpoint_path = os.path.abspath("lm_scores.checkpoint")
        with NBestScoreCheckpoint(checkpoint_path) as done:
            remaining = {
                tag: hyps
                for tag, hyps in nbest.items()
                if hyps and done.get(tag, [t for _, t in hyps]) is None
            }
        resumed = sum(1 for hyps in nbest.values() if hyps) - len(remaining)
        if resumed:
            report.append(f"{resumed} utterances already scored by an earlier run (resumed)")
        if remaining:
            write_search_output("remaining.py.gz", remaining)
            if self.tokenizer.kind == "sentencepiece":
                data_file = "remaining.py.gz"
                vocab = {"class": "SentencePieces", "model_file": self.tokenizer.files[0], "add_eos": True}
            else:  # RETURNN reads the ids written by our tokenizer (its own HF vocab needs transformers)
                data_file = "remaining_ids.py.gz"
                ids = {
                    tag: [(s, " ".join(map(str, [*tokenizer.encode(t), tokenizer.eos_id]))) for s, t in hyps]
                    for tag, hyps in remaining.items()
                }
                write_search_output(data_file, ids)
                write_id_vocabulary("token_ids.vocab", tokenizer.vocab_size)
                vocab = {
                    "class": "Vocabulary",
                    "vocab_file": os.path.abspath("token_ids.vocab"),
                    "unknown_label": None,
                }
            run_returnn_forward(
                {
                    "lm_config": self.lm_config,
                    "forward_data": {
                        "class": "TextDictDataset",
                        "filename": os.path.abspath(data_file),
                        "vocab": vocab,
                    },
                    "extern_data": {
                        "data_flat": {"dim": self.lm_config.vocab_size, "sparse": True, "dtype": "int32"},
                        "data_seq_lens": {"shape": (None,), "dtype": "int32"},
                    },
                    "batch_size": self.batch_size,
                    "max_seqs": 1,
                    "scoring": {
                        **self.scoring,
                        "output": checkpoint_path,
                        "nbest_file": os.path.abspath("remaining.py.gz"),
                    },
                },
                self.checkpoint,
                self.device,
                self.rqmt["cpu"],
            )
        with NBestScoreCheckpoint(checkpoint_path) as done:
            scores = {
                tag: (done.get(tag, [t for _, t in hyps]) if hyps else []) for tag, hyps in nbest.items()
            }
        missing = [tag for tag, s in scores.items() if s is None]
        if missing:
            raise RuntimeError(f"RETURNN returned no scores for {len(missing)} utterances, e.g. {missing[0]}")
        report += check_finite_scores(scores, str(self.hypothesis_file))
        write_search_output(self.out_lm_scores.get_path(), nbest_with_scores(nbest, scores))
        with open(self.out_report.get_path(), "w", encoding="utf-8") as f:
            f.write("\n".join(report) + "\n")
        self.out_num_hypotheses.set(sum(map(len, nbest.values())))

"""A pretrained bd3lms / MDLM checkpoint in the pipeline: import it, compute its perplexity with bd3lms'
evaluation protocol on the KJV test verses and on a text file of your own, draw samples, and rescore
the demo n-best lists (the stages of ``config/exp.py``, with the checkpoint's own tokenizer).

The three lines to change (or set the environment variables of the same names):

    PRETRAINED_CHECKPOINT  a bd3lms Lightning ``.ckpt`` or a Hugging Face directory (config.json + weights)
    TOKENIZER              its tokenizer: ``tokenizer.json``, a ``save_pretrained`` folder, a folder with
                           GPT-2's ``vocab.json`` + ``merges.txt``, or BERT's ``vocab.txt``
    USER_TEXT              a text file (one document per line, optionally gzipped) or "" for none

By default they point at the tiny bd3lms reference model in ``../shared/fixtures/bd3lms_reference`` when
that folder exists (a random model with a word-level vocabulary of t0..t48: the KJV words are outside it,
so its KJV numbers only show that the graph runs; each job's report lists what was left out).
Run: ``sis manager config/pretrained.py -r``; outputs under ``output/pretrained/``.
"""

from __future__ import annotations

import os
from pathlib import Path

from config.exp import DEFAULT, Setup, kjv_data, rescoring
from jobs.diffusion import SampleLmJob
from jobs.lm_eval import ComputePerplexityJob
from jobs.pretrained import ImportBd3lmsCheckpointJob, bd3lms_lm_config
from jobs.text import TokenizeTextJob
from recipe.data.tokenizers import TokenizerFiles, check_lm_tokenizer, load_tokenizer
from recipe.returnn_glue.datasets import token_id_dataset
from sisyphus import tk

FIXTURE = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "bd3lms_reference"

PRETRAINED_CHECKPOINT = os.environ.get("DLM_PRETRAINED_CHECKPOINT", str(FIXTURE / "mdlm.lightning.ckpt"))
TOKENIZER = os.environ.get("DLM_TOKENIZER", str(FIXTURE / "tokenizer"))
USER_TEXT = os.environ.get("DLM_TEXT", "")


def _existing(path: str, what: str, variable: str) -> str:
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"config/pretrained.py: {what} {path!r} does not exist; set {variable} (environment) or change"
            f" {variable.removeprefix('DLM_')} in config/pretrained.py"
        )
    return path


def pretrained_experiment(
    checkpoint: str, tokenizer: str, user_text: str = "", setup: Setup = DEFAULT, name: str = "pretrained"
) -> dict:
    """The graph for one checkpoint; returns its outputs ({"perplexity": {text: Variable}, "samples",
    "wer"}). The LM config and the tokenizer are read when the graph is built, so a tokenizer that does
    not fit the checkpoint fails here, naming both."""
    checkpoint = _existing(checkpoint, "checkpoint", "DLM_PRETRAINED_CHECKPOINT")
    files = TokenizerFiles.detect(_existing(tokenizer, "tokenizer", "DLM_TOKENIZER"))
    tok = load_tokenizer(files)
    lm_config = bd3lms_lm_config(checkpoint, tokenizer=files)  # EOS, BOS, [MASK] (BERT: its own)
    check_lm_tokenizer(tok, lm_config.vocab_size, lm_config.eos_id, lm_config.mask_id)
    imported = ImportBd3lmsCheckpointJob(tk.Path(checkpoint), lm_config)
    imported.add_alias(f"{name}/import")

    data = kjv_data(setup)
    texts = {"kjv_test": data["test_text_dict"]}
    if user_text:
        texts["user_text"] = tk.Path(_existing(user_text, "text file", "DLM_TEXT"))
    perplexity = {}
    for text_name, text in texts.items():
        # bd3lms' wrapped evaluation data: chunks of model_length = max_seq_len + 1 tokens (BOS included)
        chunks = TokenizeTextJob(text, files, wrap_length=lm_config.max_seq_len + 1)
        chunks.add_alias(f"{name}/{text_name}/chunks")
        tk.register_output(f"{name}/{text_name}/tokenizer_report.txt", chunks.out_report)
        dataset = token_id_dataset(chunks.out_text_dict, chunks.out_vocab)
        ppl = ComputePerplexityJob(
            imported.out_checkpoint, lm_config, dataset, num_samples=setup.ppl_samples, protocol="bd3lms"
        )
        ppl.add_alias(f"{name}/{text_name}/ppl")
        perplexity[text_name] = ppl.out_perplexity

    samples = SampleLmJob(
        imported.out_checkpoint,
        lm_config,
        tokenizer=files,
        num_samples=setup.num_lm_samples,
        max_len=lm_config.max_seq_len,
        nucleus_rule="bd3lms",
    )
    samples.add_alias(f"{name}/samples")
    tk.register_output(f"{name}/samples.txt", samples.out_samples)

    wers, _ = rescoring({**data, "tokenizer": files}, {name: (lm_config, imported.out_checkpoint)}, setup)
    results = {"perplexity": perplexity, "wer": wers[f"+ {name}"], "first_pass_wer": wers["first pass"]}
    tk.register_report(f"{name}/results.txt", results)
    return results


def py():
    pretrained_experiment(PRETRAINED_CHECKPOINT, TOKENIZER, USER_TEXT)

"""The standard LibriSpeech LM setup: the LibriSpeech LM text + 960h transcriptions → 10k SentencePiece →
AR baseline, MDLM pretraining, BD3-LM (L' = 4, 8, 16) finetuning → perplexities on dev/test-clean/other.

Meant to run as is on a GPU cluster (``settings.py`` pointing at the Slurm engine, see README.md):
``sis manager config/librispeech.py -r``. Every alias and output lies under ``librispeech/``, so it can
share a project with ``config/exp.py``.

Data (``librispeech_data``): ``librispeech-lm-norm.txt.gz`` (openslr 11, 40.4M upper-case sentences,
~0.8G words) plus the transcriptions of train-clean-100/-360 and train-other-500 (281k sentences),
normalised like the KJV data (lowercase, as the transcriptions) into one text-lines file for RETURNN's
``LmDataset``; a 10k SentencePiece unigram model trained on the 960h transcriptions (as the i6
LibriSpeech setups do); dev = dev-clean + dev-other (RETURNN's dev set of every training and the text
of the BD3-LM noise-range search); dev-clean, dev-other, test-clean and test-other each as a text-only
``OggZipDataset`` in a ``MetaDataset`` for the perplexities. openslr publishes no sha256 of the LM text,
so its checksum is not checked unless ``lm_corpus_sha256`` is set (the download job's ``sha256`` output
tells the digest to pin); the subset tarballs are checked against the published digests.

Default sizes (``DEFAULT``), following the BD3-LM paper's LM1B recipe (bd3lms): the "small" DiT
(768 hidden, 12 blocks, 12 heads; 100M parameters with the 10k vocabulary), dropout 0.1, EMA 0.9999,
AdamW at lr 3e-4 after 2500 linear warmup steps, batches of up to 512 sentences (``max_seqs``; at most
32768 padded tokens). Sentences are not packed, so a step sees ~512 × ~27 ≈ 14k tokens, a quarter of
bd3lms' 512 × 128. ``max_seq_len`` = 256 tokens incl. EOS (a multiple of 4, 8 and 16): the longest
dev/test utterances (~35 s, ~100 words) fit, the few longer LM-text sentences are not trained on.
``partition_epoch`` = 20: a sub-epoch is 1/20 of the text, ~2M sentences ≈ 4k steps, and ends with a
checkpoint and the dev scores. AR and MDLM train 200 sub-epochs (10 passes, ≈ 800k steps; the paper:
850k steps of MDLM pretraining, 1M for AR); each BD3-LM is finetuned from the best MDLM checkpoint for
20 sub-epochs on the full noise range, then 20 on the clipped range of the ``var_min`` search (≈ 160k
steps; the paper: 150k). Only every 20th checkpoint (and the last) is kept, and the best of these by dev
score is used: with the optimizer state a checkpoint is ~1.5 GB. Step counts are estimates from the
sentence counts; RETURNN's learning-rate files give the real ones. Each training asks for 1 GPU, 4 CPUs,
32 GB (``LmDataset`` holds the text in memory) and 24 h per submission (it resumes from its last
checkpoint). Not measured here (no GPU was at hand): at ~6 · 100M · 14k ≈ 8 TFLOP per step, an A100
would take roughly 0.1 s per step, i.e. about a day per pretraining. Perplexities (32 Monte-Carlo samples of the NELBO for the diffusion LMs) and the
noise-range search run on a GPU as well.

``TINY`` is the same graph at toy sizes for the tests, which point its download URLs at local fixture
archives (``file://``) with ``dataclasses.replace``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from config.exp import Setup, train_models
from jobs.corpus import MergeTextDictsJob, NormalizeTextLinesJob
from jobs.librispeech import DownloadLibriSpeechLmCorpusJob, DownloadLibriSpeechTranscriptionsJob
from jobs.lm_eval import ComputePerplexityJob
from jobs.returnn_data import TextDictToOggZipJob
from jobs.sentencepiece import SentencePieceType, TrainSentencePieceJob
from jobs.text import TextDictToTextLinesJob
from recipe.data.librispeech import LIBRISPEECH_SUBSETS, LM_CORPUS_URL
from recipe.lm.config import preset_dims
from recipe.returnn_glue.datasets import lm_train_dataset, text_ogg_zip_dev_dataset
from sisyphus import tk

TRAIN_SUBSETS = ("train-clean-100", "train-clean-360", "train-other-500")
DEV_SUBSETS = ("dev-clean", "dev-other")
EVAL_SUBSETS = ("dev-clean", "dev-other", "test-clean", "test-other")


@dataclass(frozen=True)
class LibriSpeechSetup(Setup):
    """``config/exp.py``'s ``Setup`` (model and training sizes; its KJV and ASR fields are unused) with the
    LibriSpeech defaults described in the module docstring, plus where the data comes from."""

    vocab_size: int = 10_000
    model: dict[str, Any] = field(
        default_factory=lambda: {**preset_dims("small"), "dropout": 0.1, "ema_decay": 0.9999}
    )
    max_seq_len: int = 256
    partition_epoch: int = 20
    pretrain_epochs: int = 200
    finetune_epochs: tuple[int, int] = (20, 20)
    block_sizes: tuple[int, ...] = (4, 8, 16)
    training: tuple = (
        ("learning_rate", 3e-4),
        ("warmup_steps", 2500),
        ("batch_size", 32768),
        ("max_seqs", 512),
    )
    ppl_samples: int = 32
    alias_prefix: str = "librispeech/"
    train_job_args: tuple = (("device", "gpu"), ("cpu_rqmt", 4), ("mem_rqmt", 32), ("time_rqmt", 24))
    keep_every: int = 20
    search_rqmt: tuple = (("gpu", 1), ("mem", 16), ("time", 2))
    # Data sources: the LM text and, per subset, (subset, url, sha256) overriding openslr and its digest.
    lm_corpus_url: str = LM_CORPUS_URL
    lm_corpus_sha256: str | None = None
    subset_urls: tuple[tuple[str, str, str | None], ...] = ()
    train_subsets: tuple[str, ...] = TRAIN_SUBSETS
    dev_subsets: tuple[str, ...] = DEV_SUBSETS
    eval_subsets: tuple[str, ...] = EVAL_SUBSETS
    ppl_job_args: tuple = (("device", "gpu"), ("mem_rqmt", 8), ("time_rqmt", 4))


DEFAULT = LibriSpeechSetup()

# Toy sizes for the end-to-end test (it sets lm_corpus_url and subset_urls to fixture archives); one
# BD3-LM and two perplexity subsets keep it at a few minutes on 2 CPU cores.
TINY = LibriSpeechSetup(
    vocab_size=128,
    model={**preset_dims("tiny"), "dropout": 0.0, "ema_decay": 0.9},
    max_seq_len=64,
    partition_epoch=1,
    pretrain_epochs=1,
    finetune_epochs=(1, 1),
    block_sizes=(4,),
    training=(("learning_rate", 1e-3), ("warmup_steps", 10), ("batch_size", 2000), ("max_seqs", 100)),
    ppl_samples=2,
    eval_subsets=("dev-clean", "test-other"),  # a clean and an other subset, dev and test
    train_job_args=(),
    keep_every=0,
    search_rqmt=(),
    ppl_job_args=(),
)


def librispeech_data(setup: LibriSpeechSetup) -> dict:
    """Downloads → normalised LM training text, 10k SentencePiece → RETURNN datasets (see the docstring)."""
    prefix = f"{setup.alias_prefix}data"
    urls = {subset: (url, sha256) for subset, url, sha256 in setup.subset_urls}
    unknown = sorted(set(urls) - set(LIBRISPEECH_SUBSETS))
    if unknown:
        raise ValueError(
            f"LibriSpeechSetup.subset_urls: no LibriSpeech subset {unknown}; {LIBRISPEECH_SUBSETS}"
        )
    text_dicts = {}
    for subset in dict.fromkeys([*setup.train_subsets, *setup.dev_subsets, *setup.eval_subsets]):
        url, sha256 = urls.get(subset, (None, None))
        job = DownloadLibriSpeechTranscriptionsJob(subset, url=url, checksum=sha256)
        job.add_alias(f"{prefix}/{subset}")
        text_dicts[subset] = job.out_text_dict

    lm_corpus = DownloadLibriSpeechLmCorpusJob(checksum=setup.lm_corpus_sha256, url=setup.lm_corpus_url)
    lm_corpus.add_alias(f"{prefix}/lm_corpus")
    tk.register_output(f"{prefix}/lm_corpus.sha256", lm_corpus.out_sha256)
    train_transcriptions = MergeTextDictsJob([text_dicts[s] for s in setup.train_subsets])
    train_transcriptions.add_alias(f"{prefix}/train_transcriptions")
    transcription_lines = TextDictToTextLinesJob(train_transcriptions.out_text_dict)
    transcription_lines.add_alias(f"{prefix}/train_transcription_lines")
    train_text = NormalizeTextLinesJob([lm_corpus.out_corpus_file, transcription_lines.out_text_lines])
    train_text.add_alias(f"{prefix}/lm_train_text")

    spm = TrainSentencePieceJob(
        transcription_lines.out_text_lines, setup.vocab_size, SentencePieceType.UNIGRAM
    )
    spm.add_alias(f"{prefix}/spm{setup.vocab_size}")
    tk.register_output(f"{prefix}/spm.model", spm.out_model)

    dev = MergeTextDictsJob([text_dicts[s] for s in setup.dev_subsets])
    dev.add_alias(f"{prefix}/dev")
    dev_ogg = TextDictToOggZipJob(dev.out_text_dict)
    dev_ogg.add_alias(f"{prefix}/dev_ogg_zip")
    eval_datasets = {}
    for subset in setup.eval_subsets:
        ogg = TextDictToOggZipJob(text_dicts[subset])
        ogg.add_alias(f"{prefix}/{subset}_ogg_zip")
        eval_datasets[subset] = text_ogg_zip_dev_dataset(ogg.out_ogg_zip, spm.out_model)
    return {
        "train": lm_train_dataset(
            train_text.out_text_lines, spm.out_model, partition_epoch=setup.partition_epoch
        ),
        "dev": text_ogg_zip_dev_dataset(dev_ogg.out_ogg_zip, spm.out_model),
        "eval": eval_datasets,
        "train_text": train_text.out_text_lines,
        "dev_text_dict": dev.out_text_dict,
        "spm_model": spm.out_model,
    }


def evaluate(data: dict, models: dict, setup: LibriSpeechSetup) -> dict:
    """{model: {subset: perplexity}}: exact for AR, the NELBO bound (full noise range) for diffusion LMs."""
    results: dict[str, dict[str, Any]] = {}
    for name, (config, checkpoint) in models.items():
        for subset, dataset in data["eval"].items():
            job = ComputePerplexityJob(
                checkpoint, config, dataset, num_samples=setup.ppl_samples, **dict(setup.ppl_job_args)
            )
            job.add_alias(f"{setup.alias_prefix}eval/{name}/{subset}_ppl")
            results.setdefault(name, {})[subset] = job.out_perplexity
    tk.register_report(f"{setup.alias_prefix}eval/perplexities.txt", results)
    return results


def librispeech_experiment(setup: LibriSpeechSetup) -> dict:
    """The whole graph for ``setup``; returns {model: {subset: perplexity Variable}}."""
    data = librispeech_data(setup)
    models, _ = train_models(data, setup)
    return evaluate(data, models, setup)


def py():
    librispeech_experiment(DEFAULT)

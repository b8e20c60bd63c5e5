"""The default experiment: KJV Bible → SentencePiece → AR baseline, MDLM pretraining, BD3-LM (L' = 4, 16)
finetuning → perplexities, samples → rescoring of real ASR n-best lists → report in ``output/``.

Sizes (``Setup``) are chosen so that everything finishes in about half an hour on a 2-core CPU; for
real runs use the "small" preset (768 hidden, 12 blocks) and more epochs. ``config/tiny.py`` runs the
same graph at toy sizes in about a minute (the end-to-end tests use it).
Run: ``sis manager config/exp.py -r``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from config.pipeline import lm_returnn_config, train_lm
from jobs.asr import (
    ApplyLmCombinationJob,
    ApplyScoreCombinationJob,
    DemoNBestJob,
    ScliteJob,
    SearchOutputToCtmJob,
    TextDictToStmJob,
    TuneLmCombinationJob,
    TuneScoreCombinationJob,
)
from jobs.corpus import KjvCorpusJob, SplitCorpusJob
from jobs.dependency import ParseDependencyDepthJob
from jobs.diffusion import GenerativePerplexityJob, SampleLmJob, SearchNoiseRangeJob
from jobs.lm_eval import ComputePerplexityJob, RescoreNBestJob
from jobs.report import ExperimentReportJob
from jobs.returnn import GetBestPtCheckpointJob
from jobs.returnn_data import TextDictToOggZipJob
from jobs.sentencepiece import SentencePieceType, TrainSentencePieceJob
from jobs.text import TextDictToTextLinesJob
from recipe.data.sentencepiece_model import EOS_ID
from recipe.lm.config import LmConfig, preset_dims
from recipe.returnn_glue.datasets import (
    lm_train_dataset,
    text_ogg_zip_depth_dataset,
    text_ogg_zip_dev_dataset,
)
from sisyphus import tk


@dataclass(frozen=True)
class Setup:
    """Sizes of the experiment; ``DEFAULT`` finishes in about half an hour on a 2-core CPU."""

    verses: str = "Gen1:1-Rev22:21"  # the whole KJV Bible
    dev_fraction: float = 0.01
    vocab_size: int = 1000
    model: dict[str, Any] = field(
        default_factory=lambda: {**preset_dims("mini"), "hidden": 192, "n_layers": 3, "dropout": 0.1}
    )  # LmConfig fields shared by every LM of the experiment
    max_seq_len: int = (
        192  # tokens incl. EOS; a multiple of every block size; longer verses are not trained on
    )
    partition_epoch: int = 4  # a RETURNN sub-epoch is a quarter of the training text
    pretrain_epochs: int = 8  # AR and MDLM: two passes over the data
    finetune_epochs: tuple[int, int] = (2, 3)  # BD3-LM: full noise range, then the searched clipped range
    block_sizes: tuple[int, ...] = (4, 16)
    training: tuple = (
        ("learning_rate", 1e-3),
        ("warmup_steps", 200),
        ("batch_size", 6000),
        ("max_seqs", 200),
    )
    asr_utterances: int = 80  # held-out verses per dev/test part that the demo recogniser decodes
    nbest_size: int = 20
    sampling_number: int = 10  # Monte-Carlo samples of the diffusion LMs' ELBO per hypothesis
    ppl_samples: int = 16  # Monte-Carlo samples per test sequence for the perplexity bound
    num_lm_samples: int = 32
    # Where and how the trainings run (none of these changes a job id): a prefix of every LM's alias and
    # output name, extra ReturnnTrainingJob arguments (device, *_rqmt), keep only every n-th checkpoint
    # (and the last; 0 = keep all), and rqmt overrides of the noise-range search (e.g. a GPU).
    alias_prefix: str = ""
    train_job_args: tuple = ()
    keep_every: int = 0
    search_rqmt: tuple = ()


DEFAULT = Setup()


def kjv_data(setup: Setup) -> dict:
    """Corpus → train/dev/test split → SentencePiece → RETURNN datasets."""
    corpus = KjvCorpusJob(verses=setup.verses)
    corpus.add_alias("data/kjv/corpus")
    split = SplitCorpusJob(
        corpus.out_text_dict, dev_fraction=setup.dev_fraction, test_fraction=setup.dev_fraction
    )
    split.add_alias("data/kjv/split")
    train_text = TextDictToTextLinesJob(split.out_train_text_dict)
    train_text.add_alias("data/kjv/train_text")
    spm = TrainSentencePieceJob(train_text.out_text_lines, setup.vocab_size, SentencePieceType.UNIGRAM)
    spm.add_alias(f"data/kjv/spm{setup.vocab_size}")
    tk.register_output("data/kjv/spm.model", spm.out_model)
    ogg = {}
    for part, text_dict in (("dev", split.out_dev_text_dict), ("test", split.out_test_text_dict)):
        job = TextDictToOggZipJob(text_dict)
        job.add_alias(f"data/kjv/{part}_ogg_zip")
        ogg[part] = job.out_ogg_zip
    return {
        "train": lm_train_dataset(
            train_text.out_text_lines, spm.out_model, partition_epoch=setup.partition_epoch
        ),
        "dev": text_ogg_zip_dev_dataset(ogg["dev"], spm.out_model),
        "test": text_ogg_zip_dev_dataset(ogg["test"], spm.out_model),
        "train_text": train_text.out_text_lines,
        "train_text_dict": split.out_train_text_dict,
        "dev_text_dict": split.out_dev_text_dict,
        "test_text_dict": split.out_test_text_dict,
        "dev_ogg_zip": ogg["dev"],
        "spm_model": spm.out_model,
    }


def dependency_depth_data(
    data: dict, setup: Setup, parser: str = "spacy", parser_model: str | tk.Path | None = None
) -> dict:
    """``data`` with train and dev as text + dependency-depth ``MetaDataset``s (``ParseDependencyDepthJob``
    on their text dicts; the train text as a text-only ogg zip, whose tags are the text dict's), for
    LmConfigs with ``depth_mode="dependency"``. Test data and everything else stay: scoring uses the
    uniform bound."""
    train_ogg = TextDictToOggZipJob(data["train_text_dict"])
    train_ogg.add_alias("data/kjv/train_ogg_zip")
    depth = {}
    for part in ("train", "dev"):
        parse = ParseDependencyDepthJob(data[f"{part}_text_dict"], data["spm_model"], parser, parser_model)
        parse.add_alias(f"data/kjv/{part}_dependency_depth_{parser}")
        tk.register_output(f"data/kjv/{part}_dependency_depth_{parser}.json", parse.out_info)
        depth[part] = parse.out_hdf
    return {
        **data,
        "train": text_ogg_zip_depth_dataset(
            train_ogg.out_ogg_zip, data["spm_model"], depth["train"], partition_epoch=setup.partition_epoch
        ),
        "dev": text_ogg_zip_depth_dataset(
            data["dev_ogg_zip"], data["spm_model"], depth["dev"], seq_ordering="sorted_reverse"
        ),
    }


def lm_config(kind: str, setup: Setup = DEFAULT, **fields: Any) -> LmConfig:
    """The LmConfig of one of the experiment's LMs (validated here, when the graph is built)."""
    return LmConfig(
        kind=kind,
        vocab_size=setup.vocab_size,
        eos_id=EOS_ID,  # the id layout TrainSentencePieceJob trains with
        max_seq_len=setup.max_seq_len,
        **setup.model,
        **fields,
    )


def train_stage(alias: str, config: LmConfig, data: dict, setup: Setup, num_epochs: int, preload=None):
    """A RETURNN training of ``config`` on the KJV data, optionally initialised from ``preload``."""
    returnn_config = lm_returnn_config(
        config,
        train_dataset=data["train"],
        dev_dataset=data["dev"],
        preload_checkpoint=preload,
        **dict(setup.training),
    )
    job_args: dict[str, Any] = {"cpu_rqmt": 1, **dict(setup.train_job_args)}
    if setup.keep_every:
        job_args["keep_epochs"] = sorted(
            {*range(setup.keep_every, num_epochs + 1, setup.keep_every), num_epochs}
        )
    return train_lm(alias, returnn_config, num_epochs=num_epochs, **job_args)


def best_checkpoint(job, config: LmConfig, alias: str):
    """The checkpoint of ``job``'s epoch with the lowest dev NELBO (NLL for AR)."""
    key = "dev_loss_nelbo" if config.is_diffusion else "dev_loss_nll"
    best = GetBestPtCheckpointJob(job.out_model_dir, job.out_learning_rates, key=key)
    best.add_alias(alias)
    return best.out_checkpoint


def train_models(
    data: dict, setup: Setup
) -> tuple[dict[str, tuple[LmConfig, object]], dict[str, list[tk.Path]]]:
    """{name: (lm_config, best checkpoint)} for the AR baseline, MDLM and the BD3-LMs, and the
    learning-rate files of each model's training stages in order (BD3-LM: MDLM, full range, clipped)."""
    models, learning_rates = {}, {}
    lm = f"{setup.alias_prefix}lm"
    for name in ("ar", "mdlm"):
        config = lm_config(name, setup)
        job = train_stage(f"{lm}/{name}/train", config, data, setup, setup.pretrain_epochs)
        models[name] = (config, best_checkpoint(job, config, f"{lm}/{name}/best"))
        learning_rates[name] = [job.out_learning_rates]

    for block_size in setup.block_sizes:
        name = f"bd3lm_{block_size}"
        full_range = lm_config("bd3lm", setup, block_size=block_size, resample=True)
        config, checkpoint, stages = finetune_bd3lm(
            f"{lm}/{name}", full_range, models["mdlm"][1], data, setup
        )
        models[name] = (config, checkpoint)
        learning_rates[name] = [*learning_rates["mdlm"], *stages]
    return models, learning_rates


def finetune_bd3lm(alias: str, full_range: LmConfig, pretrained, data: dict, setup: Setup):
    """BD3-LM finetuning from the ``pretrained`` MDLM checkpoint as in the reference recipe: the full noise
    range, ``SearchNoiseRangeJob`` on its last checkpoint, then the searched clipped range. Returns (the
    clipped LmConfig, its best checkpoint, [learning-rate file of both stages])."""
    full_epochs, clipped_epochs = setup.finetune_epochs
    stage1 = train_stage(f"{alias}/full_range", full_range, data, setup, full_epochs, preload=pretrained)
    stage1_checkpoint = stage1.out_checkpoints[full_epochs]
    search = SearchNoiseRangeJob(stage1_checkpoint, full_range, data["dev_text_dict"], data["spm_model"])
    search.add_alias(f"{alias}/clip_search")
    if setup.search_rqmt:
        search.update_rqmt("run", dict(setup.search_rqmt))
    tk.register_output(f"{alias}/clip_search.txt", search.out_variances)
    clipped = replace(full_range, noise_range=search.out_noise_range)
    stage2 = train_stage(f"{alias}/clipped", clipped, data, setup, clipped_epochs, preload=stage1_checkpoint)
    checkpoint = best_checkpoint(stage2, clipped, f"{alias}/best")
    return clipped, checkpoint, [stage1.out_learning_rates, stage2.out_learning_rates]


def evaluate(data: dict, models: dict, setup: Setup) -> dict:
    """Test perplexities (bounds for the diffusion LMs), samples and their generative perplexity."""
    results = {}
    ar_config, ar_checkpoint = models["ar"]
    for name, (config, checkpoint) in models.items():
        ppl = ComputePerplexityJob(checkpoint, config, data["test"], num_samples=setup.ppl_samples)
        ppl.add_alias(f"eval/{name}/test_ppl")
        results[name] = {"test_ppl": ppl.out_perplexity, "test_nats_per_token": ppl.out_nats_per_token}
        if config.is_diffusion:
            samples = SampleLmJob(
                checkpoint, config, data["spm_model"], num_samples=setup.num_lm_samples, max_len=64
            )
            samples.add_alias(f"eval/{name}/samples")
            tk.register_output(f"eval/{name}/samples.txt", samples.out_samples)
            gen = GenerativePerplexityJob(samples.out_samples, ar_checkpoint, ar_config, data["spm_model"])
            gen.add_alias(f"eval/{name}/gen_ppl")
            results[name]["gen_ppl_under_ar"] = gen.out_perplexity
    tk.register_report("eval/perplexities.txt", results)
    return results


# LM combinations rescored together (first pass + Σ_k λ_k·LM_k + β·words), when all their LMs are trained
LM_COMBINATIONS: tuple[tuple[str, ...], ...] = (("ar", "bd3lm_4"), ("ar", "mdlm"))


def rescoring(data: dict, models: dict, setup: Setup) -> tuple[dict, dict]:
    """Real n-best lists (espeak-ng + pocketsphinx with a trigram LM on the training text) rescored
    with each LM and with the ``LM_COMBINATIONS``; the scales (λ per LM, β length reward) tuned on dev
    only, applied to test; every system's dev/test output also scored by NIST sclite (reports in
    ``output/asr/<system>/<part>_sclite/``). Returns ({system: {part: WER}}, {system: {"trace": dev
    search trace, "dev_sclite"/"test_sclite": sclite WER}})."""
    nbest, refs, stm = {}, {}, {}
    for part in ("dev", "test"):
        job = DemoNBestJob(
            data[f"{part}_text_dict"],
            setup.nbest_size,
            lm_text=data["train_text"],
            max_seqs=setup.asr_utterances,
        )
        job.add_alias(f"asr/{part}_nbest")
        tk.register_output(f"asr/{part}_nbest.py.gz", job.out_nbest)
        nbest[part], refs[part] = job.out_nbest, job.out_references
        stm_job = TextDictToStmJob(job.out_references)
        stm_job.add_alias(f"asr/{part}_stm")
        stm[part] = stm_job.out_stm
    wers: dict[str, dict] = {}
    details: dict[str, dict] = {}
    outputs: dict[str, dict] = {"first pass": dict(nbest)}
    lm_scores: dict[str, dict] = {}
    for name, (config, checkpoint) in models.items():
        scores = {}
        for part in ("dev", "test"):
            job = RescoreNBestJob(
                nbest[part], checkpoint, config, data["spm_model"], sampling_number=setup.sampling_number
            )
            job.add_alias(f"asr/{name}/{part}_lm_scores")
            scores[part] = job.out_lm_scores
        lm_scores[name] = scores
        tune = TuneScoreCombinationJob(nbest["dev"], scores["dev"], refs["dev"])
        tune.add_alias(f"asr/{name}/tune")
        applied = {}
        for part in ("dev", "test"):
            job = ApplyScoreCombinationJob(
                nbest[part], scores[part], refs[part], tune.out_lm_scale, tune.out_length_scale
            )
            job.add_alias(f"asr/{name}/{part}_rescored")
            applied[part] = job
        wers.setdefault("first pass", {p: applied[p].out_first_pass_wer for p in applied})
        wers.setdefault("oracle", {p: applied[p].out_oracle_wer for p in applied})
        wers[f"+ {name}"] = {p: applied[p].out_wer for p in applied}
        outputs[f"+ {name}"] = {p: applied[p].out_search_results for p in applied}
    for combination in LM_COMBINATIONS:
        if not all(name in models for name in combination):
            continue
        system, alias = "+ " + " + ".join(combination), "asr/" + "+".join(combination)
        tune = TuneLmCombinationJob(
            nbest["dev"], [lm_scores[n]["dev"] for n in combination], refs["dev"], names=combination
        )
        tune.add_alias(f"{alias}/tune")
        tk.register_output(f"{alias}/tune_trace.txt", tune.out_trace)
        applied = {}
        for part in ("dev", "test"):
            job = ApplyLmCombinationJob(
                nbest[part],
                [lm_scores[n][part] for n in combination],
                refs[part],
                tune.out_lm_scales,
                tune.out_length_scale,
            )
            job.add_alias(f"{alias}/{part}_rescored")
            applied[part] = job
        wers[system] = {p: applied[p].out_wer for p in applied}
        outputs[system] = {p: applied[p].out_search_results for p in applied}
        details[system] = {"trace": tune.out_trace}
    for system, parts in outputs.items():
        directory = "asr/first_pass" if system == "first pass" else "asr/" + "+".join(system[2:].split(" + "))
        for part, hypotheses in parts.items():
            ctm = SearchOutputToCtmJob(hypotheses)
            ctm.add_alias(f"{directory}/{part}_ctm")
            sclite = ScliteJob(stm[part], ctm.out_ctm)
            sclite.add_alias(f"{directory}/{part}_sclite")
            tk.register_output(f"{directory}/{part}_sclite", sclite.out_report_dir)
            details.setdefault(system, {})[f"{part}_sclite"] = sclite.out_wer
    return wers, {system: details[system] for system in outputs}  # in the WER table's order


def run_experiment(setup: Setup) -> None:
    """The whole graph for ``setup``; ``py()`` runs it with the default sizes."""
    data = kjv_data(setup)
    models, learning_rates = train_models(data, setup)
    perplexities = evaluate(data, models, setup)
    wers, rescoring_details = rescoring(data, models, setup)
    notes = (
        "Perplexities are per SentencePiece token (EOS included) on the KJV test verses; for MDLM and "
        "BD3-LM they are the NELBO upper bound. WERs: pocketsphinx n-best lists of espeak-ng speech, "
        f"{setup.nbest_size}-best, rescored with first pass + λ·LM + β·words (λ, β tuned on dev; several"
        " LMs: first pass + Σ λ_k·LM_k + β·words, tuned on dev by coordinate descent). sclite: NIST"
        " sclite's WER of the same outputs (reports in output/asr/<system>/<part>_sclite/).",
    )
    register_report("report", perplexities, wers, learning_rates, rescoring_details, notes)


def register_report(
    name: str,
    perplexities: dict,
    wers: dict,
    learning_rates: dict,
    rescoring_details: dict,
    notes: tuple[str, ...],
    title: str | None = None,
) -> None:
    """``ExperimentReportJob`` (alias ``name``) written to ``output/<name>.md`` and ``output/<name>.png``."""
    report = ExperimentReportJob(
        perplexities, wers, learning_rates, notes=notes, rescoring_details=rescoring_details, title=title
    )
    report.add_alias(name)
    tk.register_output(f"{name}.md", report.out_report)
    tk.register_output(f"{name}.png", report.out_plot)


def py():
    run_experiment(DEFAULT)

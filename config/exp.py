"""The default experiment: KJV Bible → SentencePiece → AR baseline, MDLM pretraining, BD3-LM (L' = 4, 16)
finetuning → perplexities, samples → rescoring of real ASR n-best lists → report in ``output/``.

Sizes are chosen so that everything finishes in about half an hour on a 2-core CPU; for real runs
raise ``MODEL`` to the "small" preset (768 hidden, 12 blocks) and the epochs.
Run: ``sis manager config/exp.py -r``.
"""

from __future__ import annotations

from config.pipeline import lm_returnn_config, train_lm
from jobs.corpus import KjvCorpusJob, SplitCorpusJob
from jobs.diffusion import GenerativePerplexityJob, SampleLmJob, SearchNoiseClipJob
from jobs.lm_eval import ComputePerplexityJob
from jobs.returnn import GetBestPtCheckpointJob
from jobs.returnn_data import TextDictToOggZipJob
from jobs.sentencepiece import SentencePieceType, TrainSentencePieceJob
from jobs.text import TextDictToTextLinesJob
from recipe.returnn_datasets import lm_train_dataset, text_ogg_zip_dev_dataset
from sisyphus import tk

VOCAB_SIZE = 1000
MODEL = {"preset": "mini", "hidden": 192, "n_blocks": 3, "n_heads": 4, "cond_dim": 64, "dropout": 0.1}
MAX_SEQ_LEN = 192  # tokens incl. EOS; a multiple of every block size; longer verses are left out of training
PARTITION_EPOCH = 4  # a RETURNN sub-epoch is a quarter of the training text
PRETRAIN_EPOCHS = 10  # AR and MDLM: 2.5 passes over the data
FINETUNE_EPOCHS = (2, 2)  # BD3-LM: full noise range, then the searched clipped range
BLOCK_SIZES = (4, 16)
TRAINING = {"learning_rate": 1e-3, "warmup_steps": 200, "batch_size": 6000, "max_seqs": 200}


def kjv_data() -> dict:
    """Corpus → train/dev/test split → SentencePiece → RETURNN datasets."""
    corpus = KjvCorpusJob()
    corpus.add_alias("data/kjv/corpus")
    split = SplitCorpusJob(corpus.out_text_dict, dev_fraction=0.01, test_fraction=0.01)
    split.add_alias("data/kjv/split")
    train_text = TextDictToTextLinesJob(split.out_train_text_dict)
    train_text.add_alias("data/kjv/train_text")
    spm = TrainSentencePieceJob(train_text.out_text_lines, VOCAB_SIZE, SentencePieceType.UNIGRAM)
    spm.add_alias(f"data/kjv/spm{VOCAB_SIZE}")
    tk.register_output("data/kjv/spm.model", spm.out_model)
    ogg = {}
    for part, text_dict in (("dev", split.out_dev_text_dict), ("test", split.out_test_text_dict)):
        job = TextDictToOggZipJob(text_dict)
        job.add_alias(f"data/kjv/{part}_ogg_zip")
        ogg[part] = job.out_ogg_zip
    return {
        "train": lm_train_dataset(train_text.out_text_lines, spm.out_model, partition_epoch=PARTITION_EPOCH),
        "dev": text_ogg_zip_dev_dataset(ogg["dev"], spm.out_model),
        "test": text_ogg_zip_dev_dataset(ogg["test"], spm.out_model),
        "dev_text_dict": split.out_dev_text_dict,
        "test_text_dict": split.out_test_text_dict,
        "spm_model": spm.out_model,
    }


def lm_config(kind: str, **extra) -> dict:
    return {"kind": kind, "vocab_size": VOCAB_SIZE, "eos_id": 0, "max_seq_len": MAX_SEQ_LEN, **MODEL, **extra}


def train_models(data: dict) -> dict[str, tuple[dict, object]]:
    """{name: (lm_config, best checkpoint)} for the AR baseline, MDLM and the BD3-LMs."""
    models = {}
    for name, config in (("ar", lm_config("ar")), ("mdlm", lm_config("mdlm"))):
        job = train_lm(
            f"lm/{name}/train",
            lm_returnn_config(config, train_dataset=data["train"], dev_dataset=data["dev"], **TRAINING),
            num_epochs=PRETRAIN_EPOCHS, cpu_rqmt=1,
        )
        best = GetBestPtCheckpointJob(job.out_model_dir, job.out_learning_rates, key="dev_loss_nelbo")
        best.add_alias(f"lm/{name}/best")
        models[name] = (config, best.out_checkpoint)

    mdlm_checkpoint = models["mdlm"][1]
    for block_size in BLOCK_SIZES:
        name = f"bd3lm_{block_size}"
        full_range = lm_config("bd3lm", block_size=block_size, resample=True)
        stage1 = train_lm(
            f"lm/{name}/full_range",
            lm_returnn_config(full_range, train_dataset=data["train"], dev_dataset=data["dev"],
                              preload_checkpoint=mdlm_checkpoint, **TRAINING),
            num_epochs=FINETUNE_EPOCHS[0], cpu_rqmt=1,
        )
        search = SearchNoiseClipJob(stage1.out_checkpoints[FINETUNE_EPOCHS[0]], full_range,
                                    data["dev_text_dict"], data["spm_model"])
        search.add_alias(f"lm/{name}/clip_search")
        tk.register_output(f"lm/{name}/clip_search.txt", search.out_variances)
        clipped = lm_config("bd3lm", block_size=block_size, resample=True, noise_clip=search.out_noise_clip)
        stage2 = train_lm(
            f"lm/{name}/clipped",
            lm_returnn_config(clipped, train_dataset=data["train"], dev_dataset=data["dev"],
                              preload_checkpoint=stage1.out_checkpoints[FINETUNE_EPOCHS[0]], **TRAINING),
            num_epochs=FINETUNE_EPOCHS[1], cpu_rqmt=1,
        )
        best = GetBestPtCheckpointJob(stage2.out_model_dir, stage2.out_learning_rates, key="dev_loss_nelbo")
        best.add_alias(f"lm/{name}/best")
        models[name] = (lm_config("bd3lm", block_size=block_size), best.out_checkpoint)
    return models


def evaluate(data: dict, models: dict) -> dict:
    """Test perplexities (bounds for the diffusion LMs), samples and their generative perplexity."""
    results = {}
    ar_config, ar_checkpoint = models["ar"]
    for name, (config, checkpoint) in models.items():
        ppl = ComputePerplexityJob(checkpoint, config, data["test"], num_samples=16)
        ppl.add_alias(f"eval/{name}/test_ppl")
        results[name] = {"test_ppl": ppl.out_perplexity, "test_nelbo": ppl.out_nelbo_per_token}
        if config["kind"] != "ar":
            samples = SampleLmJob(checkpoint, config, data["spm_model"], num_samples=32, max_len=64)
            samples.add_alias(f"eval/{name}/samples")
            tk.register_output(f"eval/{name}/samples.txt", samples.out_samples)
            gen = GenerativePerplexityJob(samples.out_samples, ar_checkpoint, ar_config, data["spm_model"])
            gen.add_alias(f"eval/{name}/gen_ppl")
            results[name]["gen_ppl_under_ar"] = gen.out_perplexity
    tk.register_report("eval/perplexities.txt", results)
    return results


def py():
    data = kjv_data()
    models = train_models(data)
    evaluate(data, models)

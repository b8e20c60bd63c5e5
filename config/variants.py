"""Token-adaptive masking variants against their baselines on the KJV data of the default experiment:

    mdlm            the default experiment's MDLM (the same job)
    mdlm_atat       MDLM-ATAT: the same MDLM trained with an importance estimator and the easy → medium → hard
                    curriculum (``recipe.lm.importance``; g = (1 - alpha) + alpha w, alpha = ATAT["mix_alpha"])
    bd3lm_16        the default experiment's BD3-LM (L' = 16) finetuned from mdlm: mix_alpha = 0, the depth
                    signal inactive (the same jobs)
    mdlm_depth      MDLM pretrained with dependency-depth masking (DEPTH: mix_alpha 0.0625, reverse,
                    normalised depths, temperature 1; spaCy parses of the train and dev text,
                    ``config.exp.dependency_depth_data``)
    bd3lm_16_depth  BD3-LM (L' = 16) with the same masking, finetuned from mdlm_depth as in the original recipe
                    (the MDLM pretrained "with matching alpha / depth_mode")

Every model is compared on the uniform bound (test perplexity) and by rescoring the demo n-best lists;
the report (``output/variants/report.md`` + ``report.png``) shows both tables and the dev curves of all
trainings. The formulations are this project's (the original code of both systems is not public or
not usable); ../shared/design/token_adaptive_masking.md has the facts they start from.
Run: ``sis manager config/variants.py -r``.
"""

from __future__ import annotations

from config.exp import (
    DEFAULT,
    Setup,
    best_checkpoint,
    dependency_depth_data,
    finetune_bd3lm,
    kjv_data,
    lm_config,
    register_report,
    rescoring,
    train_stage,
)
from jobs.lm_eval import ComputePerplexityJob

ATAT = {"importance_estimator": True, "mix_alpha": 0.5}  # half of every rate from the focus weights
DEPTH = {
    "mix_alpha": 0.0625,
    "depth_mode": "dependency",
    "reverse": True,
    "normalize_depth": True,
    "depth_temp": 1.0,
}
BLOCK_SIZE = 16


def train_variants(data: dict, setup: Setup) -> tuple[dict, dict]:
    """{name: (LmConfig, best checkpoint)} and {name: [learning-rate file per training stage]}."""
    models, learning_rates = {}, {}
    depth_data = dependency_depth_data(data, setup)
    for name, fields, name_data in (
        ("mdlm", {}, data),
        ("mdlm_atat", ATAT, data),
        ("mdlm_depth", DEPTH, depth_data),
    ):
        config = lm_config("mdlm", setup, **fields)
        job = train_stage(f"lm/{name}/train", config, name_data, setup, setup.pretrain_epochs)
        models[name] = (config, best_checkpoint(job, config, f"lm/{name}/best"))
        learning_rates[name] = [job.out_learning_rates]
    for name, fields, name_data, pretrained in (
        (f"bd3lm_{BLOCK_SIZE}", {}, data, "mdlm"),
        (f"bd3lm_{BLOCK_SIZE}_depth", DEPTH, depth_data, "mdlm_depth"),
    ):
        full_range = lm_config("bd3lm", setup, block_size=BLOCK_SIZE, resample=True, **fields)
        config, checkpoint, stages = finetune_bd3lm(
            f"lm/{name}", full_range, models[pretrained][1], name_data, setup
        )
        models[name] = (config, checkpoint)
        learning_rates[name] = [*learning_rates[pretrained], *stages]
    return models, learning_rates


def run_variants(setup: Setup) -> None:
    """Data (shared with the default experiment), trainings, test perplexities, rescoring, report."""
    data = kjv_data(setup)
    models, learning_rates = train_variants(data, setup)
    perplexities = {}
    for name, (config, checkpoint) in models.items():
        ppl = ComputePerplexityJob(checkpoint, config, data["test"], num_samples=setup.ppl_samples)
        ppl.add_alias(f"eval/{name}/test_ppl")
        perplexities[name] = {"test_ppl": ppl.out_perplexity, "test_nats_per_token": ppl.out_nats_per_token}
    wers, rescoring_details = rescoring(data, models, setup)
    notes = (
        "Perplexities: per SentencePiece token (EOS included) on the KJV test verses, the uniform NELBO"
        " bound (g = 1) for every model, also for those trained with per-token masking rates, so all"
        " are compared on equal terms. WERs: the demo pocketsphinx n-best lists rescored with first"
        f" pass + λ·LM + β·words (λ, β tuned on dev), {setup.nbest_size}-best. Dev curves: RETURNN's"
        " dev NELBO per sub-epoch (uniform bound), BD3-LMs after their MDLM pretraining. The variants'"
        " formulas are this project's (the original code is not public or not usable).",
    )
    title = "Token-adaptive masking variants (ATAT, dependency depth) vs. baselines"
    register_report("variants/report", perplexities, wers, learning_rates, rescoring_details, notes, title)


def py():
    run_variants(DEFAULT)

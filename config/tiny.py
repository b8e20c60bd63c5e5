"""The default experiment's graph at toy sizes (Genesis only, tiny models, a few utterances): it runs
end to end in about a minute and is what the end-to-end tests run. ``sis manager config/tiny.py -r``."""

from __future__ import annotations

from config.exp import Setup, run_experiment
from recipe.lm.config import preset_dims

TINY = Setup(
    verses="Gen1:1-Gen50:26",
    dev_fraction=0.02,
    vocab_size=300,
    model={**preset_dims("tiny"), "dropout": 0.0},
    max_seq_len=128,
    partition_epoch=8,
    pretrain_epochs=1,
    finetune_epochs=(1, 1),
    training=(("learning_rate", 1e-3), ("warmup_steps", 10), ("batch_size", 4000), ("max_seqs", 100)),
    asr_utterances=4,
    nbest_size=5,
    sampling_number=2,
    ppl_samples=2,
    num_lm_samples=4,
)


def py():
    run_experiment(TINY)

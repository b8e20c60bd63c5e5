"""Building blocks for experiment configs: the RETURNN config of an LM training and helpers that
create the training jobs. ``config/exp.py`` composes these into the default experiment."""

from __future__ import annotations

from typing import Any

from jobs.returnn import PtCheckpoint, ReturnnConfig, ReturnnTrainingJob, project_root
from recipe.lm.config import LmConfig
from recipe.returnn_glue.datasets import DEPTH_EXTERN_DATA
from sisyphus import tk

# The RETURNN config imports the training functions from the project's recipe/. The import line
# is hashed, not the location of the project, so the hashes do not depend on where it lives.
RETURNN_EPILOG = """
import os, sys
sys.path.insert(0, {project_root!r})
from recipe.returnn_glue.train_step import dynamic_learning_rate, get_model, train_step
"""
# A label of what the epilog does, hashed instead of its text (which holds the project's location).
RETURNN_EPILOG_HASH = (
    "recipe.returnn_glue.train_step: get_model, train_step, dynamic_learning_rate (linear warmup)"
)


def lm_extern_data(lm_config: LmConfig) -> dict[str, Any]:
    """The token ids (``data``), and with ``depth_mode`` the depth features and their ids (the keys of
    ``recipe.returnn_glue.datasets.text_ogg_zip_depth_dataset``, which train and dev data must then be)."""
    extern_data: dict[str, Any] = {"data": {"dim": lm_config.vocab_size, "sparse": True, "dtype": "int32"}}
    if lm_config.depth_mode == "dependency":
        depth_key, ids_key = DEPTH_EXTERN_DATA
        extern_data[depth_key] = {"dim": 1, "dtype": "float32"}
        extern_data[ids_key] = {"dim": lm_config.vocab_size, "sparse": True, "dtype": "int32"}
    return extern_data


def lm_returnn_config(
    lm_config: LmConfig,
    *,
    train_dataset: dict[str, Any],
    dev_dataset: dict[str, Any],
    learning_rate: float = 3e-4,
    warmup_steps: int = 2500,
    batch_size: int = 4000,
    max_seqs: int = 64,
    weight_decay: float = 0.0,
    grad_clip: float = 1.0,
    preload_checkpoint: PtCheckpoint | tk.Path | None = None,
    extra: dict[str, Any] | None = None,
) -> ReturnnConfig:
    """RETURNN config for training ``lm_config`` with Adam(W) at a constant learning rate after a linear
    warmup (the MDLM/BD3-LM recipe). ``batch_size`` counts tokens; sequences longer than
    ``lm_config.max_seq_len`` are left out of training.
    ``preload_checkpoint`` initialises the weights from another training (BD3-LM from MDLM)."""
    if lm_config.depth_mode is not None:
        for name, dataset in (("train_dataset", train_dataset), ("dev_dataset", dev_dataset)):
            if not set(DEPTH_EXTERN_DATA) <= set(dataset.get("data_map", {})):
                raise ValueError(
                    f"lm_returnn_config: LmConfig.depth_mode={lm_config.depth_mode!r} needs the depth features "
                    f"in {name} too (recipe.returnn_glue.datasets.text_ogg_zip_depth_dataset)"
                )
    config: dict[str, Any] = {
        "backend": "torch",
        "lm_config": lm_config,
        "extern_data": lm_extern_data(lm_config),
        "train": train_dataset,
        "dev": dev_dataset,
        "batch_size": batch_size,
        "max_seqs": max_seqs,
        "max_seq_length": {"data": lm_config.max_seq_len},
        "optimizer": {"class": "adamw", "epsilon": 1e-8, "betas": (0.9, 0.999), "weight_decay": weight_decay},
        "learning_rate": learning_rate,
        "warmup_steps": warmup_steps,
        "learning_rate_control": "constant",
        "gradient_clip_global_norm": grad_clip,
        "calculate_exp_loss": True,
        "torch_log_memory_usage": False,
    }
    if preload_checkpoint is not None:
        path = preload_checkpoint.path if isinstance(preload_checkpoint, PtCheckpoint) else preload_checkpoint
        config["preload_from_files"] = {
            "init": {"filename": path, "init_for_train": True, "ignore_missing": False},
        }
    config.update(extra or {})
    return ReturnnConfig(
        config,
        post_config={"cleanup_old_models": False, "stop_on_nonfinite_train_score": True},
        python_epilog=RETURNN_EPILOG.format(project_root=project_root()),
        python_epilog_hash=RETURNN_EPILOG_HASH,
    )


def train_lm(
    alias: str, returnn_config: ReturnnConfig, *, num_epochs: int, **job_args: Any
) -> ReturnnTrainingJob:
    """A ``ReturnnTrainingJob`` named ``alias`` whose learning-rate file and plots go to ``output/``;
    ``job_args`` go to the job (rqmt defaults: 2 cpus, 4 GB, 4 h)."""
    job_args = {"cpu_rqmt": 2, "mem_rqmt": 4, "time_rqmt": 4, **job_args}
    job = ReturnnTrainingJob(returnn_config, num_epochs=num_epochs, **job_args)
    job.add_alias(alias)
    tk.register_output(f"{alias}/learning_rates", job.out_learning_rates)
    tk.register_output(f"{alias}/scores.png", job.out_plot_se)
    return job

"""Pretrained bd3lms / MDLM checkpoints in and out of the pipeline (``recipe.lm.bd3lms_checkpoints``).

``ImportBd3lmsCheckpointJob`` turns a bd3lms Lightning ``.ckpt`` or a Hugging Face directory into this
project's checkpoint, usable by every job that takes one (perplexity, rescoring, sampling, finetuning);
``ExportHfCheckpointJob`` writes one of ours (trained with ``LmConfig.bd3lms_layout``) as a Hugging Face
directory that bd3lms' own code loads.  The LM config is needed when the graph is built (downstream
jobs hash it), so the config reads it off the checkpoint, which already exists then::

    lm_config = bd3lms_lm_config(tk.Path("/data/bd3lm-owt-block_size4"))
    imported = ImportBd3lmsCheckpointJob(tk.Path("/data/bd3lm-owt-block_size4"), lm_config)
    ComputePerplexityJob(imported.out_checkpoint, lm_config, dataset)
"""

from __future__ import annotations

import json
import os
import shutil

from jobs.returnn import PtCheckpoint, instanciate_paths
from recipe.lm.config import LmConfig
from sisyphus import Job, Task, tk


def bd3lms_lm_config(checkpoint: tk.Path | str, eos_id: int | None = None) -> LmConfig:
    """The LmConfig of an existing bd3lms checkpoint (file or directory), read when the graph is built.
    ``eos_id``: BOS = EOS id of its tokenizer (default: config.json's ``eos_token_id``, else V - 1)."""
    from recipe.lm.bd3lms_checkpoints import lm_config_of, read_reference_checkpoint

    path = checkpoint.get_path() if isinstance(checkpoint, tk.Path) else os.fspath(checkpoint)
    return lm_config_of(read_reference_checkpoint(path), eos_id)


def _check_layout(job: Job, lm_config: LmConfig, hint: str) -> None:
    if not isinstance(lm_config, LmConfig) or not lm_config.bd3lms_layout:
        raise ValueError(
            f"{type(job).__name__}: lm_config must be an LmConfig with bd3lms_layout=True ({hint})"
        )


class ImportBd3lmsCheckpointJob(Job):
    """A bd3lms / MDLM checkpoint as this project's checkpoint.

    ``checkpoint``: a Lightning ``.ckpt`` or a Hugging Face directory (config.json + model.safetensors or
    pytorch_model.bin); ``lm_config``: its LmConfig (``bd3lms_lm_config``; the run checks that the file
    still gives exactly this config); ``use_ema``: the EMA shadow weights of a Lightning checkpoint (what
    bd3lms evaluates; Hugging Face weights are already EMA).  Outputs: ``out_checkpoint`` (``model.pt``,
    ``{"model": state dict, "epoch": 1, "step": 1}`` as RETURNN writes it) and ``out_lm_config``
    (``lm_config.json``, ``LmConfig.as_dict()``).  Files are written under a temporary name and renamed.
    """

    def __init__(self, checkpoint: tk.Path, lm_config: LmConfig, *, use_ema: bool = True) -> None:
        _check_layout(self, lm_config, "take it from bd3lms_lm_config(checkpoint)")
        self.checkpoint = checkpoint
        self.lm_config = lm_config
        self.use_ema = use_ema
        self.out_checkpoint = PtCheckpoint(self.output_path("model.pt"))
        self.out_lm_config = self.output_path("lm_config.json")

    def tasks(self):
        yield Task("run", rqmt={"cpu": 1, "mem": 8, "time": 1})

    def run(self) -> None:
        import torch

        from recipe.lm.bd3lms_checkpoints import import_checkpoint

        source = self.checkpoint.get_path()
        config, state = import_checkpoint(source, self.use_ema, self.lm_config.eos_id)
        if config != self.lm_config:
            diffs = [
                f"{k}={v!r} (file) vs {self.lm_config.as_dict()[k]!r} (job)"
                for k, v in config.as_dict().items()
                if v != self.lm_config.as_dict()[k]
            ]
            raise ValueError(f"{source} no longer gives the job's lm_config: " + "; ".join(diffs))
        target = self.out_checkpoint.path.get_path()
        torch.save({"model": state, "epoch": 1, "step": 1}, f"{target}.tmp")
        os.replace(f"{target}.tmp", target)
        config_file = self.out_lm_config.get_path()
        with open(f"{config_file}.tmp", "w") as f:
            json.dump(config.as_dict(), f, indent=2)
            f.write("\n")
        os.replace(f"{config_file}.tmp", config_file)


class ExportHfCheckpointJob(Job):
    """One of this project's checkpoints as a Hugging Face directory in bd3lms' layout
    (``out_dir``: config.json + model.safetensors with ``backbone.*`` keys and the sampling_eps buffers).

    Needs ``lm_config.bd3lms_layout`` (the default layout is a different network, see
    ``recipe.lm.bd3lms_checkpoints.export_huggingface_dir``); ``use_ema``: export the EMA weights if the
    checkpoint has them.  The directory is written under a temporary name and renamed."""

    def __init__(self, checkpoint: PtCheckpoint, lm_config: LmConfig, *, use_ema: bool = True) -> None:
        _check_layout(self, lm_config, "the default layout has no counterpart in bd3lms' network")
        self.checkpoint = checkpoint
        self.lm_config = lm_config
        self.use_ema = use_ema
        self.out_dir = self.output_path("hf", directory=True)

    def tasks(self):
        yield Task("run", rqmt={"cpu": 1, "mem": 8, "time": 1})

    def run(self) -> None:
        from recipe.lm.bd3lms_checkpoints import export_huggingface_dir
        from recipe.lm.build import load_model

        lm_config = LmConfig(**instanciate_paths(self.lm_config))  # e.g. a searched noise range
        model = load_model(lm_config, self.checkpoint, use_ema=self.use_ema)
        state = {k: v for k, v in model.state_dict().items() if k.startswith("backbone.")}
        target = self.out_dir.get_path()
        partial = f"{target}.tmp"
        shutil.rmtree(partial, ignore_errors=True)
        export_huggingface_dir(lm_config, state, partial)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(partial, target)

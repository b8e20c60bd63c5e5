"""RETURNN jobs with i6_core's interface: ``ReturnnConfig``, ``ReturnnTrainingJob``,
``GetBestPtCheckpointJob`` and ``PtCheckpoint``.

The training job writes ``returnn.config`` (task=train, the config's keys, RETURNN's own
``model``/``learning_rate_file`` pointing into the job's outputs) and runs
``<python> -m returnn returnn.config`` (or ``<returnn_root>/rnn.py``). RETURNN continues from the
newest complete checkpoint in ``models/``, so the ``run`` task is resumable.
"""

from __future__ import annotations

import ast
import glob
import os
import pprint
import re
import shutil
import socket
import subprocess
import sys
from typing import Any

from recipe.lm.config import LmConfig
from sisyphus import Job, Task, gs, tk
from sisyphus.hash import sis_hash_helper


def instanciate_paths(obj: Any) -> Any:
    """A copy of ``obj`` with every ``tk.Variable`` replaced by its value, every ``tk.Path`` by its
    absolute path string and an ``LmConfig`` by its dict (used when the config file is written, i.e. once
    all inputs exist)."""
    if isinstance(obj, LmConfig):
        return instanciate_paths(obj.as_dict())
    if isinstance(obj, tk.Variable):
        return obj.get()
    if isinstance(obj, tk.Path):
        return obj.get_path()
    if isinstance(obj, PtCheckpoint):
        return obj.path.get_path()
    if isinstance(obj, dict):
        return {k: instanciate_paths(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(instanciate_paths(v) for v in obj)
    return obj


class PtCheckpoint:
    """A RETURNN torch checkpoint file (``epoch.NNN.pt``)."""

    def __init__(self, path: tk.Path) -> None:
        self.path = path

    def _sis_hash(self) -> bytes:
        return sis_hash_helper(self.path)

    def exists(self) -> bool:
        return os.path.exists(self.path.get_path())

    def __fspath__(self) -> str:
        return self.path.get_path()

    def __str__(self) -> str:
        return self.path.get_path()

    def __repr__(self) -> str:
        return f"PtCheckpoint({self.path!r})"


class ReturnnConfig:
    """A RETURNN config: ``config`` (hashed), ``post_config`` (not hashed), python prolog/epilog code.

    Hash: ``{"returnn_config": config, "python_epilog_hash": ..., "python_prolog_hash": ...}`` where a
    code hash defaults to the code itself.
    """

    def __init__(
        self,
        config: dict[str, Any],
        post_config: dict[str, Any] | None = None,
        *,
        python_prolog: str | None = None,
        python_prolog_hash: Any = None,
        python_epilog: str = "",
        python_epilog_hash: Any = None,
        sort_config: bool = True,
    ) -> None:
        self.config = dict(config)
        self.post_config = dict(post_config or {})
        self.python_prolog = python_prolog
        self.python_prolog_hash = python_prolog if python_prolog_hash is None else python_prolog_hash
        self.python_epilog = python_epilog
        self.python_epilog_hash = python_epilog if python_epilog_hash is None else python_epilog_hash
        self.sort_config = sort_config
        self.check_consistency()

    def check_consistency(self) -> None:
        both = sorted(set(self.config) & set(self.post_config))
        if both:
            raise ValueError(f"ReturnnConfig: keys {both} are in both config and post_config")
        if "log_verbosity" in self.config:
            raise ValueError("ReturnnConfig: 'log_verbosity' belongs in post_config (or the job's argument)")

    def _sis_hash(self) -> bytes:
        return sis_hash_helper(
            {
                "returnn_config": self.config,
                "python_epilog_hash": self.python_epilog_hash,
                "python_prolog_hash": self.python_prolog_hash,
            }
        )

    def serialize(self) -> str:
        """The config file's text: ``#!rnn.py``, prolog, one ``key = value`` per entry, epilog."""
        merged = instanciate_paths({**self.config, **self.post_config})
        keys = sorted(merged) if self.sort_config else list(merged)
        lines = ["#!rnn.py", ""]
        if self.python_prolog:
            lines += [self.python_prolog.strip(), ""]
        for key in keys:
            value = merged[key]
            text = pprint.pformat(value, width=110)
            try:
                ast.literal_eval(text)
            except (ValueError, SyntaxError):
                raise TypeError(
                    f"ReturnnConfig: value of {key!r} is not a Python literal: {value!r}"
                ) from None
            lines.append(f"{key} = {text}")
        if self.python_epilog:
            lines += ["", self.python_epilog.strip()]
        return "\n".join(lines) + "\n"

    def write(self, path: str) -> None:
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            f.write(self.serialize())
        os.replace(path + ".tmp", path)


def project_root() -> str:
    """The directory that holds ``recipe/``: RETURNN configs put it on ``sys.path``."""
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def returnn_python(explicit: str | tk.Path | None = None) -> str:
    """The Python that runs RETURNN: explicit, else ``gs.RETURNN_PYTHON_EXE``, else this interpreter."""
    return os.fspath(explicit or getattr(gs, "RETURNN_PYTHON_EXE", None) or sys.executable)


_EXCEPTION_LINE = re.compile(r"^(?:[A-Za-z_]\w*\.)*\w*(?:Error|Exception|Interrupt|Exit)(?::.*)?$")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def returnn_failure_cause(log_text: str) -> str:
    """The cause of a RETURNN failure in (the new part of) ``returnn.log``: the last exception line
    (``ValueError: hidden=64 in the checkpoint vs 96 in the config``), else its last meaningful line."""
    from sisyphus.task import last_meaningful_line

    log_text = _ANSI.sub("", log_text)  # RETURNN colours its tracebacks
    for line in reversed(log_text.splitlines()):
        stripped = line.strip()
        if _EXCEPTION_LINE.match(stripped):
            return stripped[:500]
    return last_meaningful_line(log_text)


def run_returnn(command: list[str], env: dict[str, str] | None = None, log: str = "returnn.log") -> None:
    """Run RETURNN (stdout and stderr go to the task's log); if it fails, raise a ``RuntimeError``
    that names the cause from what this run wrote to ``log`` (or, without one, its exit status)."""
    try:
        start = os.path.getsize(log)
    except OSError:
        start = 0
    status = subprocess.call(command, env=env)
    if status == 0:
        return
    try:
        with open(log, "rb") as f:
            f.seek(start)
            text = f.read().decode("utf-8", errors="replace")
    except OSError:
        text = ""
    cause = returnn_failure_cause(text)
    where = os.path.abspath(log)
    raise RuntimeError(
        f"RETURNN exited with status {status}: {cause} ({where})"
        if cause
        else f"RETURNN exited with status {status} without a cause in {where}; see the task's log"
    )


def _resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "gpu" if torch.cuda.is_available() else "cpu"


class ReturnnTrainingJob(Job):
    """Train with RETURNN (torch backend).

    Outputs: ``out_returnn_config_file``, ``out_learning_rates`` (RETURNN's learning-rate file with
    the dev scores per epoch), ``out_model_dir`` (``models/``), ``out_checkpoints`` ({epoch:
    PtCheckpoint}), ``out_plot_se`` (score curves) and ``out_plot_lr`` (learning rates).
    ``device="auto"`` uses a GPU when one is present (with bf16 autocast), else the CPU.
    ``distributed_launch_cmd="torchrun"`` with ``horovod_num_processes=N`` runs RETURNN's torch
    distributed mode with N processes per node (``torch_distributed`` in the config; the gloo backend
    on the CPU, N GPUs per node on the GPU); ``multi_node_slots=M`` spreads it over M Slurm nodes.
    """

    def __init__(
        self,
        returnn_config: ReturnnConfig,
        *,
        log_verbosity: int = 4,
        device: str = "auto",
        num_epochs: int = 1,
        save_interval: int = 1,
        keep_epochs: list[int] | None = None,
        time_rqmt: float = 4,
        mem_rqmt: float = 4,
        cpu_rqmt: int = 2,
        distributed_launch_cmd: str = "torchrun",
        horovod_num_processes: int | None = None,
        multi_node_slots: int | None = None,
        returnn_python_exe: str | None = None,
        returnn_root: str | None = None,
    ) -> None:
        reserved = {"num_epochs", "save_interval", "device", "log_verbosity", "model", "learning_rate_file"}
        clash = sorted(reserved & (set(returnn_config.config) | set(returnn_config.post_config)))
        if clash:
            raise ValueError(f"ReturnnTrainingJob: set {clash} as job arguments, not in the ReturnnConfig")
        if device not in ("auto", "gpu", "cpu"):
            raise ValueError(f"ReturnnTrainingJob: device must be 'auto', 'gpu' or 'cpu', got {device!r}")
        if horovod_num_processes and distributed_launch_cmd != "torchrun":
            raise ValueError(
                f"ReturnnTrainingJob: distributed_launch_cmd must be 'torchrun', got {distributed_launch_cmd!r}"
            )
        if (multi_node_slots or 1) > 1 and not horovod_num_processes:
            raise ValueError("ReturnnTrainingJob: multi_node_slots needs horovod_num_processes (per node)")
        self.returnn_config = returnn_config
        self.log_verbosity = log_verbosity
        self.device = device
        self.num_epochs = num_epochs
        self.save_interval = save_interval
        self.keep_epochs = keep_epochs
        self.distributed_launch_cmd = distributed_launch_cmd
        self.horovod_num_processes = horovod_num_processes
        self.multi_node_slots = multi_node_slots
        self.returnn_python_exe = returnn_python_exe
        self.returnn_root = returnn_root

        self.out_returnn_config_file = self.output_path("returnn.config")
        self.out_learning_rates = self.output_path("learning_rates")
        self.out_model_dir = self.output_path("models", directory=True)
        self.out_plot_se = self.output_path("score_and_error.png")
        self.out_plot_lr = self.output_path("learning_rate.png")
        epochs = list(range(save_interval, num_epochs, save_interval)) + [num_epochs]
        if keep_epochs is not None:
            epochs = [e for e in epochs if e in keep_epochs]
        self.out_checkpoints = {
            e: PtCheckpoint(self.output_path(f"models/epoch.{e:03d}.pt")) for e in sorted(set(epochs))
        }
        self.rqmt = {"cpu": cpu_rqmt, "mem": mem_rqmt, "time": time_rqmt, "gpu": 1 if device == "gpu" else 0}
        if horovod_num_processes:  # per node: a cpu and, on the GPU, a GPU per process
            self.rqmt["cpu"] = max(cpu_rqmt, horovod_num_processes)
            if device == "gpu":
                self.rqmt["gpu"] = horovod_num_processes
        if multi_node_slots:
            self.rqmt["multi_node_slots"] = multi_node_slots

    @classmethod
    def hash(cls, parsed_args: dict[str, Any]) -> str:
        """Only what changes the result: the config (+ exe/root, distribution); not epochs or rqmt."""
        d = {
            "returnn_config": parsed_args["returnn_config"],
            "returnn_python_exe": parsed_args["returnn_python_exe"],
            "returnn_root": parsed_args["returnn_root"],
        }
        if parsed_args["horovod_num_processes"] is not None:
            d["horovod_num_processes"] = parsed_args["horovod_num_processes"]
            d["distributed_launch_cmd"] = parsed_args["distributed_launch_cmd"]
        return super().hash(d)

    def tasks(self):
        yield Task("create_files", mini_task=True)
        yield Task("run", resume="run", rqmt=self.rqmt)
        yield Task("plot", mini_task=True)

    # --- config -------------------------------------------------------------------------
    def full_config(self, device: str) -> ReturnnConfig:
        config = dict(self.returnn_config.config)
        config.setdefault("task", "train")
        config.setdefault("backend", "torch")
        post = dict(self.returnn_config.post_config)
        post.update(
            device=device,
            log=["./returnn.log"],
            log_verbosity=self.log_verbosity,
            num_epochs=self.num_epochs,
            save_interval=self.save_interval,
            model=os.path.join(self.out_model_dir.get_path(), "epoch"),
            learning_rate_file=self.out_learning_rates.get_path(),
        )
        if device == "gpu":
            post.setdefault("torch_amp", "bfloat16")
        if self.keep_epochs is not None:
            post["cleanup_old_models"] = {"keep": self.keep_epochs, "keep_last_n": 1, "keep_best_n": 0}
        if self.horovod_num_processes:
            # options given in the ReturnnConfig stay where they are; gloo on the CPU (NCCL needs GPUs)
            where = config if "torch_distributed" in config else post
            options = dict(where.get("torch_distributed") or {})
            if device == "cpu":
                options.setdefault("backend", "gloo")
            where["torch_distributed"] = options
        return ReturnnConfig(
            config,
            post,
            python_prolog=self.returnn_config.python_prolog,
            python_epilog=self.returnn_config.python_epilog,
            sort_config=self.returnn_config.sort_config,
        )

    def returnn_command(self, rdzv_host: str = "$(hostname)", rdzv_id: str = "$SLURM_JOB_ID") -> list[str]:
        """The RETURNN command line. Distributed on one node: ``python -m torch.distributed.run
        --standalone --nnodes=1 --nproc-per-node=N``. On M > 1 nodes: ``srun --nodes=M
        --ntasks-per-node=1`` starts one torchrun per node of the Slurm allocation, which meet at
        ``rdzv_host:29400`` (c10d rendezvous ``rdzv_id``); the shell-style defaults suit ``rnn.sh``."""
        python = returnn_python(self.returnn_python_exe)
        root = self.returnn_root or getattr(gs, "RETURNN_ROOT", None)
        entry = [os.path.join(os.fspath(root), "rnn.py")] if root else ["-m", "returnn"]
        config = self.out_returnn_config_file.get_path()
        if not self.horovod_num_processes:
            return [python, *entry, config]
        torchrun = [python, "-m", "torch.distributed.run", f"--nproc-per-node={self.horovod_num_processes}"]
        nodes = self.multi_node_slots or 1
        if nodes == 1:
            return [*torchrun[:3], "--standalone", "--nnodes=1", *torchrun[3:], *entry, config]
        srun = ["srun", f"--nodes={nodes}", "--ntasks-per-node=1", "--kill-on-bad-exit=1"]
        rendezvous = ["--rdzv-backend=c10d", f"--rdzv-endpoint={rdzv_host}:29400", f"--rdzv-id={rdzv_id}"]
        return [*srun, *torchrun, f"--nnodes={nodes}", *rendezvous, *entry, config]

    def create_files(self) -> None:
        self.full_config(_resolve_device(self.device)).write(self.out_returnn_config_file.get_path())
        os.makedirs(self.out_model_dir.get_path(), exist_ok=True)
        with open("rnn.sh", "w") as f:
            f.write("#!/usr/bin/env bash\n" + " ".join(self.returnn_command()) + "\n")
        os.chmod("rnn.sh", 0o755)

    def run(self) -> None:
        device = _resolve_device(self.device)
        self.full_config(device).write(self.out_returnn_config_file.get_path())
        env = dict(os.environ)
        threads = int(env.get("SIS_ENGINE_CPUS") or self.rqmt["cpu"])
        threads = max(1, threads // (self.horovod_num_processes or 1))  # per process
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
        if (self.multi_node_slots or 1) > 1:
            if "SLURM_JOB_ID" not in env:
                raise RuntimeError(
                    f"multi_node_slots={self.multi_node_slots}: run this task in a Slurm allocation (SlurmEngine)"
                )
            command = self.returnn_command(socket.gethostname(), env["SLURM_JOB_ID"])
        else:
            command = self.returnn_command()
        run_returnn(command, env=env)
        missing = [e for e, c in self.out_checkpoints.items() if not c.exists()]
        if missing:
            raise RuntimeError(
                f"RETURNN ended without the checkpoints of epochs {missing} in {self.out_model_dir}"
            )

    # --- results ------------------------------------------------------------------------
    def plot(self) -> None:
        from recipe.returnn_glue.learning_rates import plot_learning_rates, read_learning_rates

        epochs = read_learning_rates(self.out_learning_rates.get_path())
        plot_learning_rates(epochs, self.out_plot_se.get_path(), self.out_plot_lr.get_path())

    def info(self) -> str | None:
        done = sorted(glob.glob(os.path.join(self.out_model_dir.get_path(), "epoch.*.pt")))
        done = [d for d in done if not d.endswith(".opt.pt")]
        return f"epoch {len(done)}/{self.num_epochs}" if done else None

    def completed_fraction(self) -> float | None:
        info = self.info()
        return None if info is None else int(info.split()[1].split("/")[0]) / self.num_epochs


class GetBestPtCheckpointJob(Job):
    """The checkpoint of the epoch with the lowest ``key`` score (``index``: 0 best, 1 second best...).

    Outputs ``out_epoch`` (Variable) and ``out_checkpoint`` (PtCheckpoint ``checkpoint.pt``, a copy of the
    epoch's file: a hard link would share damage between the two).
    """

    def __init__(self, model_dir: tk.Path, learning_rates: tk.Path, key: str, index: int = 0) -> None:
        self.model_dir = model_dir
        self.learning_rates = learning_rates
        self.key = key
        self.index = index
        self.out_epoch = self.output_var("epoch")
        self.out_checkpoint = PtCheckpoint(self.output_path("checkpoint.pt"))

    def tasks(self):
        yield Task("run", mini_task=True)

    def run(self) -> None:
        from recipe.returnn_glue.learning_rates import read_learning_rates

        epochs = read_learning_rates(self.learning_rates.get_path())
        scored = []
        for epoch, data in epochs.items():
            ckpt = os.path.join(self.model_dir.get_path(), f"epoch.{epoch:03d}.pt")
            if self.key in data["error"] and os.path.exists(ckpt):
                scored.append((data["error"][self.key], epoch))
        if len(scored) <= self.index:
            keys = sorted({k for d in epochs.values() for k in d["error"]})
            raise ValueError(
                f"{self.learning_rates}: {len(scored)} epochs with a checkpoint have score {self.key!r} "
                f"(need more than index={self.index}); keys present: {keys}"
            )
        _, epoch = sorted(scored)[self.index]
        source = os.path.join(self.model_dir.get_path(), f"epoch.{epoch:03d}.pt")
        target = self.out_checkpoint.path.get_path()
        # a copy, not a hard link: damaging (or rewriting) one file must not damage the other
        shutil.copyfile(source, f"{target}.tmp")
        os.replace(f"{target}.tmp", target)
        self.out_epoch.set(epoch)

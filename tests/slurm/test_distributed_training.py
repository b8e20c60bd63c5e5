"""RETURNN's torch distributed training through ``ReturnnTrainingJob(horovod_num_processes=2)``:
two CPU processes with the gloo backend, each on its own shard of the data, against the same
training in one process with the same number of sequences per update step."""

from __future__ import annotations

import math
import os
import socket

import pytest

from config.pipeline import lm_returnn_config
from jobs.returnn import ReturnnConfig, ReturnnTrainingJob
from recipe.lm.config import LmConfig, preset_dims
from recipe.returnn_glue.datasets import lm_train_dataset, text_ogg_zip_dev_dataset
from recipe.returnn_glue.learning_rates import read_learning_rates
from sisyphus import tk
from sisyphus.engine import TaskCall
from sisyphus.slurm_engine import SlurmEngine
from tests.training.conftest import tiny_lm_data  # noqa: F401 - the session fixture

# every training step appends its sequences (token ids) to seen.<rank>.txt in the job's work dir, and
# the sum of the model's parameters before the step to params.<rank>.txt
RECORD_EPILOG = """
from recipe.returnn_glue.train_step import batch_from_extern_data as _batch
_train_step = train_step


def train_step(*, model, extern_data, **kwargs):
    import returnn.frontend as rf

    if rf.get_run_ctx().train_flag:
        rank = os.environ.get("RANK", "single")
        tokens, lengths = _batch(extern_data)
        with open(f"seen.{rank}.txt", "a") as f:
            for row, n in zip(tokens.tolist(), lengths.tolist()):
                f.write(" ".join(map(str, row[:n])) + "\\n")
        with open(f"params.{rank}.txt", "a") as f:
            f.write(repr(sum(float(p.double().sum()) for p in model.parameters())) + "\\n")
    _train_step(model=model, extern_data=extern_data, **kwargs)
"""


def _config(data, batch_size: int, max_seqs: int, distributed: bool = True) -> ReturnnConfig:
    lm_config = LmConfig(
        kind="ar",
        vocab_size=data.vocab_size,
        eos_id=data.eos_id,
        max_seq_len=16,
        **preset_dims("tiny"),
        dropout=0.0,
    )
    base = lm_returnn_config(
        lm_config,
        train_dataset=lm_train_dataset(
            tk.Path(str(data.train_text)), tk.Path(str(data.spm_model)), seq_ordering="random"
        ),
        dev_dataset=text_ogg_zip_dev_dataset(tk.Path(str(data.dev_ogg_zip)), tk.Path(str(data.spm_model))),
        learning_rate=3e-3,
        warmup_steps=1,
        batch_size=batch_size,
        max_seqs=max_seqs,
        extra={"torch_distributed": {"dataset_distribution": "shard"}} if distributed else None,
    )
    return ReturnnConfig(
        base.config,
        base.post_config,
        python_epilog=base.python_epilog + RECORD_EPILOG,
        python_epilog_hash=(base.python_epilog_hash, RECORD_EPILOG),
    )


def _lines(job: ReturnnTrainingJob, name: str) -> list[str]:
    with open(os.path.join(job._sis_path("work", abspath=True), name)) as f:
        return f.read().splitlines()


@pytest.mark.slow
def test_two_process_gloo_training_matches_single_process(fresh_graph, tiny_lm_data):  # noqa: F811
    """2 ranks x 8 sequences per step vs 1 process x 16 (same number of steps): each rank trains on
    its own half of every epoch, the ranks' weights stay identical (gradients are averaged), and the
    dev loss curve matches the single process within 0.05 nats."""
    single = ReturnnTrainingJob(
        _config(tiny_lm_data, 2000, 16, False), num_epochs=2, device="cpu", cpu_rqmt=1
    )
    dist = ReturnnTrainingJob(
        _config(tiny_lm_data, 1000, 8), num_epochs=2, device="cpu", cpu_rqmt=2, horovod_num_processes=2
    )
    assert dist.returnn_command()[1:6] == [
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nnodes=1",
        "--nproc-per-node=2",
    ]
    assert dist.rqmt["cpu"] == 2
    tk.run_job(single)
    tk.run_job(dist)

    assert dist.full_config("cpu").config["torch_distributed"] == {
        "dataset_distribution": "shard",
        "backend": "gloo",
    }
    for rank in (0, 1):
        log = "".join(_lines(dist, f"returnn.torch-distrib-{rank}-2.log"))
        assert f"Start running torch distributed training on local rank {rank}." in log

    everything = _lines(single, "seen.single.txt")
    rank0, rank1 = _lines(dist, "seen.0.txt"), _lines(dist, "seen.1.txt")
    # both ranks trained, on different halves of the data: together they saw what one process saw
    assert len(rank0) == len(rank1) == len(everything) // 2
    assert sorted(rank0 + rank1) == sorted(everything)
    assert rank0 != rank1
    # the same weights on both ranks before every step; they do change from step to step
    params0, params1 = _lines(dist, "params.0.txt"), _lines(dist, "params.1.txt")
    assert len(params0) == len(params1) > 10 and len(set(params0)) == len(params0)
    for a, b in zip(params0, params1, strict=True):
        assert abs(float(a) - float(b)) <= 1e-6 * max(1.0, abs(float(a)))

    dev_single = read_learning_rates(single.out_learning_rates.get_path())
    dev_dist = read_learning_rates(dist.out_learning_rates.get_path())
    curve_single = [dev_single[e]["error"]["dev_loss_nll"] for e in (1, 2)]
    curve_dist = [dev_dist[e]["error"]["dev_loss_nll"] for e in (1, 2)]
    assert curve_single[0] < math.log(tiny_lm_data.vocab_size) - 0.5  # it learned from the uniform start
    for a, b in zip(curve_single, curve_dist, strict=True):
        assert abs(a - b) < 0.05, (curve_single, curve_dist)


def test_multi_node_gpu_training_command_lines(fresh_graph, tiny_lm_data):  # noqa: F811
    """4 GPUs on each of 2 nodes: sbatch asks for them, srun starts one torchrun per node."""
    job = ReturnnTrainingJob(
        _config(tiny_lm_data, 1000, 8),
        device="gpu",
        cpu_rqmt=8,
        mem_rqmt=32,
        time_rqmt=24,
        horovod_num_processes=4,
        multi_node_slots=2,
    )
    (run,) = [t for t in job._sis_tasks() if t.name() == "run"]
    call = TaskCall(job._sis_id(), job._sis_path(abspath=True), "run", [1], run.rqmt(), ["sis-worker"])
    sbatch = SlurmEngine().sbatch_command(call)
    for expected in ("--cpus-per-task=8", "--mem=32768M", "--time=1440", "--gres=gpu:4", "--nodes=2"):
        assert expected in sbatch
    assert "--ntasks-per-node=1" in sbatch

    host = socket.gethostname()
    command = job.returnn_command(host, "4711")
    assert command[:4] == ["srun", "--nodes=2", "--ntasks-per-node=1", "--kill-on-bad-exit=1"]
    assert command[5:] == [
        "-m",
        "torch.distributed.run",
        "--nproc-per-node=4",
        "--nnodes=2",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint={host}:29400",
        "--rdzv-id=4711",
        "-m",
        "returnn",
        job.out_returnn_config_file.get_path(),
    ]
    config = job.full_config("gpu")
    assert config.config["torch_distributed"] == {"dataset_distribution": "shard"}  # NCCL/gloo by device
    assert ReturnnTrainingJob(_config(tiny_lm_data, 1000, 8))._sis_id() != job._sis_id()
    with pytest.raises(ValueError, match="distributed_launch_cmd must be 'torchrun'"):
        ReturnnTrainingJob(
            _config(tiny_lm_data, 1000, 8), horovod_num_processes=2, distributed_launch_cmd="mpirun"
        )

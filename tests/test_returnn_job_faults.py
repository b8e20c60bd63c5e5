"""A failing RETURNN run names its cause (from returnn.log), not only its exit status."""

from __future__ import annotations

import os
import sys

import pytest

from jobs.returnn import returnn_failure_cause, run_returnn


def test_failed_returnn_raises_with_the_cause_from_its_log(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "returnn.log").write_text("ValueError: an earlier run's failure\n")  # not this run's cause
    (tmp_path / "returnn.config").write_text(
        '#!rnn.py\nbackend = "torch"\ntask = "train"\ntrain = {"class": "NoSuchDataset"}\n'
        'log = ["./returnn.log"]\nlog_verbosity = 4\n'
    )
    with pytest.raises(RuntimeError) as e:
        run_returnn([sys.executable, "-m", "returnn", "returnn.config"])
    message = str(e.value)
    assert message.startswith(
        "RETURNN exited with status 1: Exception: Dataset class 'NoSuchDataset' not found"
    )
    assert "\x1b[" not in message and "earlier run" not in message


def test_cause_is_the_last_exception_line_without_colours():
    log = "epoch 1\n\x1b[31mTraceback\x1b[0m\n  File x\n\x1b[31mRuntimeError\x1b[0m: checkpoint file is corrupted\nQuitting\n"
    assert returnn_failure_cause(log) == "RuntimeError: checkpoint file is corrupted"
    assert returnn_failure_cause("step 3\nKilled\n") == "Killed"


def test_best_checkpoint_is_a_copy_not_a_hard_link(fresh_graph):
    from jobs.returnn import GetBestPtCheckpointJob
    from sisyphus import tk

    models = fresh_graph / "models"
    models.mkdir()
    for epoch in (1, 2):
        (models / f"epoch.{epoch:03d}.pt").write_bytes(f"weights of epoch {epoch}".encode())
    lr_file = fresh_graph / "learning_rates"
    lr_file.write_text(
        "{1: EpochData(learningRate=0.001, error={'dev_loss': 2.0}),\n"
        " 2: EpochData(learningRate=0.001, error={'dev_loss': 1.5})}\n"
    )
    best = GetBestPtCheckpointJob(tk.Path(str(models)), tk.Path(str(lr_file)), key="dev_loss")
    tk.run_job(best)
    target = best.out_checkpoint.path.get_path()
    assert best.out_epoch.get() == 2
    assert open(target, "rb").read() == b"weights of epoch 2"
    assert os.stat(target).st_nlink == 1 and not os.path.samefile(target, models / "epoch.002.pt")
    (models / "epoch.002.pt").write_bytes(b"damaged")  # damaging the training's file leaves the copy intact
    assert open(target, "rb").read() == b"weights of epoch 2"

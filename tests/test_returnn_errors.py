"""A failing RETURNN run names its cause (from returnn.log), not only its exit status."""

from __future__ import annotations

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

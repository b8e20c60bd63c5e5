"""End to end: `sis manager config/tiny.py -r` — the default experiment's graph at toy sizes — with the
project's settings.py (local engine) in a fresh base directory."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_tiny_experiment_end_to_end(tmp_path: Path):
    root = tmp_path / "project"
    root.mkdir()
    os.symlink(REPO / "config", root / "config")
    shutil.copy(REPO / "settings.py", root / "settings.py")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "sisyphus", "m", "config/tiny.py", "-r"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-5000:]
    assert "All targets are done." in proc.stdout

    report = (root / "output" / "report.md").read_text()
    for row in (
        "| ar |",
        "| mdlm |",
        "| bd3lm_4 |",
        "| bd3lm_16 |",
        "| first pass |",
        "| oracle |",
        "| + bd3lm_4 |",
    ):
        assert row in report, report
    assert (root / "output" / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "dev_loss_nelbo" in (root / "output" / "lm" / "mdlm" / "train" / "learning_rates").read_text()
    for alias in (
        "data/kjv/corpus",
        "data/kjv/spm300",
        "lm/ar/train",
        "lm/bd3lm_4/clip_search",
        "asr/test_nbest",
        "asr/mdlm/test_lm_scores",
        "report",
    ):
        assert (root / "alias" / alias / "finished").exists(), alias
    # the searched clip range is what the clipped BD3-LM stage trained with
    clip = (root / "alias" / "lm" / "bd3lm_4" / "clip_search" / "output" / "noise_clip").read_text().strip()
    config = (root / "alias" / "lm" / "bd3lm_4" / "clipped" / "output" / "returnn.config").read_text()
    assert f"'noise_clip': {clip}" in config

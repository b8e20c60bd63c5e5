"""The default experiment's graph at toy sizes (``config/tiny.py``) with ``sis manager`` and settings.py
pointing at the SlurmEngine on the local cluster: every task goes through sbatch and the graph finishes."""

from __future__ import annotations

import glob
import os
import re
import textwrap
from pathlib import Path

import pytest

from tests.slurm.conftest import REPO, SETTINGS, SlurmProject

pytestmark = pytest.mark.slurm


@pytest.mark.slow
def test_tiny_experiment_through_slurm(tmp_path: Path, slurm_cluster):
    """``config/tiny.py`` (the default experiment's graph at toy sizes) with every task sent to sbatch."""
    root = tmp_path / "project"
    root.mkdir()
    (root / "settings.py").write_text(textwrap.dedent(SETTINGS))
    os.symlink(REPO / "config", root / "config")
    project = SlurmProject(root, extra_pythonpath=[str(REPO)], cluster=slurm_cluster)
    proc = project.sis("m", "config/tiny.py", "-r", timeout=600)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-5000:]
    assert "All targets are done." in proc.stdout
    assert "| bd3lm_16 |" in (root / "output" / "report.md").read_text()
    # every task of every job went through sbatch: one Slurm job id per submit log, all different
    submit_logs = sorted(glob.glob(str(root / "work" / "jobs" / "*" / "*" / "submit_log.*")))
    assert len(submit_logs) >= 51
    ids = []
    for log in submit_logs:
        lines = Path(log).read_text().splitlines()
        assert len(lines) == 1, (log, lines)
        ids += [int(i) for i in re.findall(r"'engine_info': 'slurm job_id=(\d+) ", lines[0])]
    assert len(ids) == len(set(ids)) == len(submit_logs)

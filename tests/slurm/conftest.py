"""A local single-node Slurm cluster for the session (scripts/local_slurm.sh) and temporary
Sisyphus projects whose settings.py selects the ``SlurmEngine``."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.sis_project import SisProject

HERE = Path(__file__).parent
REPO = HERE.parent.parent
SCRIPT = REPO / "scripts" / "local_slurm.sh"


@dataclass
class LocalSlurm:
    """A running local cluster: ``env`` has ``SLURM_CONF`` for the Slurm commands."""

    directory: Path
    env: dict[str, str]

    def run(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            list(cmd), env=self.env, capture_output=True, text=True, check=check, timeout=60
        )


def free_port_pair() -> int:
    """A port p with p and p+1 free on 127.0.0.1 (slurmctld and slurmd)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port >= 65535:
            continue
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise RuntimeError("no two consecutive free ports on 127.0.0.1")


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory):
    """Start the cluster once per session via scripts/local_slurm.sh; stop it (and its jobs) at the end."""
    missing = [c for c in ("slurmctld", "slurmd", "sbatch", "squeue", "munged") if shutil.which(c) is None]
    if missing:
        pytest.skip(f"Slurm is not installed ({', '.join(missing)} missing): apt-get install slurm-wlm munge")
    if os.geteuid() != 0:
        pytest.skip("the local Slurm cluster needs root (slurmd starts jobs as the submitting user)")
    directory = tmp_path_factory.mktemp("slurm")
    env = dict(os.environ)
    env.update(SIS_SLURM_DIR=str(directory), SIS_SLURM_PORT=str(free_port_pair()))
    env["SLURM_CONF"] = str(directory / "slurm.conf")
    start = subprocess.run(
        ["bash", str(SCRIPT), "start"], env=env, capture_output=True, text=True, timeout=120
    )
    try:
        if start.returncode != 0:
            pytest.fail(f"local_slurm.sh start failed:\n{start.stdout}\n{start.stderr}")
        yield LocalSlurm(directory, env)
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop"], env=env, capture_output=True, text=True, timeout=120)


SETTINGS = """
from sisyphus.slurm_engine import SlurmEngine
WAIT_PERIOD_BETWEEN_CHECKS = 1
WAIT_PERIOD_HEARTBEAT = 1
JOB_AUTO_CLEANUP = False  # the tests read submit logs and markers of finished jobs

def engine():
    return SlurmEngine()
"""


@dataclass
class SlurmProject(SisProject):
    """A temporary Sisyphus project (recipe/toy.py, recipe/slurm_toy.py) run on the local cluster."""

    cluster: LocalSlurm | None = None

    def base_env(self) -> dict[str, str]:
        return dict(self.cluster.env)


@pytest.fixture
def slurm_project(tmp_path: Path, slurm_cluster: LocalSlurm) -> SlurmProject:
    return SlurmProject.create(
        tmp_path / "project", SETTINGS, (HERE / "slurm_toy.py",), cluster=slurm_cluster
    )

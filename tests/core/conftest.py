"""A temporary Sisyphus project (settings.py, recipe/toy.py, config/) and a runner for `sis`."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.sis_project import SisProject


@pytest.fixture
def sis_project(tmp_path: Path) -> SisProject:
    return SisProject.create(
        tmp_path / "project",
        """
        from sisyphus.engine import EngineSelector, LocalEngine
        WAIT_PERIOD_BETWEEN_CHECKS = 1
        JOB_AUTO_CLEANUP = False  # most tests read logs and markers of finished jobs; see test_compat.py
        def engine():
            return EngineSelector({"short": LocalEngine(cpus=1), "long": LocalEngine(cpus=2, mem=2)}, "long")
    """,
    )

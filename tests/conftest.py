"""Fixtures for all tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def fresh_graph(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """In-process use of the core: an empty job cache and graph, BASE_DIR in a temp dir."""
    from sisyphus import global_settings as gs
    from sisyphus import job as job_module
    from sisyphus.graph import graph

    monkeypatch.setattr(gs, "BASE_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    saved = dict(job_module.created_jobs)
    job_module.created_jobs.clear()
    graph.clear()
    yield tmp_path
    graph.clear()
    job_module.created_jobs.clear()
    job_module.created_jobs.update(saved)

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


# Test lanes: `make test` runs everything, `make test-fast` only the tests not marked `slow`
# (`pytest -m "not slow"`). Besides tests that carry @pytest.mark.slow themselves, everything under
# these paths (relative to tests/) is marked slow here. Chosen from `pytest --durations=0` on the
# 2-core machine: the end-to-end pipelines, RETURNN training in subprocesses and the Slurm cluster
# take most of the suite's time; the rest runs in about a minute.
SLOW_PATHS = ("test_tiny_pipeline.py", "training/", "slurm/")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    tests_dir = Path(__file__).parent
    for item in items:
        try:
            rel = item.path.relative_to(tests_dir).as_posix()
        except ValueError:
            continue
        if any(rel == p or rel.startswith(p) for p in SLOW_PATHS):
            item.add_marker(pytest.mark.slow)

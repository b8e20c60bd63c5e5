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
# (`pytest -m "not slow"`). Besides tests that carry @pytest.mark.slow themselves, these are marked slow
# here, chosen from `pytest --durations=0` of the full suite on the 2-core machine: everything under
# SLOW_PATHS (the end-to-end pipelines, RETURNN training in subprocesses, the Slurm cluster: ~90% of the
# suite's time), and the SLOW_TESTS whose call took 3 s or more. A test id matches all its parameters.
SLOW_PATHS = ("test_tiny_pipeline.py", "training/", "slurm/")
SLOW_TESTS = (
    "core/test_faults.py::test_orphan_of_a_dead_worker_counts_as_running_and_is_never_doubled",
    "core/test_faults.py::test_kill_9_of_worker_kills_child_in_own_session_and_one_run_proceeds",
    "core/test_manager.py::test_diamond_with_parallel_branches_honours_rqmt",
    "core/test_manager.py::test_two_managers_never_run_a_task_twice",
    "core/test_manager.py::test_kill_minus_9_resumes_resumable_task",
    "core/test_manager.py::test_kill_minus_9_of_non_resumable_task_is_interrupted_never_finished",
    "eval/test_asr_jobs.py::test_demo_nbest_wer_tune_apply",
    "lm/test_models.py::test_tiny_model_overfits_a_few_sentences",
    "lm/test_sampling.py::test_bd3lm_samples_follow_the_exact_two_block_law",
    "lm/test_sampling.py::test_mdlm_ddpm_samples_follow_the_exact_law",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    tests_dir = Path(__file__).parent
    for item in items:
        try:
            rel = item.path.relative_to(tests_dir).as_posix()
        except ValueError:
            continue
        test_id = rel + "::" + item.nodeid.split("::", 1)[-1].split("[")[0]
        if any(rel == p or rel.startswith(p) for p in SLOW_PATHS) or test_id in SLOW_TESTS:
            item.add_marker(pytest.mark.slow)

"""config/variants.py: the baselines and the data are the default experiment's jobs (same ids), the
variants are new trainings, and the report is written to output/variants/."""

from __future__ import annotations

from tests.test_job_hashes import PINNED


def test_variants_reuse_the_default_experiments_jobs(fresh_graph):
    from config import variants
    from sisyphus.graph import graph

    variants.py()
    ids: dict[str, str] = {}
    for job in graph.jobs():
        for alias in job.get_aliases():
            ids[alias] = job._sis_id()
    pinned = dict(PINNED)
    shared = [alias for alias in ids if alias in pinned]
    for alias in ("data/kjv/spm1000", "lm/mdlm/train", "lm/bd3lm_16/clipped", "asr/test_nbest"):
        assert alias in shared
    assert {alias: ids[alias] for alias in shared} == {alias: pinned[alias] for alias in shared}
    new = {alias for alias in ids if alias not in pinned}
    assert {"lm/mdlm_atat/train", "variants/report"} <= new
    assert ids["lm/mdlm_atat/train"] not in set(pinned.values())
    assert {"variants/report.md", "variants/report.png"} <= {target.name for target in graph.targets}

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
    variants = {
        "lm/mdlm_atat/train",
        "lm/mdlm_depth/train",
        "lm/bd3lm_16_depth/clipped",
        "data/kjv/train_dependency_depth_spacy",
    }
    assert variants | {"variants/report"} <= new
    assert not {ids[alias] for alias in variants} & set(pinned.values())
    # as in the original recipe, the depth BD3-LM is finetuned from the MDLM pretrained with the same masking
    jobs = {alias: job for job in graph.jobs() for alias in job.get_aliases()}
    preload = jobs["lm/bd3lm_16_depth/full_range"].returnn_config.config["preload_from_files"]["init"]
    assert preload["filename"].creator is jobs["lm/mdlm_depth/best"]
    assert jobs["lm/bd3lm_16_depth/full_range"].returnn_config.config["lm_config"].mix_alpha == 0.0625
    assert {"variants/report.md", "variants/report.png"} <= {target.name for target in graph.targets}


def test_variants_report_shows_every_model_with_its_title(fresh_graph):
    from jobs.report import ExperimentReportJob
    from sisyphus import tk

    curves = {}
    for name, dev in (("mdlm", (5.0, 4.8)), ("mdlm_atat", (5.1, 4.7))):
        path = fresh_graph / f"{name}.learning_rates"
        path.write_text(
            "{"
            + ", ".join(
                f"{epoch}: EpochData(learningRate=0.001, error={{'dev_loss_nelbo': {score}}})"
                for epoch, score in enumerate(dev, 1)
            )
            + "}\n"
        )
        curves[name] = [tk.Path(str(path))]
    perplexities = {"mdlm": {"test_ppl": 121.5}, "mdlm_atat": {"test_ppl": 110.25}}
    wers = {"first pass": {"dev": 27.5, "test": 30.0}, "+ mdlm_atat": {"dev": 26.0, "test": 29.25}}
    job = ExperimentReportJob(perplexities, wers, curves, title="Token-adaptive masking variants")
    tk.run_job(job)
    report = open(job.out_report.get_path(), encoding="utf-8").read()
    assert report.startswith("# Token-adaptive masking variants\n")
    assert "| mdlm_atat | 110.25 |" in report and "| + mdlm_atat | 26.00 | 29.25 |" in report
    assert open(job.out_plot.get_path(), "rb").read(8) == b"\x89PNG\r\n\x1a\n"

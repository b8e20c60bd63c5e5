"""Hash discipline: the ids of every job of the default experiment are pinned. A change here means the
change reruns the experiment for everybody; if that is intended, update the table in the same commit."""

from __future__ import annotations

import pytest

PINNED = [
    ("asr/ar+bd3lm_4/dev_ctm", "jobs/asr/SearchOutputToCtmJob.7z1PDJmBIoje"),
    ("asr/ar+bd3lm_4/dev_rescored", "jobs/asr/ApplyLmCombinationJob.uHducorDTdvs"),
    ("asr/ar+bd3lm_4/dev_sclite", "jobs/asr/ScliteJob.Isjbzq3ihJDe"),
    ("asr/ar+bd3lm_4/test_ctm", "jobs/asr/SearchOutputToCtmJob.U1ALWD7SPnUB"),
    ("asr/ar+bd3lm_4/test_rescored", "jobs/asr/ApplyLmCombinationJob.oYXVfSQxK5y0"),
    ("asr/ar+bd3lm_4/test_sclite", "jobs/asr/ScliteJob.DvMw5xNhGmGs"),
    ("asr/ar+bd3lm_4/tune", "jobs/asr/TuneLmCombinationJob.TIfk8hOOKl2C"),
    ("asr/ar+mdlm/dev_ctm", "jobs/asr/SearchOutputToCtmJob.Li3atKrg8lzV"),
    ("asr/ar+mdlm/dev_rescored", "jobs/asr/ApplyLmCombinationJob.drtxdxhKbtaM"),
    ("asr/ar+mdlm/dev_sclite", "jobs/asr/ScliteJob.f4oVWwtHLroj"),
    ("asr/ar+mdlm/test_ctm", "jobs/asr/SearchOutputToCtmJob.aUaosrjolkYJ"),
    ("asr/ar+mdlm/test_rescored", "jobs/asr/ApplyLmCombinationJob.dihMZVELxnIP"),
    ("asr/ar+mdlm/test_sclite", "jobs/asr/ScliteJob.yWpRGwCkvVNr"),
    ("asr/ar+mdlm/tune", "jobs/asr/TuneLmCombinationJob.s6dHQseoDWDL"),
    ("asr/ar/dev_ctm", "jobs/asr/SearchOutputToCtmJob.BtaQNYRQyU9T"),
    ("asr/ar/dev_lm_scores", "jobs/lm_eval/RescoreNBestJob.MI8UAoaQWduK"),
    ("asr/ar/dev_rescored", "jobs/asr/ApplyScoreCombinationJob.4aq3ybnnquu9"),
    ("asr/ar/dev_sclite", "jobs/asr/ScliteJob.fjoYv4ESYSCv"),
    ("asr/ar/test_ctm", "jobs/asr/SearchOutputToCtmJob.MjXpbIKSfj7d"),
    ("asr/ar/test_lm_scores", "jobs/lm_eval/RescoreNBestJob.SrD1XwpImSU9"),
    ("asr/ar/test_rescored", "jobs/asr/ApplyScoreCombinationJob.bavKZZKdEiqK"),
    ("asr/ar/test_sclite", "jobs/asr/ScliteJob.dsRQtWoRAQvU"),
    ("asr/ar/tune", "jobs/asr/TuneScoreCombinationJob.GLHIGt1h3HqF"),
    ("asr/bd3lm_16/dev_ctm", "jobs/asr/SearchOutputToCtmJob.Wp6ZHoWSlEKj"),
    ("asr/bd3lm_16/dev_lm_scores", "jobs/lm_eval/RescoreNBestJob.uwZq4E0Fw5zF"),
    ("asr/bd3lm_16/dev_rescored", "jobs/asr/ApplyScoreCombinationJob.0oYmNUC0KHOz"),
    ("asr/bd3lm_16/dev_sclite", "jobs/asr/ScliteJob.AxSxCkrg0B2l"),
    ("asr/bd3lm_16/test_ctm", "jobs/asr/SearchOutputToCtmJob.riXHX7Nzxk1x"),
    ("asr/bd3lm_16/test_lm_scores", "jobs/lm_eval/RescoreNBestJob.7x6OHHx0ixiR"),
    ("asr/bd3lm_16/test_rescored", "jobs/asr/ApplyScoreCombinationJob.C3N41M6t3Gv2"),
    ("asr/bd3lm_16/test_sclite", "jobs/asr/ScliteJob.xNHjKAQsztAl"),
    ("asr/bd3lm_16/tune", "jobs/asr/TuneScoreCombinationJob.et0ne2RKh44u"),
    ("asr/bd3lm_4/dev_ctm", "jobs/asr/SearchOutputToCtmJob.2VGaUAIb1Ypn"),
    ("asr/bd3lm_4/dev_lm_scores", "jobs/lm_eval/RescoreNBestJob.XuVYEIhWC7Kl"),
    ("asr/bd3lm_4/dev_rescored", "jobs/asr/ApplyScoreCombinationJob.0tYofkDirNYb"),
    ("asr/bd3lm_4/dev_sclite", "jobs/asr/ScliteJob.XWPpXyFLzfZd"),
    ("asr/bd3lm_4/test_ctm", "jobs/asr/SearchOutputToCtmJob.UhHU5atb8X04"),
    ("asr/bd3lm_4/test_lm_scores", "jobs/lm_eval/RescoreNBestJob.ohx0iYPfg97L"),
    ("asr/bd3lm_4/test_rescored", "jobs/asr/ApplyScoreCombinationJob.Hh3TdqX3mfXe"),
    ("asr/bd3lm_4/test_sclite", "jobs/asr/ScliteJob.qLY5VLr5eby5"),
    ("asr/bd3lm_4/tune", "jobs/asr/TuneScoreCombinationJob.9mg0b6Jw3a9T"),
    ("asr/dev_nbest", "jobs/asr/DemoNBestJob.Tk3c49hwTc0F"),
    ("asr/dev_stm", "jobs/asr/TextDictToStmJob.7rmwot9Xd3Pi"),
    ("asr/first_pass/dev_ctm", "jobs/asr/SearchOutputToCtmJob.isprjcGtDNp5"),
    ("asr/first_pass/dev_sclite", "jobs/asr/ScliteJob.SCvIYyok9aPH"),
    ("asr/first_pass/test_ctm", "jobs/asr/SearchOutputToCtmJob.zW1nbAd2Mf6V"),
    ("asr/first_pass/test_sclite", "jobs/asr/ScliteJob.iDf2sBENCp42"),
    ("asr/mdlm/dev_ctm", "jobs/asr/SearchOutputToCtmJob.rkxCXvQC3xX1"),
    ("asr/mdlm/dev_lm_scores", "jobs/lm_eval/RescoreNBestJob.sGYknI0hukm3"),
    ("asr/mdlm/dev_rescored", "jobs/asr/ApplyScoreCombinationJob.67iN8LMpE372"),
    ("asr/mdlm/dev_sclite", "jobs/asr/ScliteJob.U5az3TDk2fGi"),
    ("asr/mdlm/test_ctm", "jobs/asr/SearchOutputToCtmJob.wh769LIx0DjV"),
    ("asr/mdlm/test_lm_scores", "jobs/lm_eval/RescoreNBestJob.JxtHOG74jlfc"),
    ("asr/mdlm/test_rescored", "jobs/asr/ApplyScoreCombinationJob.rPvuT4ZBIs5z"),
    ("asr/mdlm/test_sclite", "jobs/asr/ScliteJob.xnsVFU3lGpR8"),
    ("asr/mdlm/tune", "jobs/asr/TuneScoreCombinationJob.zQSewx8w2IdU"),
    ("asr/test_nbest", "jobs/asr/DemoNBestJob.xQHUKaT2pufE"),
    ("asr/test_stm", "jobs/asr/TextDictToStmJob.n1HunGONpqch"),
    ("data/kjv/corpus", "jobs/corpus/KjvCorpusJob.TCaaqAIRxDhx"),
    ("data/kjv/dev_ogg_zip", "jobs/returnn_data/TextDictToOggZipJob.PQuxXfozeHAB"),
    ("data/kjv/split", "jobs/corpus/SplitCorpusJob.LH3tceFOP1WL"),
    ("data/kjv/spm1000", "jobs/sentencepiece/TrainSentencePieceJob.KvXOhwJdJ0SW"),
    ("data/kjv/test_ogg_zip", "jobs/returnn_data/TextDictToOggZipJob.HwbPlCv8Xvm8"),
    ("data/kjv/train_text", "jobs/text/TextDictToTextLinesJob.NsqmOQVTU15C"),
    ("eval/ar/test_ppl", "jobs/lm_eval/ComputePerplexityJob.4eWolI4HqIKQ"),
    ("eval/bd3lm_16/gen_ppl", "jobs/diffusion/GenerativePerplexityJob.eveqSmT0W8FE"),
    ("eval/bd3lm_16/samples", "jobs/diffusion/SampleLmJob.tfpfYuABZIEy"),
    ("eval/bd3lm_16/test_ppl", "jobs/lm_eval/ComputePerplexityJob.YNzoHqDaZmdJ"),
    ("eval/bd3lm_4/gen_ppl", "jobs/diffusion/GenerativePerplexityJob.hUUbebiv3FR8"),
    ("eval/bd3lm_4/samples", "jobs/diffusion/SampleLmJob.oavqoljkoQMj"),
    ("eval/bd3lm_4/test_ppl", "jobs/lm_eval/ComputePerplexityJob.mrryN8JRs75t"),
    ("eval/mdlm/gen_ppl", "jobs/diffusion/GenerativePerplexityJob.LQUv0Tb4cHpF"),
    ("eval/mdlm/samples", "jobs/diffusion/SampleLmJob.TfejUARoSf0J"),
    ("eval/mdlm/test_ppl", "jobs/lm_eval/ComputePerplexityJob.VkjaPq9UtRhR"),
    ("lm/ar/best", "jobs/returnn/GetBestPtCheckpointJob.CmtJ1RFOfQcH"),
    ("lm/ar/train", "jobs/returnn/ReturnnTrainingJob.m5G9AU6bla7M"),
    ("lm/bd3lm_16/best", "jobs/returnn/GetBestPtCheckpointJob.8AVQRQKKcA6Y"),
    ("lm/bd3lm_16/clip_search", "jobs/diffusion/SearchNoiseRangeJob.sFKo3spwbSp9"),
    ("lm/bd3lm_16/clipped", "jobs/returnn/ReturnnTrainingJob.hu0b2Ava3aCH"),
    ("lm/bd3lm_16/full_range", "jobs/returnn/ReturnnTrainingJob.AqUSZ1dZeJqO"),
    ("lm/bd3lm_4/best", "jobs/returnn/GetBestPtCheckpointJob.YDZ516BzsUgz"),
    ("lm/bd3lm_4/clip_search", "jobs/diffusion/SearchNoiseRangeJob.H20SuWNLTNg4"),
    ("lm/bd3lm_4/clipped", "jobs/returnn/ReturnnTrainingJob.QigydWwk0qIJ"),
    ("lm/bd3lm_4/full_range", "jobs/returnn/ReturnnTrainingJob.CKimXbWCPLuQ"),
    ("lm/mdlm/best", "jobs/returnn/GetBestPtCheckpointJob.p85oeciKbnJX"),
    ("lm/mdlm/train", "jobs/returnn/ReturnnTrainingJob.Vn0miQVZw3K9"),
    ("report", "jobs/report/ExperimentReportJob.hruoVfYKlitn"),
]


def test_default_experiment_job_ids_are_pinned(fresh_graph):
    from config import exp
    from sisyphus.graph import graph

    exp.py()
    ids = {sorted(job.get_aliases())[0]: job._sis_id() for job in graph.jobs()}
    assert len(ids) == len(PINNED) == len(graph.jobs())
    assert ids == dict(PINNED)


@pytest.mark.parametrize("alias", ["data/kjv/corpus", "lm/mdlm/train", "lm/bd3lm_4/clipped"])
def test_ids_do_not_depend_on_where_the_project_lives(alias, tmp_path):
    """A fresh interpreter with another working directory computes the same ids."""
    import os
    import subprocess
    import sys

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = (
        "from config import exp; from sisyphus.graph import graph; exp.py(); "
        f"print([j._sis_id() for j in graph.jobs() if {alias!r} in j.get_aliases()][0])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": repo, "PYTHONHASHSEED": "7"},
    ).stdout.strip()
    assert out == dict(PINNED)[alias]

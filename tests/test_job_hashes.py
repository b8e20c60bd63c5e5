"""Hash discipline: the ids of every job of the default experiment are pinned. A change here means the
change reruns the experiment for everybody; if that is intended, update the table in the same commit."""

from __future__ import annotations

import pytest

PINNED = [
    ("asr/ar/dev_lm_scores", "jobs/lm_eval/RescoreNBestJob.4odATGBGc8w6"),
    ("asr/ar/dev_rescored", "jobs/asr/ApplyScoreCombinationJob.FkhThPCJWJn5"),
    ("asr/ar/test_lm_scores", "jobs/lm_eval/RescoreNBestJob.o2clBxqqyCND"),
    ("asr/ar/test_rescored", "jobs/asr/ApplyScoreCombinationJob.q2JIVJNeIBGY"),
    ("asr/ar/tune", "jobs/asr/TuneScoreCombinationJob.UOdvTfof49vv"),
    ("asr/bd3lm_16/dev_lm_scores", "jobs/lm_eval/RescoreNBestJob.uv37FLC0PaS0"),
    ("asr/bd3lm_16/dev_rescored", "jobs/asr/ApplyScoreCombinationJob.wVu4f4pQevLa"),
    ("asr/bd3lm_16/test_lm_scores", "jobs/lm_eval/RescoreNBestJob.QW4bLeD3k20B"),
    ("asr/bd3lm_16/test_rescored", "jobs/asr/ApplyScoreCombinationJob.LTrNiDALbd7R"),
    ("asr/bd3lm_16/tune", "jobs/asr/TuneScoreCombinationJob.Vnr5p5G71Cj5"),
    ("asr/bd3lm_4/dev_lm_scores", "jobs/lm_eval/RescoreNBestJob.MJJIUAHvAStZ"),
    ("asr/bd3lm_4/dev_rescored", "jobs/asr/ApplyScoreCombinationJob.i4kIA22FbONK"),
    ("asr/bd3lm_4/test_lm_scores", "jobs/lm_eval/RescoreNBestJob.fhDhE5maLG5m"),
    ("asr/bd3lm_4/test_rescored", "jobs/asr/ApplyScoreCombinationJob.6SRXEeDvCHWt"),
    ("asr/bd3lm_4/tune", "jobs/asr/TuneScoreCombinationJob.UYqKesNdLYcU"),
    ("asr/dev_nbest", "jobs/asr/DemoNBestJob.Tk3c49hwTc0F"),
    ("asr/mdlm/dev_lm_scores", "jobs/lm_eval/RescoreNBestJob.jCoJwyOg76kD"),
    ("asr/mdlm/dev_rescored", "jobs/asr/ApplyScoreCombinationJob.qIUvc9P9PLvP"),
    ("asr/mdlm/test_lm_scores", "jobs/lm_eval/RescoreNBestJob.fY58PJU5wbHx"),
    ("asr/mdlm/test_rescored", "jobs/asr/ApplyScoreCombinationJob.NEc60i73J3xu"),
    ("asr/mdlm/tune", "jobs/asr/TuneScoreCombinationJob.nQM0SYG4V7yx"),
    ("asr/test_nbest", "jobs/asr/DemoNBestJob.xQHUKaT2pufE"),
    ("data/kjv/corpus", "jobs/corpus/KjvCorpusJob.TCaaqAIRxDhx"),
    ("data/kjv/dev_ogg_zip", "jobs/returnn_data/TextDictToOggZipJob.PQuxXfozeHAB"),
    ("data/kjv/split", "jobs/corpus/SplitCorpusJob.LH3tceFOP1WL"),
    ("data/kjv/spm1000", "jobs/sentencepiece/TrainSentencePieceJob.KvXOhwJdJ0SW"),
    ("data/kjv/test_ogg_zip", "jobs/returnn_data/TextDictToOggZipJob.HwbPlCv8Xvm8"),
    ("data/kjv/train_text", "jobs/text/TextDictToTextLinesJob.NsqmOQVTU15C"),
    ("eval/ar/test_ppl", "jobs/lm_eval/ComputePerplexityJob.kq7bow5cf6V2"),
    ("eval/bd3lm_16/gen_ppl", "jobs/diffusion/GenerativePerplexityJob.4jKSL4gSLdRi"),
    ("eval/bd3lm_16/samples", "jobs/diffusion/SampleLmJob.uAXsZDaAAot1"),
    ("eval/bd3lm_16/test_ppl", "jobs/lm_eval/ComputePerplexityJob.xbog3R4AdA5O"),
    ("eval/bd3lm_4/gen_ppl", "jobs/diffusion/GenerativePerplexityJob.QpPH7Zoo5eEO"),
    ("eval/bd3lm_4/samples", "jobs/diffusion/SampleLmJob.JiwQNM6fKvda"),
    ("eval/bd3lm_4/test_ppl", "jobs/lm_eval/ComputePerplexityJob.uKsDYX7jUqBn"),
    ("eval/mdlm/gen_ppl", "jobs/diffusion/GenerativePerplexityJob.0hIVwolFFm8y"),
    ("eval/mdlm/samples", "jobs/diffusion/SampleLmJob.AFxmZNUEKMKY"),
    ("eval/mdlm/test_ppl", "jobs/lm_eval/ComputePerplexityJob.tMBt5yP8IGiB"),
    ("lm/ar/best", "jobs/returnn/GetBestPtCheckpointJob.gZTRYHugPU3B"),
    ("lm/ar/train", "jobs/returnn/ReturnnTrainingJob.hj6aKbwBvWde"),
    ("lm/bd3lm_16/best", "jobs/returnn/GetBestPtCheckpointJob.e9cnIejuPRJz"),
    ("lm/bd3lm_16/clip_search", "jobs/diffusion/SearchNoiseClipJob.03EPBKMRv6r5"),
    ("lm/bd3lm_16/clipped", "jobs/returnn/ReturnnTrainingJob.0poZUb4l1Htq"),
    ("lm/bd3lm_16/full_range", "jobs/returnn/ReturnnTrainingJob.hWcLOcOu5FfB"),
    ("lm/bd3lm_4/best", "jobs/returnn/GetBestPtCheckpointJob.85oNUpcWjDxt"),
    ("lm/bd3lm_4/clip_search", "jobs/diffusion/SearchNoiseClipJob.QF3bJgQxDStK"),
    ("lm/bd3lm_4/clipped", "jobs/returnn/ReturnnTrainingJob.GrpTdhJUZ2Wv"),
    ("lm/bd3lm_4/full_range", "jobs/returnn/ReturnnTrainingJob.AGMyoY3UBFWX"),
    ("lm/mdlm/best", "jobs/returnn/GetBestPtCheckpointJob.xp0XT5BQ9Eul"),
    ("lm/mdlm/train", "jobs/returnn/ReturnnTrainingJob.RCT0bAlr7bOH"),
    ("report", "jobs/report/ExperimentReportJob.sndR1w3aJpEj"),
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

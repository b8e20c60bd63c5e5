"""Monte-Carlo scores through the real RETURNN forward jobs do not depend on what else a run scores:
every utterance's (and every perplexity sequence's) noise is seeded from (job seed, tag) and drawn at
its own length, so a subset, another order or a resumed run gives the same score per hypothesis."""

from __future__ import annotations

import pytest

from jobs.lm_eval import ComputePerplexityJob, RescoreNBestJob
from jobs.returnn import PtCheckpoint
from recipe.asr.search_output import read_nbest, write_search_output
from recipe.data.ogg_zip import write_text_ogg_zip
from recipe.data.text_dict import read_text_dict
from recipe.returnn_glue.datasets import text_ogg_zip_dev_dataset
from sisyphus import tk
from tests.training.test_lm_eval import _train_tiny

NBEST = {
    "utt/1": [(-1.0, "the lord said unto moses"), (-2.0, "the lord said unto moss"), (-3.0, "lord said")],
    "utt/2": [(-0.5, "go speak to the children"), (-0.7, "go and speak to the children of israel")],
    "utt/3": [(-0.1, "and aaron"), (-0.2, "and aaron said"), (-0.3, "an aaron")],
}


def _rescore(path, nbest, ckpt, config, data, **options) -> dict[str, list[tuple[float, str]]]:
    write_search_output(path, nbest)
    job = RescoreNBestJob(
        tk.Path(str(path)),
        PtCheckpoint(tk.Path(str(ckpt))),
        config,
        tk.Path(str(data.spm_model)),
        sampling_number=3,
        device="cpu",
        **options,
    )
    tk.run_job(job)
    return read_nbest(job.out_lm_scores.get_path())


@pytest.mark.slow
@pytest.mark.parametrize("noise", [None, "aligned"])
def test_rescoring_a_subset_in_another_order_gives_identical_scores(
    fresh_graph, tiny_lm_data, tmp_path, noise
):
    ckpt = tmp_path / "bd3lm.pt"
    config, _ = _train_tiny(tiny_lm_data, "bd3lm", ckpt, steps=10, block_size=4)
    full = _rescore(tmp_path / "full.py.gz", NBEST, ckpt, config, tiny_lm_data, noise=noise)
    subset = {"utt/3": NBEST["utt/3"], "utt/2": NBEST["utt/2"]}  # without the first, reordered
    part = _rescore(tmp_path / "part.py.gz", subset, ckpt, config, tiny_lm_data, noise=noise)
    assert list(part) == ["utt/3", "utt/2"]
    for tag in subset:
        assert part[tag] == full[tag]  # bit-identical
    assert len({s for hyps in full.values() for s, _ in hyps}) == 8
    if noise is None:  # another job seed: other noise, so other scores
        other = _rescore(tmp_path / "seed.py.gz", subset, ckpt, config, tiny_lm_data, seed=1)
        assert other["utt/2"] != part["utt/2"]


@pytest.mark.slow
def test_perplexity_scores_do_not_depend_on_the_other_sequences(fresh_graph, tiny_lm_data, tmp_path):
    ckpt = tmp_path / "mdlm.pt"
    config, _ = _train_tiny(tiny_lm_data, "mdlm", ckpt, steps=10)
    texts = {"s/1": "go", "s/2": "the lord said unto moses", "s/3": "moses said", "s/4": "aaron"}
    scores = []
    for name, subset in (("all", texts), ("part", {k: texts[k] for k in ("s/4", "s/3")})):
        ogg = tmp_path / f"{name}.ogg.zip"
        write_text_ogg_zip(subset, ogg)
        dataset = text_ogg_zip_dev_dataset(tk.Path(str(ogg)), tk.Path(str(tiny_lm_data.spm_model)))
        job = ComputePerplexityJob(
            PtCheckpoint(tk.Path(str(ckpt))), config, dataset, num_samples=4, device="cpu"
        )
        tk.run_job(job)
        scores.append({tag: float(v) for tag, v in read_text_dict(job.out_scores).items()})
    assert set(scores[1]) == {"s/3", "s/4"}
    for tag in scores[1]:  # other batch and padding width: equal up to float rounding
        assert scores[1][tag] == pytest.approx(scores[0][tag], rel=1e-6, abs=1e-6)

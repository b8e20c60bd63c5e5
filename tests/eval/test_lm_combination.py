"""Score combination with several LMs: block coordinate descent of the LM scales and the length scale on
dev, against a constructed case with a unique known optimum and against brute force over the full grid."""

import itertools
import math
import random
from pathlib import Path

import numpy as np
import pytest

from jobs.asr import ApplyLmCombinationJob, TuneLmCombinationJob
from recipe.asr.score_combination import (
    combine_multi,
    combine_scores,
    evaluate_combination,
    format_trace,
    rescore_combination,
    tune_combination,
    tune_scales,
)
from recipe.asr.search_output import nbest_with_scores, read_search_output, write_search_output
from recipe.data.text_dict import write_text_dict
from sisyphus import gs, tk
from tests.edit_distance import edit_distance

# All hypotheses of u1-u3 have 3 words, so only u4 depends on the length scale.
# u1: h1 (correct) wins iff -2 - 3*l1 > -1 - 5*l1, i.e. l1 > 0.5          (LM 1 knows, LM 2 is silent)
# u2: h1 (correct) wins iff -2 - 5*l1 - l2 > -1 - 3*l1 - 6*l2, i.e. 5*l2 - 2*l1 > 1   (LM 2 knows, LM 1 is wrong)
# u3: h0 (correct) wins iff -1 - 0.75*l2 > -2, i.e. l2 < 4/3                (LM 2 is wrong)
# u4: h0 (correct, 2 words) wins iff -1 + 2*len > -0.5 + 3*len, i.e. len < -0.5
# On the grid below, (l1, l2, len) = (1, 1, -1) is the only point with no errors.
NBEST = {
    "u1": [(-1.0, "a b d"), (-2.0, "a b c")],
    "u2": [(-1.0, "x y w"), (-2.0, "x y z")],
    "u3": [(-1.0, "p q r"), (-2.0, "p q s")],
    "u4": [(-1.0, "m n"), (-0.5, "m n o")],
}
LM1 = {"u1": [-5.0, -3.0], "u2": [-3.0, -5.0], "u3": [0.0, 0.0], "u4": [0.0, 0.0]}
LM2 = {"u1": [0.0, 0.0], "u2": [-6.0, -1.0], "u3": [-0.75, 0.0], "u4": [0.0, 0.0]}
REFS = {"u1": "a b c", "u2": "x y z", "u3": "p q r", "u4": "m n"}
LM_SCALES = (0.0, 0.5, 1.0, 2.0)
LENGTH_SCALES = (-1.0, 0.0, 1.0)


def _errors(nbest, lms, refs, lm_scales, length_scale) -> int:
    """Corpus word errors of the combination, computed in plain Python (first hypothesis on ties)."""
    total = 0
    for tag, hyps in nbest.items():
        best, best_score = None, -math.inf
        for i, (score, text) in enumerate(hyps):
            combined = score + length_scale * len(text.split())
            combined += sum(s * lm[tag][i] for s, lm in zip(lm_scales, lms, strict=True) if s != 0)
            combined = -math.inf if math.isnan(combined) else combined
            if best is None or combined > best_score:
                best, best_score = text, combined
        total += edit_distance(refs[tag].split(), (best or "").split())
    return total


def _brute_force(nbest, lms, refs, lm_scales, length_scales) -> dict[tuple, int]:
    return {
        (*scales, length): _errors(nbest, lms, refs, scales, length)
        for scales in itertools.product(lm_scales, repeat=len(lms))
        for length in length_scales
    }


def test_combine_multi_is_the_formula_and_matches_one_lm():
    combined = combine_multi([-1.0, -2.0], [[-5.0, -3.0], [1.0, 2.0]], [3, 4], [0.5, 2.0], 1.0)
    np.testing.assert_allclose(combined, [-1.0 + 3.0 - 2.5 + 2.0, -2.0 + 4.0 - 1.5 + 4.0])
    one = combine_multi([-1.0, -2.0], [[-5.0, -3.0]], [3, 4], [0.7], -0.3)
    np.testing.assert_array_equal(one, combine_scores([-1.0, -2.0], [-5.0, -3.0], [3, 4], 0.7, -0.3))
    # a scale of 0 leaves the LM out entirely (its -inf does not matter); NaN totals become -inf
    np.testing.assert_array_equal(
        combine_multi([-1.0], [[-math.inf], [math.nan]], [1], [0.0, 1.0], 0.0), [-math.inf]
    )
    np.testing.assert_array_equal(combine_multi([-1.0], [[-math.inf], [2.0]], [1], [0.0, 1.0], 0.0), [1.0])
    with pytest.raises(ValueError, match="2 LM scales for 1 LM score lists"):
        combine_multi([-1.0], [[0.0]], [1], [1.0, 1.0], 0.0)


def test_two_lm_scales_find_the_known_optimum():
    brute = _brute_force(NBEST, [LM1, LM2], REFS, LM_SCALES, LENGTH_SCALES)
    assert [p for p, e in brute.items() if e == 0] == [(1.0, 1.0, -1.0)]  # unique
    # neither LM alone gets there: each single-LM grid leaves at least one error
    assert tune_scales(NBEST, LM1, REFS, lm_scales=LM_SCALES, length_scales=LENGTH_SCALES).num_errors == 1
    assert tune_scales(NBEST, LM2, REFS, lm_scales=LM_SCALES, length_scales=LENGTH_SCALES).num_errors >= 1

    result = tune_combination(NBEST, [LM1, LM2], REFS, lm_scales=LM_SCALES, length_scales=LENGTH_SCALES)
    assert (result.lm_scales, result.length_scale, result.num_errors) == ((1.0, 1.0), -1.0, 0)
    assert result.method == "coordinate descent" and result.converged
    # start, sweep 1 (LM 1 block, LM 2 block), sweep 2 (no move) -> converged
    assert [(s.sweep, s.block, s.moved) for s in result.trace] == [
        (0, -1, False),
        (1, 0, True),
        (1, 1, True),
        (2, 0, False),
        (2, 1, False),
    ]
    assert [s.num_errors for s in result.trace] == [3, 1, 0, 0, 0]
    assert result.evaluations == 1 + 4 * len(LM_SCALES) * len(LENGTH_SCALES)
    text = format_trace(result, ["ar", "mdlm"])
    assert text.splitlines()[-1] == "chosen: ar 1, mdlm 1, length -1: dev WER 0.00"
    assert "sweep 1, mdlm x length: ar 1, mdlm 1, length -1 -> dev WER 0.00 (0 errors) (moved)" in text
    assert rescore_combination(NBEST, [LM1, LM2], result.lm_scales, result.length_scale) == {
        "u1": "a b c",
        "u2": "x y z",
        "u3": "p q r",
        "u4": "m n",
    }
    wers = evaluate_combination(NBEST, [LM1, LM2], REFS, result.lm_scales, result.length_scale)
    assert [w.num_errors for w in wers.values()] == [3, 0, 0]  # first pass, oracle, rescored


def test_one_lm_is_the_grid_search():
    grid = tune_scales(NBEST, LM1, REFS, lm_scales=LM_SCALES, length_scales=LENGTH_SCALES)
    result = tune_combination(NBEST, [LM1], REFS, lm_scales=LM_SCALES, length_scales=LENGTH_SCALES)
    assert result.method == "grid"
    assert (result.lm_scales, result.length_scale, result.num_errors) == (
        (grid.lm_scale,),
        grid.length_scale,
        grid.num_errors,
    )
    assert result.evaluations == len(LM_SCALES) * len(LENGTH_SCALES)


def test_the_budget_stops_the_search():
    block = len(LM_SCALES) * len(LENGTH_SCALES)
    result = tune_combination(
        NBEST, [LM1, LM2], REFS, lm_scales=LM_SCALES, length_scales=LENGTH_SCALES, max_evaluations=block + 1
    )
    assert not result.converged and result.evaluations == block + 1
    assert [(s.block, s.num_errors) for s in result.trace] == [(-1, 3), (0, 1)]
    assert result.lm_scales == (1.0, 0.0)
    assert "stopped by the evaluation budget" in format_trace(result)
    with pytest.raises(ValueError, match="less than one block"):
        tune_combination(NBEST, [LM1, LM2], REFS, lm_scales=LM_SCALES, max_evaluations=10)


def test_coordinate_descent_against_brute_force_on_random_lists():
    rng = random.Random(1)
    words = "a b c d".split()
    lm_scales, length_scales = (0.0, 0.5, 1.0), (-1.0, 0.0, 1.0)
    for _ in range(25):
        refs = {f"u{i}": " ".join(rng.choices(words, k=rng.randint(1, 4))) for i in range(5)}
        nbest = {
            tag: [
                (round(rng.uniform(-5, 0), 2), " ".join(rng.choices(words, k=rng.randint(0, 5))))
                for _ in range(rng.randint(1, 4))
            ]
            for tag in refs
        }
        lms = [
            {tag: [round(rng.uniform(-6, 0), 2) for _ in hyps] for tag, hyps in nbest.items()}
            for _ in range(3)
        ]
        brute = _brute_force(nbest, lms, refs, lm_scales, length_scales)
        result = tune_combination(nbest, lms, refs, lm_scales=lm_scales, length_scales=length_scales)
        point = (*result.lm_scales, result.length_scale)
        assert brute[point] == result.num_errors  # the search's count is the combination's true count
        assert min(brute.values()) <= result.num_errors  # a local search: at best the global optimum
        first_pass = brute[(0.0, 0.0, 0.0, 0.0)]
        lm1_alone = min(e for p, e in brute.items() if p[1] == p[2] == 0.0)
        assert result.num_errors <= lm1_alone <= first_pass
        errors = [s.num_errors for s in result.trace]
        assert errors == sorted(errors, reverse=True) and errors[0] == first_pass
        assert result.converged and result.evaluations <= 10_000
        texts = rescore_combination(nbest, lms, result.lm_scales, result.length_scale)
        assert (
            sum(edit_distance(refs[t].split(), (texts[t] or "").split()) for t in refs) == result.num_errors
        )


def test_bad_inputs_name_the_lm():
    with pytest.raises(ValueError, match=r"LM 2: tag 'u1': 1 LM scores for 2 hypotheses"):
        tune_combination(NBEST, [LM1, {**LM2, "u1": [0.0]}], REFS)
    with pytest.raises(ValueError, match="at least one LM"):
        tune_combination(NBEST, [], REFS)
    with pytest.raises(ValueError, match="2 LM scales for 1 LM score lists"):
        rescore_combination(NBEST, [LM1], [1.0, 1.0], 0.0)


def test_tune_and_apply_jobs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(gs, "BASE_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    write_search_output("nbest.py", NBEST)
    write_search_output("lm1.py", nbest_with_scores(NBEST, LM1))
    write_search_output("lm2.py", nbest_with_scores(NBEST, LM2))
    write_text_dict("refs.py", REFS)
    lms = [tk.Path("lm1.py"), tk.Path("lm2.py")]
    tune = TuneLmCombinationJob(
        tk.Path("nbest.py"),
        lms,
        tk.Path("refs.py"),
        names=["ar", "mdlm"],
        lm_scales=LM_SCALES,
        length_scales=LENGTH_SCALES,
    )
    tk.run_job(tune)
    assert (tune.out_lm_scales.get(), tune.out_length_scale.get(), tune.out_wer.get()) == (
        [1.0, 1.0],
        -1.0,
        0.0,
    )
    trace = Path(tune.out_trace.get_path()).read_text()
    assert trace.startswith("method: coordinate descent") and "chosen: ar 1, mdlm 1, length -1" in trace
    apply = ApplyLmCombinationJob(
        tk.Path("nbest.py"), lms, tk.Path("refs.py"), tune.out_lm_scales, tune.out_length_scale
    )
    tk.run_job(apply)
    assert (apply.out_wer.get(), apply.out_oracle_wer.get()) == (0.0, 0.0)
    assert apply.out_first_pass_wer.get() == pytest.approx(300 / 11)
    assert read_search_output(apply.out_search_results) == {t: r for t, r in REFS.items()}
    with pytest.raises(ValueError, match="1 names for 2 LM score files"):
        TuneLmCombinationJob(tk.Path("nbest.py"), lms, tk.Path("refs.py"), names=["ar"])

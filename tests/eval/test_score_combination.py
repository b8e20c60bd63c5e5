"""Score combination and (lm_scale, length_scale) tuning on constructed n-best lists with known answers."""

import itertools
import math
import random

import numpy as np
import pytest

from recipe.asr.score_combination import (
    combine_scores,
    evaluate_rescoring,
    format_tuning_grid,
    rescore,
    tune_scales,
)
from tests.edit_distance import edit_distance

# Utterance 1 (ref "a b c"): h1 beats h0 iff -2 - 3*lm > -1 - 5*lm, i.e. lm_scale > 0.5 (same length).
# Utterance 2 (ref "x y"): h0 beats h1 iff -1 - 4*lm + 2*len > -1.5 - 2*lm + 3*len, i.e. len < 0.5 - 2*lm.
DEV_NBEST = {
    "u1": [(-1.0, "a b d"), (-2.0, "a b c")],
    "u2": [(-1.0, "x y"), (-1.5, "x y z")],
}
DEV_LM = {"u1": [-5.0, -3.0], "u2": [-4.0, -2.0]}
DEV_REFS = {"u1": "a b c", "u2": "x y"}
LM_SCALES = (0.0, 0.5, 0.6, 1.0)
LENGTH_SCALES = (-1.0, 0.0, 1.0)


def test_combine_scores_formula():
    combined = combine_scores([-1.0, -2.0], [-5.0, -3.0], [3, 4], lm_scale=0.5, length_scale=2.0)
    np.testing.assert_allclose(combined, [-1.0 - 2.5 + 6.0, -2.0 - 1.5 + 8.0])
    # lm_scale 0 ignores the LM completely, even -inf or NaN scores; NaN totals become -inf
    np.testing.assert_array_equal(combine_scores([-1.0], [-math.inf], [1], 0.0, 0.0), [-1.0])
    np.testing.assert_array_equal(combine_scores([math.nan], [-1.0], [1], 1.0, 0.0), [-math.inf])


def test_tuning_finds_the_unique_optimum():
    result = tune_scales(DEV_NBEST, DEV_LM, DEV_REFS, lm_scales=LM_SCALES, length_scales=LENGTH_SCALES)
    brute = _brute_force_grid(DEV_NBEST, DEV_LM, DEV_REFS, LM_SCALES, LENGTH_SCALES)
    assert [g for g in brute if g[2] == 0] == [(0.6, -1.0, 0)]  # unique
    assert (result.lm_scale, result.length_scale) == (0.6, -1.0)
    assert (result.num_errors, result.num_ref_words, result.wer) == (0, 5, 0.0)
    grid = {(lm, length): wer for lm, length, wer in result.grid}
    assert len(grid) == 12
    assert grid[(0.0, 0.0)] == pytest.approx(20.0)  # u1 wrong (1 substitution), u2 right
    assert grid[(1.0, -1.0)] == pytest.approx(20.0)  # u1 right, u2 picks "x y z" (1 insertion)
    assert grid[(0.5, 1.0)] == pytest.approx(40.0)  # both wrong
    table = format_tuning_grid(result)
    assert table.splitlines()[0].split() == ["lm\\len", "-1", "0", "1"]
    assert "0.00*" in table.splitlines()[3]  # row of lm_scale 0.6


def _brute_force_grid(nbest, lm, refs, lm_scales, length_scales) -> list[tuple[float, float, int]]:
    """(lm_scale, length_scale, corpus word errors) for every grid point, in grid order, by picking
    each utterance's best hypothesis in plain Python (first one on ties, NaN never wins)."""
    grid = []
    for lm_scale, length_scale in itertools.product(lm_scales, length_scales):
        errors = 0
        for tag, hyps in nbest.items():
            best, best_score = None, -math.inf
            for (score, text), lm_score in zip(hyps, lm[tag], strict=True):
                total = score + length_scale * len(text.split())
                if lm_scale != 0:
                    total += lm_scale * lm_score
                if best is None or (not math.isnan(total) and total > best_score):
                    best, best_score = text, (-math.inf if math.isnan(total) else total)
            errors += edit_distance(refs[tag].split(), (best or "").split())
        grid.append((lm_scale, length_scale, errors))
    return grid


def test_tuning_picks_the_brute_force_optimum_on_random_nbest_lists():
    rng = random.Random(0)
    words = "a b c d e".split()
    lm_scales, length_scales = (0.0, 0.3, 0.7, 1.5), (-1.0, -0.5, 0.0, 0.5, 1.0)
    for _ in range(30):
        refs = {f"u{i}": " ".join(rng.choices(words, k=rng.randint(1, 5))) for i in range(4)}
        nbest = {
            tag: [
                (round(rng.uniform(-5, 0), 2), " ".join(rng.choices(words, k=rng.randint(0, 6))))
                for _ in range(rng.randint(1, 5))
            ]
            for tag in refs
        }
        lm = {tag: [round(rng.uniform(-8, 0), 2) for _ in hyps] for tag, hyps in nbest.items()}
        ref_words = sum(len(r.split()) for r in refs.values())
        brute = _brute_force_grid(nbest, lm, refs, lm_scales, length_scales)
        result = tune_scales(nbest, lm, refs, lm_scales=lm_scales, length_scales=length_scales)
        assert [(a, b) for a, b, _ in result.grid] == [(a, b) for a, b, _ in brute]
        assert [w for _, _, w in result.grid] == pytest.approx([100.0 * e / ref_words for _, _, e in brute])
        best = min(brute, key=lambda g: g[2])  # the first minimum in grid order
        assert (result.lm_scale, result.length_scale, result.num_errors) == best
        texts = rescore(nbest, lm, result.lm_scale, result.length_scale)
        errors = sum(edit_distance(refs[t].split(), (texts[t] or "").split()) for t in refs)
        assert errors == best[2]


def test_tuning_ties_go_to_the_first_grid_point():
    nbest = {"u": [(-1.0, "a"), (-1.0, "b")]}
    result = tune_scales(
        nbest, {"u": [-1.0, -1.0]}, {"u": "a"}, lm_scales=(2.0, 1.0), length_scales=(3.0, 0.0)
    )
    assert (result.lm_scale, result.length_scale, result.num_errors) == (2.0, 3.0, 0)


def test_apply_to_test_and_compare_first_pass_oracle_rescored():
    tuned = tune_scales(DEV_NBEST, DEV_LM, DEV_REFS, lm_scales=LM_SCALES, length_scales=LENGTH_SCALES)
    test_nbest = {
        "t1": [(-1.0, "p q s"), (-1.2, "p q r"), (-9.0, "p q r t")],
        "t2": [(-3.0, "m n"), (-2.0, "m")],
        "t3": [],
    }
    test_lm = {"t1": [-6.0, -4.0, -1.0], "t2": [-1.0, -4.0], "t3": []}
    test_refs = {"t1": "p q r", "t2": "m n", "t3": "k l"}
    rescored = rescore(test_nbest, test_lm, tuned.lm_scale, tuned.length_scale)
    # t1: -1-3.6-3=-7.6, -1.2-2.4-3=-6.6, -9-0.6-4=-13.6 -> "p q r"; t2: -3-0.6-2=-5.6 vs -2-2.4-1=-5.4 -> "m"
    assert rescored == {"t1": "p q r", "t2": "m", "t3": None}
    results = evaluate_rescoring(test_nbest, test_lm, test_refs, tuned.lm_scale, tuned.length_scale)
    assert list(results) == ["first-pass", "oracle", "rescored"]
    # 7 reference words; first-pass: t1 1 sub, t2 1 del, t3 2 del; oracle: t3 only; rescored: t2 + t3
    assert [r.num_errors for r in results.values()] == [4, 2, 3]
    assert results["rescored"].wer == pytest.approx(300 / 7)
    assert results["first-pass"].warnings == ["t3: no hypothesis (empty n-best list), scored as empty"]


def test_empty_nbest_lists_count_as_deletions_in_tuning():
    result = tune_scales(
        {"u": [(-1.0, "a")], "e": []},
        {"u": [0.0], "e": []},
        {"u": "a", "e": "b c"},
        lm_scales=(0.0,),
        length_scales=(0.0,),
    )
    assert (result.num_errors, result.num_ref_words) == (2, 3)


def test_nan_and_inf_scores_never_win():
    nbest = {"u": [(math.nan, "bad"), (-50.0, "good"), (-1.0, "lm says no")]}
    lm = {"u": [0.0, -1.0, -math.inf]}
    assert rescore(nbest, lm, 1.0, 0.0) == {"u": "good"}
    result = tune_scales(nbest, lm, {"u": "good"}, lm_scales=(1.0,), length_scales=(0.0,))
    assert result.num_errors == 0


def test_bad_inputs_fail_before_any_work():
    with pytest.raises(ValueError, match=r"1 of 2 n-best tags have no LM scores, e.g. \['u2'\]"):
        tune_scales(DEV_NBEST, {"u1": [0.0, 0.0]}, DEV_REFS)
    with pytest.raises(ValueError, match=r"tag 'u1': 1 LM scores for 2 hypotheses"):
        rescore(DEV_NBEST, {"u1": [0.0], "u2": [0.0, 0.0]}, 1.0, 0.0)
    with pytest.raises(ValueError, match=r"1 n-best tags are not in the references, e.g. \['u2'\]"):
        tune_scales(DEV_NBEST, DEV_LM, {"u1": "a b c"})
    with pytest.raises(ValueError, match="must not be empty"):
        tune_scales(DEV_NBEST, DEV_LM, DEV_REFS, lm_scales=())
    with pytest.raises(ValueError, match="contain no words"):
        tune_scales({"u": [(-1.0, "a")]}, {"u": [0.0]}, {"u": ""})

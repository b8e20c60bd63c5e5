"""RescoreNBestJob's checks of the scores RETURNN returned: NaN/inf are reported, all non-finite fails."""

from __future__ import annotations

import math

import pytest

from jobs.lm_eval import check_finite_scores


def test_some_non_finite_scores_are_reported_with_an_example():
    lines = check_finite_scores({"a": [-1.0, math.nan], "b": [-2.0], "c": []}, "dev.nbest")
    assert lines == ["WARNING: 1 of 3 LM scores are non-finite, e.g. nan for a"]
    assert check_finite_scores({"a": [-1.0, -3.5]}, "dev.nbest") == []


def test_all_non_finite_scores_are_an_error_naming_the_file():
    with pytest.raises(ValueError, match=r"dev\.nbest: every LM score is non-finite \(e\.g\. -inf for a\)"):
        check_finite_scores({"a": [-math.inf], "b": [math.nan]}, "dev.nbest")

"""WER alignment against hand-computed alignments, corpus WER, bad input and the sclite-like report."""

import random

import pytest

from recipe.asr.wer import (
    align_words,
    compute_wer,
    format_alignment,
    format_report,
    format_summary,
    word_errors,
)
from tests.edit_distance import edit_distance


def _ops(ref: str, hyp: str) -> str:
    return "".join(op for _, _, op in align_words(ref.split(), hyp.split()).steps)


@pytest.mark.parametrize(
    "ref, hyp, ops",
    [
        ("a b c d", "a b c d", "CCCC"),
        ("a b c d", "a x c", "CSCD"),  # substitution, then deletion of the last word
        ("b c", "a b c", "ICC"),  # insertion at the start
        ("a b c", "a c", "CDC"),
        ("a b", "", "DD"),
        ("", "x y", "II"),
        ("", "", ""),
        # two alignments with 3 errors exist (C C S C D C I and C C S C S S); the backtrace prefers
        # substitutions from the end, so the tie is broken towards the second one
        ("the cat sat on the mat", "the cat sit on mat now", "CCSCSS"),
    ],
)
def test_hand_computed_alignments(ref, hyp, ops):
    assert _ops(ref, hyp) == ops


def test_alignment_pairs_words():
    alignment = align_words("a b c d".split(), "a x c".split())
    assert alignment.steps == (("a", "a", "C"), ("b", "x", "S"), ("c", "c", "C"), ("d", None, "D"))
    assert (alignment.count("S"), alignment.count("D"), alignment.num_errors, alignment.num_ref_words) == (
        1,
        1,
        2,
        4,
    )


def test_alignment_error_count_is_the_edit_distance():
    """Against the recursive definition of the edit distance (tests/edit_distance.py), not the DP of
    recipe.asr.wer; the alignment must also be a valid one: it spells out ref and hyp in order, its
    C steps pair equal words and its S steps different ones."""
    rng = random.Random(0)
    for _ in range(300):
        ref = [rng.choice("abc") for _ in range(rng.randint(0, 7))]
        hyp = [rng.choice("abcd") for _ in range(rng.randint(0, 7))]
        alignment = align_words(ref, hyp)
        distance = edit_distance(ref, hyp)
        assert alignment.num_errors == word_errors(ref, hyp) == distance, (ref, hyp)
        assert [r for r, _, _ in alignment.steps if r is not None] == ref
        assert [h for _, h, _ in alignment.steps if h is not None] == hyp
        assert all((r == h) == (op == "C") for r, h, op in alignment.steps if op in "CS")
        assert sum(op != "C" for _, _, op in alignment.steps) == distance


def test_corpus_wer_counts():
    refs = {"u1": "a b c d", "u2": "b c", "u3": "x y z"}
    hyps = {"u1": "a x c", "u2": "a b c", "u3": "x y z"}
    result = compute_wer(refs, hyps)
    assert (result.num_substitutions, result.num_deletions, result.num_insertions) == (1, 1, 1)
    assert (result.num_ref_words, result.num_correct, result.num_errors) == (9, 7, 3)
    assert result.wer == pytest.approx(100 * 3 / 9)
    assert (result.num_sentences, result.num_sentence_errors) == (3, 2)
    assert list(result.alignments) == ["u1", "u2", "u3"]


def test_hypothesis_tag_missing_from_references_is_reported_before_scoring():
    with pytest.raises(
        ValueError, match=r"2 of 3 hypothesis tags are not in the references, e.g. \['x', 'y'\]"
    ):
        compute_wer({"a": "w"}, {"a": "w", "x": "v", "y": "v"})


def test_missing_hypotheses():
    refs = {"a": "w v", "b": "u"}
    with pytest.raises(ValueError, match=r"1 of 2 reference tags have no hypothesis, e.g. \['b'\]"):
        compute_wer(refs, {"a": "w v"})
    partial = compute_wer(refs, {"a": "w v"}, expect_full=False)
    assert (partial.num_ref_words, partial.num_errors) == (2, 0)


def test_empty_hypotheses_count_as_deletions_with_warnings():
    result = compute_wer({"a": "w v", "b": "u"}, {"a": None, "b": ""})
    assert result.num_deletions == 3 and result.wer == 100.0
    assert result.warnings == ["a: no hypothesis (empty n-best list), scored as empty", "b: empty hypothesis"]


def test_wer_without_reference_words_is_an_error():
    result = compute_wer({"a": ""}, {"a": "x"})
    assert result.num_insertions == 1
    with pytest.raises(ValueError, match="no words"):
        _ = result.wer


def test_pra_block_layout():
    block = format_alignment(
        "kjv/Ge1:1", align_words("in the beginning god".split(), "in a beginning god said".split())
    )
    assert block == (
        "id: (kjv/Ge1:1)\n"
        "Scores: (#C #S #D #I) 3 1 0 1\n"
        "REF:  in THE beginning god ****\n"
        "HYP:  in A   beginning god SAID\n"
        "Eval:    S                 I\n"
    )


def test_report_and_summary():
    result = compute_wer({"u1": "a b c d", "u2": "b c"}, {"u1": "a x c", "u2": ""})
    summary = format_summary({"first-pass": result})
    header, row = summary.splitlines()
    assert header.split(" | ")[0].strip() == "system"
    cells = [c.strip() for c in row.split(" | ")]
    assert cells == ["first-pass", "2", "6", "33.33", "16.67", "50.00", "0.00", "4", "100.0", "66.67"]
    report = format_report(result, "dev")
    assert "WARNING: u2: empty hypothesis" in report
    assert "id: (u1)" in report and "id: (u2)" in report
    assert "HYP:  * *" in report  # both words of u2 deleted

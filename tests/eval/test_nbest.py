"""N-best deduplication, normalization, 1-best/oracle selection and SentencePiece coverage checks."""

import math

import pytest

from recipe.asr.nbest import (
    deduplicate,
    describe_unknown_characters,
    oracle_index,
    oracle_texts,
    take_best,
    unknown_characters,
)
from recipe.data.corpus import kjv_corpus
from recipe.data.sentencepiece_model import train_sentencepiece
from recipe.data.text_dict import write_text_lines
from recipe.data.tokenizers import SentencePieceTokenizer


def test_deduplicate_max_keeps_best_score_and_sorts():
    hyps = [(-2.0, "b"), (-1.5, "a"), (-1.0, "a"), (-3.0, "c"), (-2.0, "d")]
    assert deduplicate(hyps) == [(-1.0, "a"), (-2.0, "b"), (-2.0, "d"), (-3.0, "c")]


def test_deduplicate_logsumexp_like_search_beam_join_scores():
    result = deduplicate([(-1.0, "a"), (-2.0, "b"), (-1.5, "a")], mode="logsumexp")
    assert [text for _, text in result] == ["a", "b"]
    assert result[0][0] == pytest.approx(math.log(math.exp(-1.0) + math.exp(-1.5)))
    assert result[1][0] == -2.0
    infinite = deduplicate(
        [(-math.inf, "x"), (-math.inf, "x"), (math.nan, "y"), (-5.0, "y")], mode="logsumexp"
    )
    assert infinite == [(-5.0, "y"), (-math.inf, "x")]
    with pytest.raises(ValueError, match="mode must be"):
        deduplicate([], mode="sum")


def test_nan_scores_rank_last():
    result = deduplicate([(math.nan, "n"), (-7.0, "x")])
    assert result[0] == (-7.0, "x") and math.isnan(result[1][0])
    assert take_best({"t": [(math.nan, "n"), (-7.0, "x")], "e": []}) == {"t": "x", "e": None}


def test_oracle_selection_and_ties():
    hyps = [(-1.0, "a x c"), (-2.0, "a b c d e"), (-3.0, "a b c x"), (-0.5, "q b c x")]
    # errors vs "a b c d": 2, 1, 1, 2 -> tie between 1 and 2 broken by the better score
    assert oracle_index(hyps, "a b c d") == 1
    assert oracle_index([(-1.0, "a"), (-1.0, "b")], "c") == 0  # full tie: earlier position
    assert oracle_index([], "a") is None
    assert oracle_texts({"u": hyps, "e": []}, {"u": "a b c d", "e": "z"}) == {"u": "a b c d e", "e": None}
    with pytest.raises(ValueError, match=r"1 n-best tags are not in the references, e.g. \['u'\]"):
        oracle_texts({"u": hyps}, {})


def test_unknown_characters_with_a_real_sentencepiece_model(tmp_path):
    corpus = kjv_corpus(verses="Gen1:1-Gen1:31")
    write_text_lines(tmp_path / "text.txt", corpus.values())
    sp = SentencePieceTokenizer(
        train_sentencepiece(tmp_path / "text.txt", str(tmp_path / "spm"), vocab_size=120)
    )
    nbest = {
        "a": [(-1.0, "and god said"), (-2.0, "and god saïd")],
        "b": [(-1.0, "the earth ＝ 7 ï")],
        "c": [(-1.0, "let there be light")],
    }
    unknown = unknown_characters(nbest, sp)
    assert list(unknown.items()) == [("ï", ["a", "b"]), ("＝", ["b"]), ("7", ["b"])]
    message = describe_unknown_characters(unknown, "dev.nbest")
    assert message.startswith("dev.nbest: 3 characters are outside the SentencePiece vocabulary")
    assert "'ï' (U+00EF) in 2 utterances, e.g. a" in message
    assert describe_unknown_characters({}, "x") == ""

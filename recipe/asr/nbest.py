"""N-best lists ``{seq_tag: [(score, text), ...]}``: normalization, deduplication, 1-best and oracle.

Scores are first-pass log-probabilities (higher is better); NaN counts as -inf when ranking.

Deduplication (identical texts, e.g. after normalization or from different segmentations of the same
words) keeps by default the best score, ``max_i s_i`` (the Viterbi choice: each first-pass score is the
score of one path). ``mode="logsumexp"`` gives ``log sum_i exp(s_i)`` instead, the sum over paths that
i6_core's ``SearchBeamJoinScoresJob`` uses. Either way the merged list is sorted by score, best first,
and equal scores keep the order of first occurrence.

Hypothesis texts are normalized like the references (:func:`recipe.data.text_normalization.normalize_text`:
lowercase, punctuation removed except apostrophes inside words).
"""

import math
from collections.abc import Mapping, Sequence

from recipe.asr.wer import word_errors
from recipe.data.tokenizers import Tokenizer

NBestList = list[tuple[float, str]]


def _rank_key(score: float) -> float:
    return -math.inf if math.isnan(score) else score


def deduplicate(hyps: Sequence[tuple[float, str]], *, mode: str = "max") -> NBestList:
    """Merge hypotheses with identical text (see module docstring); ``mode`` is "max" or "logsumexp"."""
    if mode not in ("max", "logsumexp"):
        raise ValueError(f"mode must be 'max' or 'logsumexp', got {mode!r}")
    merged: dict[str, list[float]] = {}
    for score, text in hyps:
        merged.setdefault(text, []).append(float(score))
    result: NBestList = []
    for text, scores in merged.items():
        if mode == "max" or len(scores) == 1:
            score = max(scores, key=_rank_key)
        else:
            finite = [s for s in scores if not math.isnan(s)]
            top = max(finite, default=math.nan)
            if math.isnan(top) or math.isinf(top):
                score = top
            else:
                score = top + math.log(sum(math.exp(s - top) for s in finite))
        result.append((score, text))
    result.sort(key=lambda hyp: _rank_key(hyp[0]), reverse=True)
    return result


def best_index(hyps: Sequence[tuple[float, str]]) -> int | None:
    """Index of the highest-scoring hypothesis (the first of equal ones), None for an empty list."""
    if not hyps:
        return None
    return max(range(len(hyps)), key=lambda k: (_rank_key(hyps[k][0]), -k))


def take_best(nbest: Mapping[str, Sequence[tuple[float, str]]]) -> dict[str, str | None]:
    """The first-pass 1-best text per tag (None for an empty n-best list)."""
    result: dict[str, str | None] = {}
    for tag, hyps in nbest.items():
        index = best_index(hyps)
        result[tag] = None if index is None else hyps[index][1]
    return result


def oracle_index(hyps: Sequence[tuple[float, str]], reference: str) -> int | None:
    """Index of the hypothesis with the fewest word errors against ``reference``.

    Ties go to the better first-pass score, then to the earlier position; None for an empty list.
    """
    if not hyps:
        return None
    ref_words = reference.split()
    return min(
        range(len(hyps)),
        key=lambda k: (word_errors(ref_words, hyps[k][1].split()), -_rank_key(hyps[k][0]), k),
    )


def oracle_texts(
    nbest: Mapping[str, Sequence[tuple[float, str]]], references: Mapping[str, str]
) -> dict[str, str | None]:
    """The oracle (lowest-WER) hypothesis per tag; raises ValueError for tags missing from the references."""
    missing = [tag for tag in nbest if tag not in references]
    if missing:
        raise ValueError(f"{len(missing)} n-best tags are not in the references, e.g. {missing[:5]}")
    result: dict[str, str | None] = {}
    for tag, hyps in nbest.items():
        index = oracle_index(hyps, references[tag])
        result[tag] = None if index is None else hyps[index][1]
    return result


def unknown_characters(
    nbest: Mapping[str, Sequence[tuple[float, str]]], tokenizer: Tokenizer
) -> dict[str, list[str]]:
    """Parts of the hypotheses that the tokenizer can only encode as its unknown token
    (``Tokenizer.unknown_pieces``: characters for SentencePiece, e.g. words for WordPiece).

    Returns ``{piece: [tags using it]}`` (in first-use order); whitespace is never reported.
    """
    users: dict[str, list[str]] = {}
    for tag, hyps in nbest.items():
        for _, text in hyps:
            for piece in tokenizer.unknown_pieces(text):
                if not users.get(piece) or users[piece][-1] != tag:
                    users.setdefault(piece, []).append(tag)
    return users


def describe_unknown_characters(
    unknown: Mapping[str, Sequence[str]],
    source: str,
    vocabulary: str = "SentencePiece",
    effect: str = "will be scored as <unk>",
) -> str:
    """A one-paragraph message about :func:`unknown_characters` output (empty string if there are none)."""
    if not unknown:
        return ""
    parts = [
        f"{piece!r}{f' (U+{ord(piece):04X})' if len(piece) == 1 else ''} in {len(tags)} utterances, e.g. {tags[0]}"
        for piece, tags in unknown.items()
    ]
    return (
        f"{source}: {len(unknown)} characters are outside the {vocabulary} vocabulary and {effect}: "
        + "; ".join(parts)
    )

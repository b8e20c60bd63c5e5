"""Log-linear combination of first-pass and LM scores for n-best rescoring, with scales tuned by WER.

For a hypothesis h with first-pass score s_fp(h), LM score s_lm(h) (log-probabilities) and |h| words:

    combined(h) = s_fp(h) + lm_scale * s_lm(h) + length_scale * |h|

The rescored output of an utterance is the hypothesis with the highest combined score (the first one on
ties, so the first-pass order decides). NaN scores count as -inf; with ``lm_scale == 0`` the LM term is
left out entirely (so an LM score of -inf does not matter).

Tuning: every (lm_scale, length_scale) of the grid ``lm_scales x length_scales`` is evaluated on a dev
n-best list by corpus word errors (the word errors of every hypothesis are computed once). The chosen
pair has the fewest errors; on ties the first such pair in grid order wins (lm_scales outer,
length_scales inner, in the order given), which makes the choice deterministic. The pair is then
applied unchanged to the test n-best list.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from recipe.asr.nbest import oracle_texts, take_best
from recipe.asr.wer import WerResult, compute_wer, word_errors

NBest = Mapping[str, Sequence[tuple[float, str]]]
LmScores = Mapping[str, Sequence[float]]

DEFAULT_LM_SCALES: tuple[float, ...] = tuple(round(0.1 * k, 1) for k in range(0, 31))
DEFAULT_LENGTH_SCALES: tuple[float, ...] = tuple(round(0.5 * k, 1) for k in range(-6, 7))


def _check_lm_scores(nbest: NBest, lm_scores: LmScores) -> None:
    """Raise ValueError (before any work) for tags without LM scores or with a wrong number of them."""
    missing = [tag for tag in nbest if tag not in lm_scores]
    if missing:
        raise ValueError(f"{len(missing)} of {len(nbest)} n-best tags have no LM scores, e.g. {missing[:5]}")
    for tag, hyps in nbest.items():
        if len(lm_scores[tag]) != len(hyps):
            raise ValueError(f"tag {tag!r}: {len(lm_scores[tag])} LM scores for {len(hyps)} hypotheses")


def combine_scores(
    first_pass: Sequence[float],
    lm: Sequence[float],
    num_words: Sequence[int],
    lm_scale: float,
    length_scale: float,
) -> np.ndarray:
    """``first_pass + lm_scale * lm + length_scale * num_words`` elementwise, NaN mapped to -inf."""
    combined = np.asarray(first_pass, dtype=np.float64) + length_scale * np.asarray(
        num_words, dtype=np.float64
    )
    if lm_scale != 0:
        combined = combined + lm_scale * np.asarray(lm, dtype=np.float64)
    return np.where(np.isnan(combined), -np.inf, combined)


def rescore(nbest: NBest, lm_scores: LmScores, lm_scale: float, length_scale: float) -> dict[str, str | None]:
    """The best hypothesis text per tag under the combined score (None for an empty n-best list)."""
    _check_lm_scores(nbest, lm_scores)
    result: dict[str, str | None] = {}
    for tag, hyps in nbest.items():
        if not hyps:
            result[tag] = None
            continue
        combined = combine_scores(
            [s for s, _ in hyps], lm_scores[tag], [len(t.split()) for _, t in hyps], lm_scale, length_scale
        )
        result[tag] = hyps[int(np.argmax(combined))][1]
    return result


@dataclass(frozen=True)
class TuningResult:
    """The chosen scales, their dev WER, and the dev WER (%) of every grid point."""

    lm_scale: float
    length_scale: float
    num_errors: int
    num_ref_words: int
    grid: tuple[tuple[float, float, float], ...]  # (lm_scale, length_scale, WER %)

    @property
    def wer(self) -> float:
        return 100.0 * self.num_errors / self.num_ref_words


def tune_scales(
    nbest: NBest,
    lm_scores: LmScores,
    references: Mapping[str, str],
    *,
    lm_scales: Sequence[float] = DEFAULT_LM_SCALES,
    length_scales: Sequence[float] = DEFAULT_LENGTH_SCALES,
) -> TuningResult:
    """Grid-search (lm_scale, length_scale) on a dev n-best list by corpus WER (module docstring).

    Raises ValueError before any work for n-best tags missing from the references or the LM scores, an
    empty grid, or references without words. An empty n-best list counts all reference words as deleted.
    """
    if not lm_scales or not length_scales:
        raise ValueError("lm_scales and length_scales must not be empty")
    _check_lm_scores(nbest, lm_scores)
    missing = [tag for tag in nbest if tag not in references]
    if missing:
        raise ValueError(f"{len(missing)} n-best tags are not in the references, e.g. {missing[:5]}")
    num_ref_words = sum(len(references[tag].split()) for tag in nbest)
    if num_ref_words == 0:
        raise ValueError("the references of the n-best tags contain no words")

    tags = [tag for tag in nbest if nbest[tag]]
    fixed_errors = sum(len(references[tag].split()) for tag in nbest if not nbest[tag])
    width = max((len(nbest[tag]) for tag in tags), default=1)
    first_pass = np.full((len(tags), width), -np.inf)
    lm = np.zeros((len(tags), width))
    num_words = np.zeros((len(tags), width))
    errors = np.zeros((len(tags), width), dtype=np.int64)
    valid = np.zeros((len(tags), width), dtype=bool)  # False marks padding of shorter lists
    for row, tag in enumerate(tags):
        ref_words = references[tag].split()
        for col, (score, text) in enumerate(nbest[tag]):
            first_pass[row, col] = score
            lm[row, col] = lm_scores[tag][col]
            num_words[row, col] = len(text.split())
            errors[row, col] = word_errors(ref_words, text.split())
            valid[row, col] = True

    grid: list[tuple[float, float, float]] = []
    best: tuple[int, float, float] | None = None
    rows = np.arange(len(tags))
    for lm_scale in lm_scales:
        for length_scale in length_scales:
            combined = combine_scores(first_pass, lm, num_words, lm_scale, length_scale)
            combined = np.where(valid, combined, -np.inf)
            # argmax returns the first maximum; a row of only -inf picks the first hypothesis
            chosen = np.argmax(combined, axis=1) if len(tags) else np.zeros(0, dtype=np.int64)
            total = int(errors[rows, chosen].sum()) + fixed_errors
            grid.append((float(lm_scale), float(length_scale), 100.0 * total / num_ref_words))
            if best is None or total < best[0]:
                best = (total, float(lm_scale), float(length_scale))
    assert best is not None
    return TuningResult(
        lm_scale=best[1],
        length_scale=best[2],
        num_errors=best[0],
        num_ref_words=num_ref_words,
        grid=tuple(grid),
    )


def format_tuning_grid(result: TuningResult) -> str:
    """The dev WER grid as text: one row per lm_scale, one column per length_scale, chosen cell marked *."""
    lm_values = list(dict.fromkeys(lm for lm, _, _ in result.grid))
    length_values = list(dict.fromkeys(length for _, length, _ in result.grid))
    wer = {(lm, length): value for lm, length, value in result.grid}
    header = ["lm\\len"] + [f"{v:g}" for v in length_values]
    rows = [header]
    for lm in lm_values:
        cells = [f"{lm:g}"]
        for length in length_values:
            mark = "*" if (lm, length) == (result.lm_scale, result.length_scale) else ""
            cells.append(f"{wer[(lm, length)]:.2f}{mark}")
        rows.append(cells)
    widths = [max(len(row[k]) for row in rows) for k in range(len(header))]
    return "\n".join(" ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)) for row in rows)


def evaluate_rescoring(
    nbest: NBest,
    lm_scores: LmScores,
    references: Mapping[str, str],
    lm_scale: float,
    length_scale: float,
) -> dict[str, WerResult]:
    """WER of the first-pass 1-best, the n-best oracle and the rescored output, keyed by those names.

    Only the n-best tags are scored (``expect_full=False``); n-best tags missing from the references
    raise ValueError before anything is scored.
    """
    _check_lm_scores(nbest, lm_scores)
    return {
        "first-pass": compute_wer(references, take_best(nbest), expect_full=False),
        "oracle": compute_wer(references, oracle_texts(nbest, references), expect_full=False),
        "rescored": compute_wer(
            references, rescore(nbest, lm_scores, lm_scale, length_scale), expect_full=False
        ),
    }

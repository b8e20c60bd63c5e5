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

Several LMs (:func:`tune_combination`): with K LM score lists the combined score is

    combined(h) = s_fp(h) + sum_k lm_scales[k] * s_lm_k(h) + length_scale * |h|

One LM is the grid search above. For K >= 2 the full grid (|lm_scales|^K * |length_scales| points) is
too large, so the scales are found by *block coordinate descent* on the same grids: starting from all
scales 0 (the first pass), each block is the 2-D grid of one LM's scale and the length scale (the length
reward interacts with every LM, so it is searched together with each), the other LM scales held fixed.
A block moves the point only to a strictly better one (fewer dev word errors; the first such grid point
in grid order), so the dev WER never increases and the search stops; it ends after a sweep over all K
blocks that moves nothing, or before a block that would exceed ``max_evaluations`` WER evaluations (the
fixed budget). The first block searches the grid of LM 1 alone, so the combination is never worse on
dev than LM 1 alone. Every block's outcome is recorded in the search trace. Only the dev
n-best list is ever looked at; the chosen scales are applied unchanged to test.
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
    return combine_multi(first_pass, [lm], num_words, [lm_scale], length_scale)


def combine_multi(
    first_pass: np.ndarray | Sequence[float],
    lms: np.ndarray | Sequence[Sequence[float]],
    num_words: np.ndarray | Sequence[int],
    lm_scales: Sequence[float],
    length_scale: float,
) -> np.ndarray:
    """``first_pass + length_scale * num_words + sum_k lm_scales[k] * lms[k]`` elementwise (terms of LMs
    with scale 0 left out, in this order of summation), NaN mapped to -inf; with one LM the same numbers
    as :func:`combine_scores` (which is this with one LM)."""
    if len(lm_scales) != len(lms):
        raise ValueError(f"{len(lm_scales)} LM scales for {len(lms)} LM score lists")
    combined = np.asarray(first_pass, dtype=np.float64) + length_scale * np.asarray(
        num_words, dtype=np.float64
    )
    for scale, lm in zip(lm_scales, lms, strict=True):
        if scale != 0:
            combined = combined + scale * np.asarray(lm, dtype=np.float64)
    return np.where(np.isnan(combined), -np.inf, combined)


def rescore(nbest: NBest, lm_scores: LmScores, lm_scale: float, length_scale: float) -> dict[str, str | None]:
    """The best hypothesis text per tag under the combined score (None for an empty n-best list)."""
    return rescore_combination(nbest, [lm_scores], [lm_scale], length_scale)


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


class _DevArrays:
    """A dev n-best list as padded arrays (utterances x hypotheses): first-pass scores, the K LM score
    lists, word counts and the word errors of every hypothesis (computed once), for fast WER evaluation
    of many scale settings. Empty n-best lists are left out and their reference words counted as errors."""

    def __init__(self, nbest: NBest, lm_scores: Sequence[LmScores], references: Mapping[str, str]) -> None:
        tags = [tag for tag in nbest if nbest[tag]]
        self.fixed_errors = sum(len(references[tag].split()) for tag in nbest if not nbest[tag])
        width = max((len(nbest[tag]) for tag in tags), default=1)
        self.first_pass = np.full((len(tags), width), -np.inf)
        self.lms = np.zeros((len(lm_scores), len(tags), width))
        self.num_words = np.zeros((len(tags), width))
        self.errors = np.zeros((len(tags), width), dtype=np.int64)
        self.valid = np.zeros((len(tags), width), dtype=bool)  # False marks padding of shorter lists
        for row, tag in enumerate(tags):
            ref_words = references[tag].split()
            for col, (score, text) in enumerate(nbest[tag]):
                self.first_pass[row, col] = score
                for k, scores in enumerate(lm_scores):
                    self.lms[k, row, col] = scores[tag][col]
                self.num_words[row, col] = len(text.split())
                self.errors[row, col] = word_errors(ref_words, text.split())
                self.valid[row, col] = True
        self.rows = np.arange(len(tags))

    def errors_at(self, lm_scales: Sequence[float], length_scale: float) -> int:
        """Corpus word errors when each utterance picks its best hypothesis under
        :func:`combine_multi` with these scales (the same arithmetic as :func:`rescore_combination`)."""
        if not len(self.rows):
            return self.fixed_errors
        combined = combine_multi(self.first_pass, self.lms, self.num_words, lm_scales, length_scale)
        combined = np.where(self.valid, combined, -np.inf)
        # argmax returns the first maximum; a row of only -inf picks the first hypothesis
        chosen = np.argmax(combined, axis=1)
        return int(self.errors[self.rows, chosen].sum()) + self.fixed_errors


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

    arrays = _DevArrays(nbest, [lm_scores], references)
    grid: list[tuple[float, float, float]] = []
    best: tuple[int, float, float] | None = None
    for lm_scale in lm_scales:
        for length_scale in length_scales:
            total = arrays.errors_at((lm_scale,), length_scale)
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
    return evaluate_combination(nbest, [lm_scores], references, [lm_scale], length_scale)


# --- several LMs -------------------------------------------------------------------------------------


def _check_all_lm_scores(nbest: NBest, lm_scores: Sequence[LmScores]) -> None:
    if not lm_scores:
        raise ValueError("at least one LM score list is needed")
    for k, scores in enumerate(lm_scores):
        try:
            _check_lm_scores(nbest, scores)
        except ValueError as exc:
            raise ValueError(f"LM {k + 1}: {exc}") from None


def rescore_combination(
    nbest: NBest, lm_scores: Sequence[LmScores], lm_scales: Sequence[float], length_scale: float
) -> dict[str, str | None]:
    """The best hypothesis text per tag under :func:`combine_multi` (None for an empty n-best list)."""
    _check_all_lm_scores(nbest, lm_scores)
    if len(lm_scales) != len(lm_scores):
        raise ValueError(f"{len(lm_scales)} LM scales for {len(lm_scores)} LM score lists")
    result: dict[str, str | None] = {}
    for tag, hyps in nbest.items():
        if not hyps:
            result[tag] = None
            continue
        combined = combine_multi(
            [s for s, _ in hyps],
            [scores[tag] for scores in lm_scores],
            [len(t.split()) for _, t in hyps],
            lm_scales,
            length_scale,
        )
        result[tag] = hyps[int(np.argmax(combined))][1]
    return result


@dataclass(frozen=True)
class TraceStep:
    """One step of the search: ``block`` (the LM whose scale was searched with the length scale, 0-based;
    -1 for the start), the point after the step, its dev word errors, WER evaluations used so far."""

    sweep: int
    block: int
    lm_scales: tuple[float, ...]
    length_scale: float
    num_errors: int
    evaluations: int
    moved: bool


@dataclass(frozen=True)
class CombinationResult:
    """Scales chosen on dev for ``first_pass + sum_k lm_scales[k] * lm_k + length_scale * words``."""

    lm_scales: tuple[float, ...]
    length_scale: float
    num_errors: int
    num_ref_words: int
    method: str  # "grid" (one LM) or "coordinate descent"
    trace: tuple[TraceStep, ...]
    evaluations: int
    converged: bool  # False when the evaluation budget ended the search

    @property
    def wer(self) -> float:
        return 100.0 * self.num_errors / self.num_ref_words


def tune_combination(
    nbest: NBest,
    lm_scores: Sequence[LmScores],
    references: Mapping[str, str],
    *,
    lm_scales: Sequence[float] = DEFAULT_LM_SCALES,
    length_scales: Sequence[float] = DEFAULT_LENGTH_SCALES,
    max_evaluations: int = 10_000,
) -> CombinationResult:
    """Tune one scale per LM and the length scale on a dev n-best list by corpus WER (module docstring):
    the grid search of :func:`tune_scales` for one LM, block coordinate descent for several, every LM's
    scale on the grid ``lm_scales``, at most ``max_evaluations`` WER evaluations.

    Raises ValueError before any work for missing tags or scores, empty grids, a budget smaller than one
    block, or references without words.
    """
    if not lm_scales or not length_scales:
        raise ValueError("lm_scales and length_scales must not be empty")
    _check_all_lm_scores(nbest, lm_scores)
    block_size = len(lm_scales) * len(length_scales)
    if len(lm_scores) > 1 and max_evaluations < block_size:
        raise ValueError(f"max_evaluations={max_evaluations} is less than one block ({block_size} points)")
    if len(lm_scores) == 1:
        grid = tune_scales(nbest, lm_scores[0], references, lm_scales=lm_scales, length_scales=length_scales)
        step = TraceStep(1, 0, (grid.lm_scale,), grid.length_scale, grid.num_errors, len(grid.grid), True)
        return CombinationResult(
            (grid.lm_scale,),
            grid.length_scale,
            grid.num_errors,
            grid.num_ref_words,
            "grid",
            (step,),
            len(grid.grid),
            True,
        )
    missing = [tag for tag in nbest if tag not in references]
    if missing:
        raise ValueError(f"{len(missing)} n-best tags are not in the references, e.g. {missing[:5]}")
    num_ref_words = sum(len(references[tag].split()) for tag in nbest)
    if num_ref_words == 0:
        raise ValueError("the references of the n-best tags contain no words")

    arrays = _DevArrays(nbest, lm_scores, references)
    # start at the first pass: every LM scale 0, length scale 0 (the grid values nearest to 0)
    zero_lm = min(lm_scales, key=abs)
    point = [float(zero_lm)] * len(lm_scores)
    length = float(min(length_scales, key=abs))
    errors = arrays.errors_at(point, length)
    evaluations = 1
    trace = [TraceStep(0, -1, tuple(point), length, errors, evaluations, False)]
    converged, budget_left, sweep = False, True, 0
    while not converged and budget_left:
        sweep += 1
        moved_in_sweep = False
        for k in range(len(lm_scores)):
            if evaluations + block_size > max_evaluations:
                budget_left = False
                break
            best: tuple[int, float, float] | None = None
            for lm_scale in lm_scales:
                candidate = [*point[:k], float(lm_scale), *point[k + 1 :]]
                for length_scale in length_scales:
                    total = arrays.errors_at(candidate, length_scale)
                    if best is None or total < best[0]:
                        best = (total, float(lm_scale), float(length_scale))
            evaluations += block_size
            assert best is not None
            moved = best[0] < errors  # only a strictly better point: the dev WER never increases
            if moved:
                errors, point[k], length = best[0], best[1], best[2]
                moved_in_sweep = True
            trace.append(TraceStep(sweep, k, tuple(point), length, errors, evaluations, moved))
        else:
            converged = not moved_in_sweep
    return CombinationResult(
        tuple(point),
        length,
        errors,
        num_ref_words,
        "coordinate descent",
        tuple(trace),
        evaluations,
        converged,
    )


def format_trace(result: CombinationResult, names: Sequence[str] | None = None) -> str:
    """The search trace as text: one line per step with the scales and the dev WER after it."""
    names = list(names) if names is not None else [f"lm{k + 1}" for k in range(len(result.lm_scales))]
    if len(names) != len(result.lm_scales):
        raise ValueError(f"{len(names)} names for {len(result.lm_scales)} LMs")
    lines = [
        f"method: {result.method}; {result.evaluations} WER evaluations;"
        f" {'converged' if result.converged else 'stopped by the evaluation budget'}",
    ]
    for step in result.trace:
        scales = ", ".join(f"{n} {s:g}" for n, s in zip(names, step.lm_scales, strict=True))
        what = "start (first pass)" if step.block < 0 else f"sweep {step.sweep}, {names[step.block]} x length"
        mark = " (moved)" if step.moved else ""
        lines.append(
            f"{what}: {scales}, length {step.length_scale:g} -> dev WER"
            f" {100.0 * step.num_errors / result.num_ref_words:.2f} ({step.num_errors} errors){mark}"
        )
    scales = ", ".join(f"{n} {s:g}" for n, s in zip(names, result.lm_scales, strict=True))
    lines.append(f"chosen: {scales}, length {result.length_scale:g}: dev WER {result.wer:.2f}")
    return "\n".join(lines)


def evaluate_combination(
    nbest: NBest,
    lm_scores: Sequence[LmScores],
    references: Mapping[str, str],
    lm_scales: Sequence[float],
    length_scale: float,
) -> dict[str, WerResult]:
    """WER of the first-pass 1-best, the n-best oracle and the output rescored with several LMs."""
    _check_all_lm_scores(nbest, lm_scores)
    return {
        "first-pass": compute_wer(references, take_best(nbest), expect_full=False),
        "oracle": compute_wer(references, oracle_texts(nbest, references), expect_full=False),
        "rescored": compute_wer(
            references,
            rescore_combination(nbest, lm_scores, lm_scales, length_scale),
            expect_full=False,
        ),
    }

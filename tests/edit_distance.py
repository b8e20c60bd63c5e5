"""Reference computations for the tests, written independently of ``recipe.asr.wer``: the word edit
distance by its recursive definition (memoised, top-down) and the corpus WER built on it."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence


def edit_distance(ref: Sequence[str], hyp: Sequence[str]) -> int:
    """Fewest substitutions, deletions and insertions that turn ``ref`` into ``hyp``."""

    @functools.cache
    def rest(i: int, j: int) -> int:  # distance between ref[i:] and hyp[j:]
        if i == len(ref):
            return len(hyp) - j
        if j == len(hyp):
            return len(ref) - i
        return min(rest(i + 1, j + 1) + (ref[i] != hyp[j]), rest(i + 1, j) + 1, rest(i, j + 1) + 1)

    return rest(0, 0)


def corpus_wer(refs: Mapping[str, str], hyps: Mapping[str, str | None]) -> float:
    """100 * (sum of edit distances) / (reference words) over the tags of ``refs``; None = empty."""
    errors = sum(edit_distance(refs[t].split(), (hyps[t] or "").split()) for t in refs)
    return 100.0 * errors / sum(len(r.split()) for r in refs.values())

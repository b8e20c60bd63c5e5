"""Word error rate: Levenshtein word alignment, corpus WER and an sclite-like report.

Alignment: the minimum edit distance between reference words r[1..N] and hypothesis words h[1..M] with
unit costs, D[i][j] = min(D[i-1][j-1] + [r_i != h_j], D[i-1][j] + 1 (deletion), D[i][j-1] + 1
(insertion)), followed by a backtrace from (N, M). Among equally cheap alignments the backtrace prefers,
at each step from the end, a match/substitution, then a deletion, then an insertion, so the result is
deterministic. Counts: C correct, S substitutions, D deletions, I insertions; errors = S + D + I and
WER = errors / N over the whole corpus (sclite's definition; unlike sclite's default 4/3/3 weights, the
unit costs always give the minimum number of errors).

The per-utterance report follows sclite's ``-o pra`` layout: ``id:``, ``Scores: (#C #S #D #I)``, and
aligned ``REF:``/``HYP:``/``Eval:`` lines where correct words are lowercase, errors uppercase and a gap is
``*`` repeated to the column width.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

CORRECT, SUBSTITUTION, DELETION, INSERTION = "C", "S", "D", "I"


@dataclass(frozen=True)
class Alignment:
    """An alignment as a list of (ref word or None, hyp word or None, op) in sentence order."""

    steps: tuple[tuple[str | None, str | None, str], ...]

    def count(self, op: str) -> int:
        """Number of steps with operation ``op`` (one of C, S, D, I)."""
        return sum(1 for _, _, step_op in self.steps if step_op == op)

    @property
    def num_ref_words(self) -> int:
        return sum(1 for ref, _, _ in self.steps if ref is not None)

    @property
    def num_errors(self) -> int:
        return sum(1 for _, _, op in self.steps if op != CORRECT)


def word_errors(ref: Sequence[str], hyp: Sequence[str]) -> int:
    """The Levenshtein distance between two word sequences (the errors S + D + I of the best alignment)."""
    previous = list(range(len(hyp) + 1))
    for i, ref_word in enumerate(ref, start=1):
        current = [i]
        for j, hyp_word in enumerate(hyp, start=1):
            current.append(min(previous[j - 1] + (ref_word != hyp_word), previous[j] + 1, current[j - 1] + 1))
        previous = current
    return previous[-1]


def align_words(ref: Sequence[str], hyp: Sequence[str]) -> Alignment:
    """Align two word sequences with the DP and backtrace described in the module docstring."""
    n, m = len(ref), len(hyp)
    cost = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n + 1):
        cost[i][0] = i
    for j in range(m + 1):
        cost[0][j] = j
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            cost[i][j] = min(
                cost[i - 1][j - 1] + (ref[i - 1] != hyp[j - 1]), cost[i - 1][j] + 1, cost[i][j - 1] + 1
            )
    steps: list[tuple[str | None, str | None, str]] = []
    i, j = n, m
    while i > 0 or j > 0:
        if i > 0 and j > 0 and cost[i][j] == cost[i - 1][j - 1] + (ref[i - 1] != hyp[j - 1]):
            steps.append((ref[i - 1], hyp[j - 1], CORRECT if ref[i - 1] == hyp[j - 1] else SUBSTITUTION))
            i, j = i - 1, j - 1
        elif i > 0 and cost[i][j] == cost[i - 1][j] + 1:
            steps.append((ref[i - 1], None, DELETION))
            i -= 1
        else:
            steps.append((None, hyp[j - 1], INSERTION))
            j -= 1
    return Alignment(tuple(reversed(steps)))


@dataclass
class WerResult:
    """Corpus WER with the per-utterance alignments (in reference order) and input warnings."""

    alignments: dict[str, Alignment]
    warnings: list[str] = field(default_factory=list)

    def _total(self, op: str) -> int:
        return sum(a.count(op) for a in self.alignments.values())

    @property
    def num_sentences(self) -> int:
        return len(self.alignments)

    @property
    def num_sentence_errors(self) -> int:
        return sum(1 for a in self.alignments.values() if a.num_errors)

    @property
    def num_ref_words(self) -> int:
        return sum(a.num_ref_words for a in self.alignments.values())

    @property
    def num_correct(self) -> int:
        return self._total(CORRECT)

    @property
    def num_substitutions(self) -> int:
        return self._total(SUBSTITUTION)

    @property
    def num_deletions(self) -> int:
        return self._total(DELETION)

    @property
    def num_insertions(self) -> int:
        return self._total(INSERTION)

    @property
    def num_errors(self) -> int:
        return self.num_substitutions + self.num_deletions + self.num_insertions

    @property
    def wer(self) -> float:
        """Word error rate in percent, 100 * errors / reference words."""
        if self.num_ref_words == 0:
            raise ValueError("WER is undefined: the references contain no words")
        return 100.0 * self.num_errors / self.num_ref_words


def compute_wer(
    references: Mapping[str, str], hypotheses: Mapping[str, str | None], *, expect_full: bool = True
) -> WerResult:
    """Score whitespace-tokenized hypotheses against references, both ``{seq_tag: text}``.

    Inputs are checked before anything is scored: hypothesis tags missing from the references raise
    ValueError (naming how many and the first ones); reference tags without a hypothesis raise too when
    ``expect_full``, otherwise only the hypothesis tags are scored. A hypothesis ``None`` (an empty
    n-best list) is scored as the empty hypothesis and noted in ``warnings``, as are empty texts.
    """
    unknown = [tag for tag in hypotheses if tag not in references]
    if unknown:
        raise ValueError(
            f"{len(unknown)} of {len(hypotheses)} hypothesis tags are not in the references,"
            f" e.g. {unknown[:5]}; reference tags look like {next(iter(references), None)!r}"
        )
    missing = [tag for tag in references if tag not in hypotheses]
    if missing and expect_full:
        raise ValueError(
            f"{len(missing)} of {len(references)} reference tags have no hypothesis, e.g. {missing[:5]}"
            " (pass expect_full=False to score only the hypothesis tags)"
        )
    result = WerResult(alignments={})
    for tag, ref_text in references.items():
        if tag not in hypotheses:
            continue
        hyp_text = hypotheses[tag]
        if hyp_text is None:
            result.warnings.append(f"{tag}: no hypothesis (empty n-best list), scored as empty")
            hyp_text = ""
        elif not hyp_text.strip():
            result.warnings.append(f"{tag}: empty hypothesis")
        result.alignments[tag] = align_words(ref_text.split(), hyp_text.split())
    return result


def _pad(word: str | None, width: int, is_error: bool) -> str:
    if word is None:
        return "*" * width
    return (word.upper() if is_error else word.lower()).ljust(width)


def format_alignment(tag: str, alignment: Alignment) -> str:
    """One sclite ``pra``-style block (``id``, ``Scores``, ``REF``, ``HYP``, ``Eval`` lines)."""
    ref_cols, hyp_cols, eval_cols = [], [], []
    for ref, hyp, op in alignment.steps:
        width = max(len(ref or ""), len(hyp or ""), 1)
        is_error = op != CORRECT
        ref_cols.append(_pad(ref, width, is_error))
        hyp_cols.append(_pad(hyp, width, is_error))
        eval_cols.append(("" if op == CORRECT else op).ljust(width))
    scores = " ".join(str(alignment.count(op)) for op in (CORRECT, SUBSTITUTION, DELETION, INSERTION))
    lines = [
        f"id: ({tag})",
        f"Scores: (#C #S #D #I) {scores}",
        ("REF:  " + " ".join(ref_cols)).rstrip(),
        ("HYP:  " + " ".join(hyp_cols)).rstrip(),
        ("Eval: " + " ".join(eval_cols)).rstrip(),
    ]
    return "\n".join(lines) + "\n"


def format_report(result: WerResult, title: str = "") -> str:
    """The full per-utterance report: a header with the totals, warnings, then one block per utterance."""
    lines = [f"WER report{': ' + title if title else ''}", format_summary({"total": result}), ""]
    lines += [f"WARNING: {warning}" for warning in result.warnings]
    if result.warnings:
        lines.append("")
    blocks = [format_alignment(tag, alignment) for tag, alignment in result.alignments.items()]
    return "\n".join(lines) + "\n" + "\n".join(blocks)


def format_summary(results: Mapping[str, WerResult]) -> str:
    """A fixed-width table, one row per named result: sentences, words, Corr/Sub/Del/Ins/Err/S.Err in %."""
    header = ("system", "#snt", "#wrd", "corr", "sub", "del", "ins", "err", "s.err", "WER")
    rows = [header]
    for name, r in results.items():
        n = max(r.num_ref_words, 1)
        rows.append(
            (
                name,
                str(r.num_sentences),
                str(r.num_ref_words),
                f"{100 * r.num_correct / n:.2f}",
                f"{100 * r.num_substitutions / n:.2f}",
                f"{100 * r.num_deletions / n:.2f}",
                f"{100 * r.num_insertions / n:.2f}",
                str(r.num_errors),
                f"{100 * r.num_sentence_errors / max(r.num_sentences, 1):.1f}",
                f"{r.wer:.2f}" if r.num_ref_words else "n/a",
            )
        )
    widths = [max(len(row[k]) for row in rows) for k in range(len(header))]
    lines = []
    for row in rows:
        cells = [
            cell.ljust(w) if k == 0 else cell.rjust(w)
            for k, (cell, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append(" | ".join(cells))
    return "\n".join(lines)

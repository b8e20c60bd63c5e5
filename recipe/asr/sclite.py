"""NIST sclite (SCTK) scoring: references as STM, hypotheses as CTM, sclite's reports and totals.

i6 setups score with the real sclite (i6_core ``ScliteJob``: ``sclite -r <stm> stm -h <ctm> ctm -o all
-o dtl ... -n sclite -O <dir>``, totals read from ``sclite.dtl``). Our texts have no times, so each
utterance is its own STM "file" (the sequence tag, channel 1) with one segment from 0 to
``SEGMENT_END`` seconds, and hypothesis word k gets the CTM time k..k+1 s inside it; without ``-T``
sclite aligns the words of a segment by dynamic programming, ignoring the times.

We call ``sclite -r ref.stm stm -h hyp.ctm ctm -e utf-8 -s -o all -o dtl -n sclite -O <dir>``:
``-s`` (case-sensitive) because our WER compares words exactly, ``-e utf-8`` for non-ASCII words.
Reports: ``sclite.sys`` (summary per utterance and total), ``sclite.pra`` (per-utterance alignments),
``sclite.dtl`` (totals, confusion pairs, insertions, deletions), ``sclite.raw``.

sclite's alignment minimises weighted errors (substitution 4, insertion 3, deletion 3), ours
(:mod:`recipe.asr.wer`) the number of errors; on rare word sequences sclite's alignment has one error
more than the minimum (``tests/eval/test_sclite.py`` has an example), never fewer. On real n-best
lists the two agree (tested on the demo recogniser's lists).
"""

import os
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence

SEGMENT_END = 999999.0  # seconds; an utterance may have up to this many hypothesis words
DEBIAN_SCLITE = "/usr/lib/sctk/bin/sclite"  # Debian's sctk package does not put sclite on the PATH


def find_sclite(sctk_path: str | None = None) -> str:
    """The sclite binary: in ``sctk_path`` if given, else on the PATH, else Debian's ``sctk`` location."""
    if sctk_path is not None:
        candidates = [os.path.join(sctk_path, "sclite")]
    else:
        candidates = [c for c in (shutil.which("sclite"), DEBIAN_SCLITE) if c]
    for candidate in candidates:
        if os.access(candidate, os.X_OK):
            return candidate
    raise FileNotFoundError(
        f"sclite not found (tried {candidates or 'the PATH'}); install Debian's sctk package"
        " (scripts/setup.sh does) or pass the SCTK bin directory"
    )


def _check_tags(tags: Sequence[str]) -> None:
    for tag in tags:
        if not tag or any(c.isspace() for c in tag) or tag.startswith(";;"):
            raise ValueError(f"sequence tag {tag!r} cannot be an STM/CTM file id (empty, whitespace or ';;')")


def format_stm(references: Mapping[str, str]) -> str:
    """The references as STM, one segment per tag, sorted by tag (sclite wants STM and CTM in one order)."""
    _check_tags(list(references))
    lines = [";; references, one STM file (the sequence tag) per utterance, channel 1, untimed"]
    for tag in sorted(references):
        text = " ".join(references[tag].split())
        lines.append(f"{tag} 1 {tag} 0.000 {SEGMENT_END:.3f} {text}".rstrip())
    return "\n".join(lines) + "\n"


def format_ctm(hypotheses: Mapping[str, str | None]) -> str:
    """The hypotheses as CTM, word k of an utterance at k..k+1 s, sorted by tag (None/empty: no lines)."""
    _check_tags(list(hypotheses))
    lines = [";; hypotheses, word k at k..k+1 s (untimed text)"]
    for tag in sorted(hypotheses):
        words = (hypotheses[tag] or "").split()
        if len(words) > SEGMENT_END:
            raise ValueError(f"{tag}: {len(words)} words do not fit into one STM segment")
        lines += [f"{tag} 1 {k:.3f} 1.000 {word}" for k, word in enumerate(words)]
    return "\n".join(lines) + "\n"


def sclite_command(
    sclite: str, stm: str, ctm: str, output_dir: str, extra_args: Sequence[str] = ()
) -> list[str]:
    """The sclite call of this project (module docstring)."""
    return [
        sclite,
        "-r",
        stm,
        "stm",
        "-h",
        ctm,
        "ctm",
        "-e",
        "utf-8",
        "-s",
        "-o",
        "all",
        "-o",
        "dtl",
        "-n",
        "sclite",
        "-O",
        output_dir,
        *extra_args,
    ]


def run_sclite(stm: str, ctm: str, output_dir: str, *, sctk_path: str | None = None, extra_args=()) -> dict:
    """Run sclite; returns the totals of ``sclite.dtl`` (:func:`parse_dtl`). Raises RuntimeError with
    sclite's output if it fails."""
    command = sclite_command(find_sclite(sctk_path), stm, ctm, output_dir, extra_args)
    proc = subprocess.run(command, capture_output=True, text=True, errors="replace")
    dtl = os.path.join(output_dir, "sclite.dtl")
    if proc.returncode != 0 or not os.path.exists(dtl):
        raise RuntimeError(f"{' '.join(command)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    with open(dtl, encoding="utf-8", errors="replace") as f:
        return parse_dtl(f.read(), dtl)


_DTL_COUNTS = {
    "errors": r"Percent Total Error\s*=\s*\S+%\s*\(\s*(\d+)\)",
    "correct": r"Percent Correct\s*=\s*\S+%\s*\(\s*(\d+)\)",
    "substitutions": r"Percent Substitution\s*=\s*\S+%\s*\(\s*(\d+)\)",
    "deletions": r"Percent Deletions\s*=\s*\S+%\s*\(\s*(\d+)\)",
    "insertions": r"Percent Insertions\s*=\s*\S+%\s*\(\s*(\d+)\)",
    "ref_words": r"Ref\. words\s*=\s*\(\s*(\d+)\)",
    "hyp_words": r"Hyp\. words\s*=\s*\(\s*(\d+)\)",
    "sentences": r"^\s*sentences\s+(\d+)",
}


def parse_dtl(text: str, source: str = "sclite.dtl") -> dict[str, int | float]:
    """Word counts of sclite's ``.dtl`` report (errors, correct, substitutions, deletions, insertions,
    ref_words, hyp_words, sentences) and ``wer`` = 100 * errors / ref_words (recomputed from the counts,
    since sclite prints one decimal)."""
    counts: dict[str, int | float] = {}
    for key, pattern in _DTL_COUNTS.items():
        match = re.search(pattern, text, flags=re.MULTILINE)
        if match is None:
            raise ValueError(f"{source}: no {key!r} line (pattern {pattern!r}); not an sclite .dtl report?")
        counts[key] = int(match.group(1))
    counts["wer"] = 100.0 * counts["errors"] / counts["ref_words"] if counts["ref_words"] else float("nan")
    return counts


def parse_pra_scores(text: str) -> dict[str, tuple[int, int, int, int]]:
    """Per-utterance ``(#C, #S, #D, #I)`` of sclite's ``.pra`` report, keyed by STM file (our tag)."""
    result = {}
    pattern = r"^File: (\S+)\nChannel: \S+\nScores: \(#C #S #D #I\) (\d+) (\d+) (\d+) (\d+)"
    for match in re.finditer(pattern, text, flags=re.MULTILINE):
        result[match.group(1)] = tuple(int(match.group(k)) for k in range(2, 6))
    return result

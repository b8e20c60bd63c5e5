"""Text corpora as ``{seq_tag: text}`` dicts: the King James Bible, user text files, train/dev/test split.

Sequence tags: ``kjv/Ge1:1`` (KJV verse reference as printed by ``bible``), ``<name>/line-<n>`` for a
user text file (``n`` = 1-based line number in that file). Texts are normalized with
:func:`recipe.data.text_normalization.normalize_text`; sentences that normalize to nothing are dropped.
"""

import hashlib
import os
import re
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from recipe.data.text_dict import TextFormatError, read_lines
from recipe.data.text_normalization import normalize_text

KJV_ALL_VERSES = "Gen1:1-Rev22:21"
_BIBLE_LINE = re.compile(r"^(\S+\d+:\d+) (.*)$")


def parse_bible_output(lines: Iterable[str], *, source: str, lowercase: bool = True) -> dict[str, str]:
    """Parse ``bible -f`` output (``Ge1:1 In the beginning ...``, a verse per line) to ``{kjv/Ge1:1: text}``.

    ``source`` names the origin in error messages. Blank lines are skipped; any other line that is not
    ``<ref> <text>`` raises ValueError with its line number.
    """
    corpus: dict[str, str] = {}
    for line_number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        match = _BIBLE_LINE.match(line.rstrip("\n"))
        if not match:
            raise ValueError(
                f"{source}:{line_number}: expected '<book><chapter>:<verse> <text>', got {line!r}"
            )
        tag = "kjv/" + match.group(1)
        if tag in corpus:
            raise ValueError(f"{source}:{line_number}: verse {match.group(1)} appears twice")
        text = normalize_text(match.group(2), lowercase=lowercase)
        if text:
            corpus[tag] = text
    if not corpus:
        raise ValueError(f"{source}: no verses found (empty corpus)")
    return corpus


def kjv_corpus(
    *, lowercase: bool = True, verses: str = KJV_ALL_VERSES, bible_exe: str = "bible"
) -> dict[str, str]:
    """The King James Bible from the Debian package ``bible-kjv``: ``{kjv/Ge1:1: text}`` in Bible order.

    Runs ``bible -f <verses>`` (the full range gives 31,102 verses).
    """
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    try:
        proc = subprocess.run(
            [bible_exe, "-f", verses], capture_output=True, check=True, env=env, text=True, encoding="utf-8"
        )
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{bible_exe!r} not found; install the Debian package bible-kjv") from exc
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(
            f"'{bible_exe} -f {verses}' failed with exit code {exc.returncode}: {exc.stderr}"
        ) from exc
    return parse_bible_output(
        proc.stdout.splitlines(), source=f"output of '{bible_exe} -f {verses}'", lowercase=lowercase
    )


def text_file_corpus(
    path: str | os.PathLike,
    name: str,
    *,
    lowercase: bool = True,
    normalize: bool = True,
    encoding: str = "utf-8",
) -> dict[str, str]:
    """One sentence per line of a text file (optionally gzipped) as ``{<name>/line-<n>: text}``.

    With ``normalize=False`` lines are only stripped of surrounding whitespace. Lines that end up empty
    are skipped; a file without any sentence raises ValueError, as do binary or wrongly encoded files
    (naming the line).
    """
    if not name or "/" in name:
        raise ValueError(f"corpus name must be non-empty and contain no '/', got {name!r}")
    corpus: dict[str, str] = {}
    for line_number, line in read_lines(path, encoding=encoding):
        text = normalize_text(line, lowercase=lowercase) if normalize else line.strip()
        if text:
            corpus[f"{name}/line-{line_number}"] = text
    if not corpus:
        raise TextFormatError(f"{path}: no non-empty sentence in the file (empty corpus)")
    return corpus


def split_fraction(tag: str, seed: str = "") -> float:
    """A stable pseudo-random number in [0, 1) for a tag: the first 8 bytes of sha256(seed + tag) / 2**64."""
    return int.from_bytes(hashlib.sha256((seed + tag).encode("utf-8")).digest()[:8], "big") / 2**64


@dataclass
class CorpusSplit:
    """Result of :func:`split_corpus`; each part keeps the corpus order."""

    train: dict[str, str]
    dev: dict[str, str]
    test: dict[str, str]
    excluded: list[str]  # tags that would have been train but were excluded


def split_corpus(
    corpus: Mapping[str, str],
    *,
    dev_fraction: float,
    test_fraction: float,
    exclude_tags: Iterable[str] = (),
    seed: str = "",
    source: str = "corpus",
) -> CorpusSplit:
    """Split by tag: ``f = split_fraction(tag, seed)``; dev if ``f < dev_fraction``, test if
    ``f < dev_fraction + test_fraction``, else train.

    Membership depends only on the tag (not on corpus order or size). ``exclude_tags`` are removed
    from train only, so dev/test do not change with the exclude list; every exclude tag must exist in
    the corpus (a tag-format mismatch would otherwise silently leak held-out text into training).
    ``source`` names the corpus in errors. Raises ValueError for bad fractions, an empty dev
    (or train, or test when ``test_fraction > 0``) part, and unknown exclude tags.
    """
    if not 0 < dev_fraction < 1 or not 0 <= test_fraction < 1 or dev_fraction + test_fraction >= 1:
        raise ValueError(
            f"need 0 < dev_fraction < 1, 0 <= test_fraction < 1 and a sum < 1,"
            f" got dev_fraction={dev_fraction}, test_fraction={test_fraction}"
        )
    exclude = set(exclude_tags)
    unknown = sorted(exclude.difference(corpus))
    if unknown:
        raise ValueError(
            f"{len(unknown)} of {len(exclude)} exclude tags are not in {source}, e.g. {unknown[:3]};"
            f" corpus tags look like {next(iter(corpus), None)!r}"
        )
    split = CorpusSplit(train={}, dev={}, test={}, excluded=[])
    for tag, text in corpus.items():
        fraction = split_fraction(tag, seed)
        if fraction < dev_fraction:
            split.dev[tag] = text
        elif fraction < dev_fraction + test_fraction:
            split.test[tag] = text
        elif tag in exclude:
            split.excluded.append(tag)
        else:
            split.train[tag] = text
    for part, fraction_name in (("dev", "dev_fraction"), ("test", "test_fraction"), ("train", None)):
        if getattr(split, part) or (part == "test" and test_fraction == 0):
            continue
        hint = f"; increase {fraction_name}" if fraction_name else ""
        raise ValueError(
            f"the split of {source} ({len(corpus)} sequences, dev_fraction={dev_fraction},"
            f" test_fraction={test_fraction}, {len(exclude)} excluded) leaves {part} empty{hint}"
        )
    return split

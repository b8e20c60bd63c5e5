"""Reading and writing RETURNN search output, and a resumable per-utterance score store.

*Search output* (RETURNN ``search_output_file``, i6_core ``returnn/search.py``): a Python dict literal,
optionally gzipped, ``{seq_tag: [(score, "text"), ...]}`` (an n-best list; scores are log-probabilities,
higher is better) or ``{seq_tag: "text"}`` (a single hypothesis). RETURNN writes one entry per line, i6
jobs also spread an n-best list over several lines; both parse. Like RETURNN (which ``eval``s the file
with ``nan`` and ``inf`` defined) the bare names ``nan`` and ``inf`` are accepted as scores; nothing
else is evaluated (no calls, no other names). Our writer puts one entry per line::

    {
    'kjv/Ge1:1': [(-12.5, 'in the beginning'), (-13.0, 'in the beginnings')],
    }

*Score checkpoint* (:class:`NBestScoreCheckpoint`): one record per line, ``(tag, fingerprint, [score,
...])`` as a Python literal, appended and flushed per utterance, so an interrupted rescoring resumes
without recomputing finished utterances. ``fingerprint`` identifies the hypothesis texts the scores
belong to; records whose texts changed since are recomputed.

Every reading error names the file and line (``path:line: ...``).
"""

import ast
import hashlib
import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from recipe.data.text_dict import TextFormatError, open_for_writing, read_lines

PathLike = str | os.PathLike
NBestList = list[tuple[float, str]]
SearchOutput = dict[str, NBestList | str]

_NAMED_FLOATS = {"nan": math.nan, "inf": math.inf}


class SearchOutputError(TextFormatError):
    """A search-output or checkpoint file that cannot be read; the message names file and line."""


def _literal(node: ast.AST, where: Callable[[ast.AST], str]) -> Any:
    """Evaluate a literal node: str, int, float, tuple, list, ``nan``/``inf`` and unary +/-."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str | int | float):
        return node.value
    if isinstance(node, ast.Name) and node.id in _NAMED_FLOATS:
        return _NAMED_FLOATS[node.id]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        value = _literal(node.operand, where)
        if isinstance(value, int | float):
            return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.Tuple | ast.List):
        return [_literal(element, where) for element in node.elts]
    raise SearchOutputError(f"{where(node)}: not a literal: {ast.unparse(node)[:80]!r}")


def _is_score(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def parse_search_output(text: str, source: str) -> SearchOutput:
    """Parse search-output text (see module docstring); ``source`` names it in error messages.

    Values are ``[(float score, text), ...]`` or a ``str``. Raises SearchOutputError (naming
    ``source`` and the line) for syntax errors, a top level that is not a dict, non-string or duplicate
    tags, entries that are neither a string nor a list of ``(score, text)`` pairs, and non-numeric scores.
    """
    try:
        tree = ast.parse(text, filename=str(source), mode="eval")
    except SyntaxError as exc:
        raise SearchOutputError(
            f"{source}:{exc.lineno}: not a Python dict literal ({exc.msg});"
            f" line: {(exc.text or '').strip()[:80]!r}"
        ) from exc

    def where(node: ast.AST) -> str:
        return f"{source}:{getattr(node, 'lineno', '?')}"

    if not isinstance(tree.body, ast.Dict):
        raise SearchOutputError(f"{where(tree.body)}: expected a dict {{seq_tag: [(score, text), ...]}}")
    result: SearchOutput = {}
    for key_node, value_node in zip(tree.body.keys, tree.body.values, strict=True):
        if key_node is None:
            raise SearchOutputError(f"{where(value_node)}: '**' unpacking is not allowed in search output")
        tag = _literal(key_node, where)
        if not isinstance(tag, str):
            raise SearchOutputError(f"{where(key_node)}: sequence tag must be a string, got {tag!r}")
        if tag in result:
            raise SearchOutputError(f"{where(key_node)}: duplicate sequence tag {tag!r}")
        value = _literal(value_node, where)
        if isinstance(value, str):
            result[tag] = value
            continue
        if not isinstance(value, list):
            raise SearchOutputError(
                f"{where(value_node)}: tag {tag!r}: expected a text or a list of (score, text), got {value!r}"
            )
        hyps: NBestList = []
        for index, hyp in enumerate(value):
            what = f"{where(value_node)}: tag {tag!r}, hypothesis {index}"
            if not (isinstance(hyp, list) and len(hyp) == 2 and isinstance(hyp[1], str)):
                raise SearchOutputError(f"{what}: expected (score, text), got {hyp!r}")
            if not _is_score(hyp[0]):
                raise SearchOutputError(f"{what}: score must be a number, got {hyp[0]!r}")
            hyps.append((float(hyp[0]), hyp[1]))
        result[tag] = hyps
    return result


def read_search_output(path: PathLike) -> SearchOutput:
    """Read a search-output file (optionally gzipped); see :func:`parse_search_output`.

    Undecodable or binary files raise TextFormatError (the base class of SearchOutputError), naming the line.
    """
    text = "\n".join(line for _, line in read_lines(path))
    if not text.strip():
        raise SearchOutputError(f"{path}: empty file, expected a dict {{seq_tag: [(score, text), ...]}}")
    return parse_search_output(text, str(path))


def read_nbest(path: PathLike) -> dict[str, NBestList]:
    """Read n-best lists; a single-text entry ``tag: "text"`` becomes the one-entry list ``[(0.0, text)]``."""
    return {
        tag: [(0.0, value)] if isinstance(value, str) else value
        for tag, value in read_search_output(path).items()
    }


def best_text(hyps: NBestList | str) -> str | None:
    """The text with the highest score (the first of equal ones; NaN ranks lowest), or None if empty.

    This is i6_core's ``SearchTakeBestJob``; a plain string is returned as it is.
    """
    if isinstance(hyps, str):
        return hyps
    best: tuple[float, str] | None = None
    for score, text in hyps:
        key = -math.inf if math.isnan(score) else score
        if best is None or key > best[0]:
            best = (key, text)
    return None if best is None else best[1]


def _format_entry(tag: str, value: Sequence[tuple[float, str]] | str) -> str:
    if not isinstance(tag, str):
        raise TypeError(f"sequence tag must be a string, got {tag!r}")
    if isinstance(value, str):
        return f"{tag!r}: {value!r},\n"
    parts = []
    for score, text in value:
        if not isinstance(text, str) or isinstance(score, str | bool):
            raise TypeError(f"tag {tag!r}: hypotheses must be (score, text), got {(score, text)!r}")
        parts.append(f"({float(score)!r}, {text!r})")
    return f"{tag!r}: [{', '.join(parts)}],\n"


def _temporary_sibling(path: PathLike) -> str:
    """A temporary name next to ``path`` that keeps its suffix (so ``.gz`` still means gzip)."""
    directory, name = os.path.split(os.fspath(path))
    return os.path.join(directory, f".tmp-{os.getpid()}-{name}")


def write_search_output(path: PathLike, data: Mapping[str, Sequence[tuple[float, str]] | str]) -> None:
    """Write search output atomically (temporary file + rename); gzipped if ``path`` ends in ``.gz``.

    One entry per line; scores are written with ``repr(float)``, so they read back bit-exactly (NaN and
    infinities as ``nan``/``inf``). Readers never see a half-written file.
    """
    tmp = _temporary_sibling(path)
    try:
        with open_for_writing(tmp) as f:
            f.write(b"{\n")
            for tag, value in data.items():
                f.write(_format_entry(tag, value).encode("utf-8"))
            f.write(b"}\n")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def texts_fingerprint(texts: Sequence[str]) -> str:
    """First 16 hex digits of sha256 over the texts joined by ``\\n`` (plus their count)."""
    return hashlib.sha256(f"{len(texts)}\n".encode() + "\n".join(texts).encode("utf-8")).hexdigest()[:16]


class NBestScoreCheckpoint:
    """Append-only on-disk store of per-utterance score lists (format in the module docstring).

    Opening an existing file reloads its records. A last line without newline (a write torn by a
    crash) is dropped and cut off the file; any other unparsable line raises SearchOutputError with
    file and line. A later record for the same tag replaces an earlier one. Use as a context manager
    or call :meth:`close`.
    """

    def __init__(self, path: PathLike) -> None:
        self.path = os.fspath(path)
        self._records: dict[str, tuple[str, list[float]]] = {}
        self.num_dropped_torn_lines = 0
        if os.path.exists(self.path):
            self._load()
        self._file = open(self.path, "a", encoding="utf-8")

    def _load(self) -> None:
        with open(self.path, "rb") as f:
            content = f.read()
        complete_end = content.rfind(b"\n") + 1
        if complete_end < len(content):
            self.num_dropped_torn_lines = 1
            with open(self.path, "r+b") as f:
                f.truncate(complete_end)
        for line_number, raw_line in enumerate(content[:complete_end].splitlines(), start=1):
            where = f"{self.path}:{line_number}"
            try:
                line = raw_line.decode("utf-8")
                node = ast.parse(line, mode="eval").body
            except (UnicodeDecodeError, SyntaxError) as exc:
                raise SearchOutputError(f"{where}: corrupt checkpoint record: {exc}") from exc
            record = _literal(node, lambda _node, w=where: w)
            if not (
                isinstance(record, list)
                and len(record) == 3
                and isinstance(record[0], str)
                and isinstance(record[1], str)
                and isinstance(record[2], list)
                and all(_is_score(s) for s in record[2])
            ):
                raise SearchOutputError(
                    f"{where}: expected (tag, fingerprint, [score, ...]), got {line[:80]!r}"
                )
            self._records[record[0]] = (record[1], [float(s) for s in record[2]])

    def get(self, tag: str, texts: Sequence[str]) -> list[float] | None:
        """Stored scores for ``tag`` if they were computed for exactly these ``texts``, else None."""
        record = self._records.get(tag)
        if record is None or record[0] != texts_fingerprint(texts) or len(record[1]) != len(texts):
            return None
        return list(record[1])

    def add(self, tag: str, texts: Sequence[str], scores: Sequence[float]) -> None:
        """Append and flush the scores of one utterance (one score per text)."""
        if len(scores) != len(texts):
            raise ValueError(f"tag {tag!r}: {len(scores)} scores for {len(texts)} hypotheses")
        values = [float(s) for s in scores]
        fingerprint = texts_fingerprint(texts)
        self._file.write(repr((tag, fingerprint, values)) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())
        self._records[tag] = (fingerprint, values)

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[str]:
        return iter(self._records)

    def close(self) -> None:
        """Close the underlying file."""
        self._file.close()

    def __enter__(self) -> "NBestScoreCheckpoint":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def nbest_with_scores(
    nbest: Mapping[str, Sequence[tuple[float, str]]], scores: Mapping[str, Sequence[float]]
) -> dict[str, NBestList]:
    """Replace the scores of each n-best list by ``scores[tag]`` (same order), e.g. to write LM scores.

    Raises ValueError naming the tag for a missing tag or a length mismatch.
    """
    result: dict[str, NBestList] = {}
    for tag, hyps in nbest.items():
        if tag not in scores:
            raise ValueError(f"no scores for tag {tag!r}")
        if len(scores[tag]) != len(hyps):
            raise ValueError(f"tag {tag!r}: {len(scores[tag])} scores for {len(hyps)} hypotheses")
        result[tag] = [(float(s), text) for s, (_, text) in zip(scores[tag], hyps, strict=True)]
    return result

"""Reading and writing the two text formats passed between data jobs.

*Text dictionary* (i6 format, as written by i6_core's ``CorpusToTextDictJob``): a Python dict literal
``{seq_tag: text}`` with one entry per line, optionally gzipped::

    {
    'kjv/Ge1:1': 'in the beginning god created the heaven and the earth',
    ...
    }

*Text lines*: one sentence per line, UTF-8, optionally gzipped (what SentencePiece and RETURNN's
``LmDataset`` read).

Files are gzipped when the name ends in ``.gz``; the reader detects gzip by its magic bytes instead.
Gzip output is byte-deterministic (no file name or time stamp in the header). Every reading error names
the file and the line (``path:line: ...``).
"""

import ast
import contextlib
import gzip
import os
from collections.abc import Iterable, Iterator, Mapping
from typing import IO

PathLike = str | os.PathLike

_GZIP_MAGIC = b"\x1f\x8b"


class TextFormatError(ValueError):
    """A text file that cannot be read as the expected format; the message names file and line."""


@contextlib.contextmanager
def _open_binary_for_reading(path: PathLike) -> Iterator[IO[bytes]]:
    """Open ``path`` for reading bytes, transparently gunzipping it when it starts with the gzip magic."""
    with open(path, "rb") as raw:
        if raw.peek(2)[:2] == _GZIP_MAGIC:
            with gzip.GzipFile(fileobj=raw, mode="rb") as f:
                yield f
        else:
            yield raw


@contextlib.contextmanager
def open_for_writing(path: PathLike) -> Iterator[IO[bytes]]:
    """Open ``path`` for writing bytes; gzip-compressed (deterministically) when the name ends in ``.gz``."""
    with open(path, "wb") as raw:
        if os.fspath(path).endswith(".gz"):
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as f:
                yield f
        else:
            yield raw


def read_lines(path: PathLike, *, encoding: str = "utf-8") -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, line)`` (1-based, line without its newline) of a text file, optionally gzipped.

    Raises TextFormatError naming file and line for NUL bytes (a binary file), undecodable bytes,
    or a broken gzip stream.
    """
    with _open_binary_for_reading(path) as f:
        line_number = 0
        try:
            for raw_line in f:
                line_number += 1
                if b"\0" in raw_line:
                    raise TextFormatError(f"{path}:{line_number}: NUL bytes, looks like a binary file")
                try:
                    line = raw_line.decode(encoding)
                except UnicodeDecodeError as exc:
                    raise TextFormatError(
                        f"{path}:{line_number}: not valid {encoding} (byte {raw_line[exc.start]:#04x}"
                        f" at column {exc.start + 1}); convert the file or pass the right encoding"
                    ) from exc
                yield line_number, line.rstrip("\r\n")
        except (OSError, EOFError) as exc:
            raise TextFormatError(f"{path}:{line_number + 1}: cannot read: {exc}") from exc


def read_text_lines(path: PathLike) -> list[str]:
    """All lines of a text-lines file, without newlines."""
    return [line for _, line in read_lines(path)]


def write_text_lines(path: PathLike, lines: Iterable[str]) -> int:
    """Write one sentence per line (gzipped if ``path`` ends in ``.gz``); returns the number of lines.

    A sentence containing a line break would silently become two sequences, so it raises ValueError.
    """
    count = 0
    with open_for_writing(path) as f:
        for line in lines:
            if "\n" in line or "\r" in line:
                raise ValueError(f"{path}: sentence {count + 1} contains a line break: {line!r}")
            f.write(line.encode("utf-8") + b"\n")
            count += 1
    return count


def write_text_dict(path: PathLike, text_dict: Mapping[str, str]) -> None:
    """Write ``{seq_tag: text}`` in the i6 format: ``{``, one ``'tag': 'text',`` line per entry, ``}``."""
    with open_for_writing(path) as f:
        f.write(b"{\n")
        for tag, text in text_dict.items():
            f.write(f"{tag!r}: {text!r},\n".encode())
        f.write(b"}\n")


def read_text_dict(path: PathLike) -> dict[str, str]:
    """Read an i6 text dictionary ``{seq_tag: text}``, parsing it line by line.

    Accepted layout: an opening ``{`` (alone or followed by entries), entries ``'tag': 'text',``
    (several per line allowed), a closing ``}``. Tags and texts must be strings and tags unique.
    Raises TextFormatError naming file and line otherwise, and for an empty file.
    """
    result: dict[str, str] = {}
    state = "before"  # -> "inside" after "{" -> "after" after "}"
    for line_number, line in read_lines(path):
        body = line.strip()
        if not body:
            continue
        where = f"{path}:{line_number}"
        if state == "after":
            raise TextFormatError(f"{where}: content after the closing '}}' of the text dict")
        if state == "before":
            if not body.startswith("{"):
                raise TextFormatError(f"{where}: a text dict must start with '{{', found {body[:60]!r}")
            body = body[1:].strip()
            state = "inside"
        if body.endswith("}"):
            body = body[:-1].strip()
            state = "after"
        body = body.rstrip(",").strip()
        if not body:
            continue
        try:
            entries = ast.literal_eval("{" + body + "}")
        except (SyntaxError, ValueError) as exc:
            raise TextFormatError(f"{where}: cannot parse text dict entry {body[:80]!r}: {exc}") from exc
        if not isinstance(entries, dict):
            raise TextFormatError(f"{where}: expected 'tag': 'text' entries, found {body[:80]!r}")
        for tag, text in entries.items():
            if not isinstance(tag, str) or not isinstance(text, str):
                raise TextFormatError(
                    f"{where}: tag and text must be strings, got {type(tag).__name__}: {type(text).__name__}"
                )
            if tag in result:
                raise TextFormatError(f"{where}: duplicate sequence tag {tag!r}")
            result[tag] = text
    if state == "before":
        raise TextFormatError(f"{path}: empty file, expected a text dict {{seq_tag: text}}")
    if state == "inside":
        raise TextFormatError(f"{path}: missing the closing '}}' of the text dict (truncated file?)")
    return result


def read_seq_tags(path: PathLike) -> list[str]:
    """Sequence tags from a text dict (its keys) or a tag list (one tag per line, blank lines skipped)."""
    with _open_binary_for_reading(path) as f:
        head = f.read(4096)
    if head.lstrip().startswith(b"{"):
        return list(read_text_dict(path))
    return [line.strip() for _, line in read_lines(path) if line.strip()]

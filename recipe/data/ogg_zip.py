"""Text-only ogg-zip files, as RETURNN's ``OggZipDataset`` reads them with ``audio=None``.

``<name>.zip`` (``name`` = file name without ``.zip``, e.g. ``out.ogg`` for ``out.ogg.zip``) holds one
member ``<name>.txt``: a Python list literal with one dict per line::

    [
    {'duration': 0.355, 'seq_name': 'kjv/Ge3:20', 'text': "and adam called his wife's name eve"},
    ...
    ]

There is no audio, so ``file`` is omitted and ``duration`` is a pseudo-duration of 10 ms per character,
``(characters + 0.5) / 100``: RETURNN sorts by ``int(duration * 100)``, which is then exactly the text
length in characters (the 0.5 keeps float rounding from flooring it one lower). The zip is
byte-deterministic (fixed time stamps).
"""

import os
import zipfile
from collections.abc import Mapping

_FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def ogg_zip_content_name(zip_path: str | os.PathLike) -> str:
    """Internal name RETURNN derives from the zip path: the base name without ``.zip``."""
    name, ext = os.path.splitext(os.path.basename(os.fspath(zip_path)))
    if ext != ".zip":
        raise ValueError(f"{zip_path}: an ogg zip file name must end in .zip")
    return name


def write_text_ogg_zip(text_dict: Mapping[str, str], zip_path: str | os.PathLike) -> None:
    """Write ``{seq_tag: text}`` as a text-only ogg zip (see module docstring); raises ValueError if empty."""
    if not text_dict:
        raise ValueError(f"{zip_path}: no sequences to write (RETURNN's OggZipDataset rejects an empty zip)")
    name = ogg_zip_content_name(zip_path)
    lines = ["["]
    for tag, text in text_dict.items():
        entry = {"duration": (len(text) + 0.5) / 100, "seq_name": tag, "text": text}
        lines.append(repr(entry) + ",")
    lines.append("]")
    info = zipfile.ZipInfo(f"{name}.txt", date_time=_FIXED_ZIP_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    with zipfile.ZipFile(zip_path, "w") as zf:
        zf.writestr(info, ("\n".join(lines) + "\n").encode("utf-8"))

"""Downloading a file by URL (any scheme urllib supports, including ``file://``) with a sha256 check."""

import hashlib
import os
import urllib.error
import urllib.request


class ChecksumError(ValueError):
    """The downloaded bytes do not have the expected sha256."""


def sha256_of_file(path: str | os.PathLike, *, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def download(url: str, target: str | os.PathLike, *, sha256: str | None, chunk_size: int = 1 << 20) -> str:
    """Download ``url`` to ``target`` and return the hex sha256 of its bytes.

    The data goes to ``<target>.part`` first and is renamed only after the check, so ``target`` never
    holds a partial or wrong file. ``sha256=None`` skips the check (the returned digest can then be
    pinned). Raises ChecksumError naming URL, expected and actual digest, or OSError naming the URL.
    """
    partial = os.fspath(target) + ".part"
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url) as response, open(partial, "wb") as out:
            while chunk := response.read(chunk_size):
                digest.update(chunk)
                out.write(chunk)
    except (urllib.error.URLError, OSError) as exc:
        if os.path.exists(partial):
            os.remove(partial)
        raise OSError(f"download of {url} failed: {exc}") from exc
    actual = digest.hexdigest()
    if sha256 is not None and actual != sha256.lower():
        os.remove(partial)
        raise ChecksumError(f"checksum mismatch for {url}: expected sha256 {sha256.lower()}, got {actual}")
    os.replace(partial, target)
    return actual

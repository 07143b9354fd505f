"""The hash of a file, as large_files.yml and a packaged zip's ``.sha256`` record it."""

from __future__ import annotations

import hashlib
import os

__all__ = ["file_digest"]


def file_digest(path: str | os.PathLike, hash_type: str = "sha256") -> str:
    """Hex digest of a file (``hash_type``: a ``hashlib`` algorithm, as in large_files.yml), read in 1 MiB pieces."""
    digest = hashlib.new(hash_type)
    with open(path, "rb") as stream:
        for piece in iter(lambda: stream.read(1 << 20), b""):
            digest.update(piece)
    return digest.hexdigest()

"""Writing a file so that its name never points at a half-written file.

The content goes to a temporary file in the same folder (``.<name>.<random>.tmp``), is flushed and fsynced, and
is then renamed over ``path`` (``os.replace`` is atomic on POSIX and Windows): at any instant ``path`` holds the
previous complete file or the new one. A write that fails or is interrupted leaves ``path`` untouched; only a
process killed outright can leave the temporary file behind, never a truncated ``path``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import torch

__all__ = ["atomic_torch_save", "atomic_write"]


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> Path:
    """Call ``write(stream)`` on a temporary binary file beside ``path``, fsync it, rename it onto ``path``.

    The parent folder is created; the file is made readable by others (0644), like any output. Returns ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(tmp_name, 0o644)  # mkstemp makes it owner-only
        os.replace(tmp_name, path)
    except BaseException:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
        raise
    return path


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save(obj)`` to ``path`` through :func:`atomic_write`."""
    atomic_write(path, lambda stream: torch.save(obj, stream))

"""Writing a file so that its name never points at a half-written file.

The content goes to a temporary file in the same folder (``.<name>.<pid>.<random>.tmp``: the writing process's
id makes each temporary file recognisably one run's), is flushed and fsynced, and is then renamed over ``path``
(``os.replace`` is atomic on POSIX and Windows): at any instant ``path`` holds the previous complete file or the
new one. A write that fails or is interrupted leaves ``path`` untouched; only a
process killed outright can leave the temporary file behind, never a truncated ``path``.
:func:`remove_stale_temporaries` deletes such leftovers, only those of processes no longer running: a run never
deletes the file another run is writing.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import torch

from nnmamba_monai.folder_lock import pid_alive

__all__ = ["atomic_torch_save", "atomic_write", "remove_stale_temporaries", "temporary_prefix"]


def temporary_prefix(path: Path) -> str:
    """The name prefix of this process's temporary files for ``path``: ``.<name>.<pid>.``."""
    return f".{path.name}.{os.getpid()}."


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Delete the temporary files of ``path`` left by processes that no longer run (killed mid-write).

    A temporary file of a running process (another training writing beside us, or this one) is kept, and so is
    any file whose name holds no pid. Returns the deleted files.
    """
    path = Path(path)
    pattern = re.compile(rf"^\.{re.escape(path.name)}\.(\d+)\.[^.]+\.tmp$")
    removed = []
    for candidate in path.parent.glob(f".{path.name}.*.tmp"):
        match = pattern.match(candidate.name)
        if match and int(match.group(1)) != os.getpid() and not pid_alive(int(match.group(1))):
            candidate.unlink(missing_ok=True)
            removed.append(candidate)
    return removed


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> Path:
    """Call ``write(stream)`` on a temporary binary file beside ``path``, fsync it, rename it onto ``path``.

    The parent folder is created; the file is made readable by others (0644), like any output. Returns ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=temporary_prefix(path), suffix=".tmp", dir=path.parent)
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

"""One training per output folder: an exclusive lock on a bundle's checkpoint folder.

Two trainings writing the same ``models/`` folder would silently replace each other's ``last.pt``.
:class:`FolderLock` takes ``fcntl.flock`` on ``<folder>/.train.lock`` and writes the holder's pid, host and start
time into it; a second run finds the lock held and stops with :class:`FolderLockedError` naming the first run.
The kernel drops a flock when its process dies, however it dies, so the lock of a killed run is simply taken
over (the previous holder is logged). A flock that outlives its run (held on by forked data-loader workers of a
killed run) is recognised by the recorded pid no longer running on this host, in this pid namespace (a
container sharing the folder but not the pids never counts as dead), and replaced.
"""

from __future__ import annotations

import atexit
import datetime
import errno
import json
import logging
import os
import socket
from pathlib import Path

from nnmamba_monai.refusal import RefusalError

try:
    import fcntl
except ImportError:  # Windows: no flock; the pid in the file is then the only evidence
    fcntl = None

__all__ = ["LOCK_NAME", "FolderLock", "FolderLockedError", "pid_alive"]

LOCK_NAME = ".train.lock"
logger = logging.getLogger(__name__)
_HELD: dict[Path, FolderLock] = {}  # locks this process holds, by folder


class FolderLockedError(RefusalError, RuntimeError):
    """Another run holds the folder's lock; the message names its pid, host and start time."""


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this host."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _pid_namespace() -> str:
    """This process's pid namespace (Linux), so that a pid is only judged dead where it means the same process."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def _holder_is_gone(holder: dict) -> bool:
    """Whether the lock file's recorded holder is a process that no longer runs (and could be checked)."""
    pid = holder.get("pid")
    same_place = holder.get("host") == socket.gethostname() and holder.get("pid_namespace", "") == _pid_namespace()
    return isinstance(pid, int) and same_place and not pid_alive(pid)


def _describe(holder: dict) -> str:
    if not holder:
        return "another process (no details in the lock file)"
    return f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}, started {holder.get('started', '?')}"


class FolderLock:
    """An exclusive, non-blocking lock on ``folder`` (the file ``folder/.train.lock``).

    Args:
        folder: the output folder (created if missing).
        purpose: what the lock protects, for the messages (e.g. "training").
    """

    def __init__(self, folder: str | os.PathLike, purpose: str = "training") -> None:
        self.folder = Path(folder).absolute()
        self.path = self.folder / LOCK_NAME
        self.purpose = purpose
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def _read_holder(self) -> dict:
        try:
            return json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return {}

    def _try_flock(self, fd: int) -> bool:
        if fcntl is None:
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return False
            raise
        return True

    def acquire(self) -> FolderLock:
        """Take the lock or raise :class:`FolderLockedError`; returns self."""
        if self.held:
            return self
        previous = _HELD.pop(self.folder, None)
        if previous is not None:  # an earlier run in this same process (e.g. one that raised) still holds it
            previous.release()
        self.folder.mkdir(parents=True, exist_ok=True)
        for attempt in range(2):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            if self._try_flock(fd):
                break
            os.close(fd)
            holder = self._read_holder()
            if attempt == 0 and _holder_is_gone(holder):  # flock held on by a dead run's forked children
                logger.warning(f"replacing the lock of {_describe(holder)}, which no longer runs: {self.path}")
                self.path.unlink(missing_ok=True)
                continue
            raise FolderLockedError(
                f"{self.folder} is in use by another {self.purpose} ({_describe(holder)}); wait for it to end or "
                f"give this run another output folder (e.g. --bundle_root or --ckpt_dir); lock file {self.path}"
            )
        holder = self._read_holder()
        if holder.get("pid") not in (None, os.getpid()):
            logger.warning(f"taking over the lock of {_describe(holder)}, which no longer holds it: {self.path}")
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "pid_namespace": _pid_namespace(),
            "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        os.fsync(fd)
        self._fd = fd
        _HELD[self.folder] = self
        atexit.register(self.release)
        return self

    def release(self, *_: object) -> None:
        """Drop the lock (idempotent). The file stays; an unlocked file means a free folder."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        if _HELD.get(self.folder) is self:
            del _HELD[self.folder]
        try:
            os.ftruncate(fd, 0)  # an unlocked, empty file: nobody holds the folder
        except OSError:
            pass
        os.close(fd)  # closing the descriptor releases the flock

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *_: object) -> None:
        self.release()

"""Errors that refuse a run for a reason the user can fix (bad data, a busy output folder, a NaN loss), and the
hook that makes a ``python -m monai.bundle run`` they stop end with one readable line.

MONAI wraps any exception raised inside a ``$`` expression of a config in ``RuntimeError("Failed to evaluate
ConfigExpression ...")``, so the last line a user reads would be MONAI's, with our message somewhere in the
traceback above it. :func:`install_excepthook` (called by the code that raises a :class:`RefusalError` in a bundle
run: the data check, the checkpoint saver and resumer, the non-finite guard) replaces that ending for our own
errors only: the refusal's details (e.g. the data check table), then ``<ErrorName>: <one-line summary>`` as the
last line; the exit status stays 1. Set ``NNMAMBA_MONAI_TRACEBACK=1`` to see the full traceback as well. Other
exceptions go to the previous hook unchanged.
"""

from __future__ import annotations

import os
import sys
import traceback
from types import TracebackType

__all__ = ["RefusalError", "find_refusal", "install_excepthook"]

TRACEBACK_ENV = "NNMAMBA_MONAI_TRACEBACK"


class RefusalError(Exception):
    """An error whose first message line says everything a user needs; lines after it are details (a table).

    ``summary`` is that first line; ``details`` the rest (may be empty).
    """

    @property
    def summary(self) -> str:
        return str(self).split("\n", 1)[0]

    @property
    def details(self) -> str:
        parts = str(self).split("\n", 1)
        return parts[1] if len(parts) > 1 else ""


def find_refusal(error: BaseException | None) -> RefusalError | None:
    """The first :class:`RefusalError` in ``error``'s chain (itself, then its ``__cause__``/``__context__``)."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, RefusalError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def _refusal_hook(previous):
    def hook(kind: type[BaseException], error: BaseException, trace: TracebackType | None) -> None:
        refusal = find_refusal(error)
        if refusal is None:
            previous(kind, error, trace)
            return
        if os.environ.get(TRACEBACK_ENV, "") not in ("", "0"):
            traceback.print_exception(kind, error, trace, file=sys.stderr)
        if refusal.details:
            print(refusal.details, file=sys.stderr)
        print(f"{type(refusal).__name__}: {refusal.summary}", file=sys.stderr)
        sys.stderr.flush()

    hook.is_refusal_hook = True
    return hook


def install_excepthook() -> None:
    """Make an uncaught :class:`RefusalError` (or an error caused by one) end the process with its one-line summary.

    Idempotent; chains to the hook installed before it for every other exception.
    """
    if not getattr(sys.excepthook, "is_refusal_hook", False):
        sys.excepthook = _refusal_hook(sys.excepthook)

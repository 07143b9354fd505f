"""An opt-in stand-in for ``mamba_ssm`` (and ``causal_conv1d``) served by this package's SSM engine.

Code written against the authors' packages - ``from mamba_ssm import Mamba``,
``from mamba_ssm.ops.selective_scan_interface import selective_scan_fn, mamba_inner_fn``,
``from causal_conv1d import causal_conv1d_fn`` - runs unchanged, on CPU or GPU, once the stand-in is enabled:

- in Python, before the first such import: ``import nnmamba_monai.mamba_ssm_compat as compat; compat.install()``;
- for a whole program, without touching it: ``python -m nnmamba_monai.mamba_ssm_compat script.py [args]``
  (or ``-m package.module [args]``), which enables it and runs the program as ``python`` would.

It never shadows a real package: :func:`install` adds an import finder at the *end* of ``sys.meta_path``, so
Python's own finders are asked first and an installed ``mamba_ssm`` or ``causal_conv1d`` is always the one
imported; the stand-in only answers for a name nothing else provides. Nothing is enabled by importing
``nnmamba_monai``.

What it provides (the rest of ``mamba_ssm`` - Mamba2, the language models, the Triton layer norms - is
absent and imports of it fail as they would without the package):

- ``mamba_ssm``: ``Mamba``, ``selective_scan_fn``, ``mamba_inner_fn``;
- ``mamba_ssm.modules.mamba_simple``: ``Mamba`` (:class:`nnmamba_monai.ssm.Mamba`: same parameters, keyword
  arguments, step-wise inference);
- ``mamba_ssm.ops.selective_scan_interface``: ``selective_scan_fn``, ``selective_scan_ref``,
  ``mamba_inner_fn``, ``mamba_inner_ref``;
- ``mamba_ssm.utils.generation``: ``InferenceParams``;
- ``causal_conv1d``: ``causal_conv1d_fn``, ``causal_conv1d_update``.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from pathlib import Path

__all__ = ["PROVIDED", "StandInFinder", "install", "installed", "real_package_present", "uninstall"]

TREE = Path(__file__).resolve().parent / "tree"  # the stand-in packages, importable under their own names
PROVIDED = ("mamba_ssm", "causal_conv1d")


class StandInFinder:
    """A ``sys.meta_path`` finder for the top-level names in :data:`PROVIDED`, looked up in :data:`TREE`.

    Submodules need no finder: they are found through the stand-in package's ``__path__``.
    """

    def find_spec(self, fullname: str, path=None, target=None):  # noqa: D102
        if fullname not in PROVIDED:
            return None
        return importlib.machinery.PathFinder.find_spec(fullname, [str(TREE)])


_FINDER = StandInFinder()


def _is_stand_in(module_or_spec) -> bool:
    origin = getattr(module_or_spec, "origin", None) or getattr(module_or_spec, "__file__", None) or ""
    return bool(origin) and Path(origin).resolve().is_relative_to(TREE)


def real_package_present(name: str = "mamba_ssm") -> bool:
    """Whether an importable ``name`` other than the stand-in exists (Python's finders, without ours)."""
    module = sys.modules.get(name)
    if module is not None:
        return not _is_stand_in(module)
    finders = [finder for finder in sys.meta_path if not isinstance(finder, StandInFinder)]
    for finder in finders:
        find = getattr(finder, "find_spec", None)
        if find is None:
            continue
        spec = find(name, None)
        if spec is not None:
            return True
    return False


def install() -> bool:
    """Enable the stand-in for every name in :data:`PROVIDED` that no installed package provides.

    Returns True when it serves ``mamba_ssm`` (False: a real ``mamba_ssm`` is installed and stays the one
    imported). Idempotent.
    """
    if not installed():
        sys.meta_path.append(_FINDER)
    return not real_package_present("mamba_ssm")


def uninstall() -> None:
    """Remove the finder and forget stand-in modules already imported (real ones are left alone)."""
    sys.meta_path[:] = [finder for finder in sys.meta_path if not isinstance(finder, StandInFinder)]
    for name in list(sys.modules):
        if name.split(".")[0] in PROVIDED and _is_stand_in(sys.modules[name]):
            del sys.modules[name]


def installed() -> bool:
    """Whether :func:`install` has put the finder on ``sys.meta_path``."""
    return any(isinstance(finder, StandInFinder) for finder in sys.meta_path)

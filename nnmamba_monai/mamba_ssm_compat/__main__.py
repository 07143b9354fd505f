"""Run a program with the mamba_ssm stand-in enabled: ``python -m nnmamba_monai.mamba_ssm_compat script.py``.

Usage::

    python -m nnmamba_monai.mamba_ssm_compat script.py [args...]     # as `python script.py args...`
    python -m nnmamba_monai.mamba_ssm_compat -m package.module [args...]   # as `python -m package.module args...`
    python -m nnmamba_monai.mamba_ssm_compat --check                 # which mamba_ssm would be imported

The program gets the ``sys.argv`` it would get from ``python`` and imports ``mamba_ssm`` / ``causal_conv1d``
from the stand-in unless the real packages are installed (they are never shadowed).
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

from nnmamba_monai.mamba_ssm_compat import install


def main(argv: list[str] | None = None) -> int:
    """Enable the stand-in, then run the script or module named by ``argv`` (``sys.argv[1:]`` when None)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help") or (argv[0] == "-m" and len(argv) < 2):
        print(__doc__.strip())
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    serving = install()
    if argv[0] == "--check":
        import mamba_ssm

        print(f"mamba_ssm: {'nnmamba_monai stand-in' if serving else 'installed package'} ({mamba_ssm.__file__})")
        return 0
    if argv[0] == "-m":
        sys.argv = [argv[1], *argv[2:]]
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    else:
        script = Path(argv[0])
        sys.argv = list(argv)
        sys.path[0] = str(script.resolve().parent)  # as `python script.py` puts the script's folder first
        runpy.run_path(str(script), run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Run a program with the mamba_ssm stand-in enabled: ``python -m nnmamba_monai.mamba_ssm_compat script.py``.

The program gets ``sys.argv`` as it would from ``python script.py args`` (or ``python -m module args``) and
imports ``mamba_ssm`` / ``causal_conv1d`` from the stand-in unless the real packages are installed.
``--check`` only reports which ``mamba_ssm`` would be imported.
"""

from __future__ import annotations

import argparse
import runpy
import sys

from nnmamba_monai.mamba_ssm_compat import install


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m nnmamba_monai.mamba_ssm_compat",
        description="Run a Python program with `mamba_ssm` and `causal_conv1d` served by nnmamba_monai's SSM "
        "engine (an installed mamba_ssm is never shadowed).",
    )
    parser.add_argument("--check", action="store_true", help="say which mamba_ssm would be imported, then exit")
    parser.add_argument("-m", dest="module", help="run a module as a script, like python -m")
    parser.add_argument("program", nargs=argparse.REMAINDER, help="script.py and its arguments (or, with -m, "
                        "the module's arguments)")  # fmt: skip
    args = parser.parse_args(argv)
    serving = install()
    if args.check:
        import mamba_ssm

        print(f"mamba_ssm: {'nnmamba_monai stand-in' if serving else 'installed package'} ({mamba_ssm.__file__})")
        return 0
    if args.module:
        sys.argv = [args.module, *args.program]
        runpy.run_module(args.module, run_name="__main__", alter_sys=True)
    elif args.program:
        sys.argv = list(args.program)
        sys.path.insert(0, str(__import__("pathlib").Path(args.program[0]).resolve().parent))
        runpy.run_path(args.program[0], run_name="__main__")
    else:
        parser.error("give a script, -m module, or --check")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``python -m nnmamba_monai.datalist <dataset> ...``: write a bundle's datalist JSON from a dataset's layout.

Each dataset module (``nnmamba_monai/datalist/<name>.py``) registers its subcommand with ``add_parser(subparsers)``
and sets ``func`` (called with the parsed arguments); modules that are not present are skipped. Dataset errors
(``FileNotFoundError``, ``ValueError``) exit with status 2 and their message.
"""

from __future__ import annotations

import argparse
import importlib
import sys

DATASETS = ("brats", "amos", "adni", "fetal")


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser with one subcommand per available dataset module."""
    parser = argparse.ArgumentParser(prog="python -m nnmamba_monai.datalist", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="dataset", metavar="dataset", required=True)
    for name in DATASETS:
        module_name = f"{__package__}.{name}"
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name != module_name:
                raise
            continue
        module.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen dataset's builder; returns 0 (exits with status 2 on a dataset error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except (FileNotFoundError, ValueError) as error:
        parser.exit(2, f"{parser.prog} {args.dataset}: error: {error}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

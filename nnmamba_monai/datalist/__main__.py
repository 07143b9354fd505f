"""``python -m nnmamba_monai.datalist <dataset> --dataset_dir DIR --output FILE``: write a bundle's datalist JSON."""

from __future__ import annotations

import argparse
import importlib
import sys

from nnmamba_monai.datalist import DATASET_MODULES
from nnmamba_monai.datalist.common import add_subcommand, summarise, write_datalist


def _dataset_modules() -> list:
    """The modules of ``DATASET_MODULES`` present in this checkout (a missing one is skipped, nothing else is)."""
    modules = []
    for name in DATASET_MODULES:
        qualified = f"nnmamba_monai.datalist.{name}"
        try:
            modules.append(importlib.import_module(qualified))
        except ModuleNotFoundError as error:
            if error.name != qualified:  # the module exists but one of its own imports failed: report it
                raise
    return modules


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one subcommand per available dataset module."""
    parser = argparse.ArgumentParser(
        prog="python -m nnmamba_monai.datalist",
        description="Build the datalist JSON a bundle reads from a dataset's standard layout. "
        "Paths in it are relative to --dataset_dir; the bundles resolve them against their dataset_dir.",
    )
    subparsers = parser.add_subparsers(dest="dataset", metavar="DATASET", required=True)
    for module in _dataset_modules():
        name = module.__name__.rsplit(".", 1)[-1]
        example = getattr(module, "OUTPUT_EXAMPLE", "configs/datalist.json")
        module.add_arguments(
            add_subcommand(subparsers, name, module.SUMMARY, module.__doc__, module.build_from_arguments, example)
        )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv``, build the datalist and write it to ``--output``; dataset errors exit with status 1
    (one line naming the file, entry or key), usage errors with argparse's 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        datalist = args.build(args)
    except (FileNotFoundError, ValueError) as error:
        parser.exit(1, f"{parser.prog} {args.dataset}: error: {error}\n")
    path = write_datalist(datalist, args.output)
    print(f"wrote {path} ({summarise(datalist)})")
    if getattr(args, "fold", 0) and datalist.get("training"):
        print(f"validation fold {args.fold}: run the bundle with --val_fold {args.fold}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

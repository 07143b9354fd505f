"""Pieces every datalist builder shares: dataset errors, relative paths, writing the JSON, the subcommand pattern.

A datalist is MONAI's decathlon-style JSON read by ``monai.data.load_decathlon_datalist``: lists of entries
under keys such as ``"training"``, ``"validation"`` and ``"testing"``, each entry a dict of file paths
relative to the dataset directory (the bundles pass ``base_dir=@dataset_dir``). One fold convention for every
bundle: all labelled entries go under ``"training"``, each with a ``"fold"`` key, and the bundle's ``val_fold``
(default 0) picks the validation fold at run time. Folds are dealt by ``nnmamba_monai.datalist.folds``.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "MAX_LISTED",
    "DatalistError",
    "MissingFilesError",
    "add_common_arguments",
    "add_fold_arguments",
    "add_subcommand",
    "call_with_arguments",
    "format_listing",
    "relative_path",
    "summarise",
    "write_datalist",
]

MAX_LISTED = 20  # missing files named in one error message; the rest are counted


def format_listing(problems: Sequence[str], limit: int = MAX_LISTED) -> str:
    """The first ``limit`` problems, one indented line each (``"\\n  ..."``), then ``... and N more`` if any."""
    more = f"\n  ... and {len(problems) - limit} more" if len(problems) > limit else ""
    return "\n  " + "\n  ".join(problems[:limit]) + more


class DatalistError(ValueError):
    """The dataset does not match the expected layout; the message names the file, column or landmark."""


class MissingFilesError(FileNotFoundError):
    """Raised when a dataset lacks files its layout requires; ``problems`` lists one line per missing file."""

    def __init__(self, dataset: str, dataset_dir: Path, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__(
            f"{dataset} dataset at {dataset_dir} is incomplete ({len(self.problems)} missing file(s)):"
            f"{format_listing(self.problems)}"
        )


def relative_path(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` (POSIX separators: datalists travel between machines) when it lies inside
    ``root``, else absolute.

    Symbolic links are not followed: a link inside ``root`` (e.g. ``imagesTr/case.nii.gz`` pointing into a shared
    store) is written as the link's own relative path, which is what the bundle will open under its dataset_dir.
    Only when ``path`` is outside ``root`` as written is the comparison retried with both resolved (e.g. ``path``
    given through the link's target while ``root`` is a link to the dataset).
    """
    path, root = Path(os.path.abspath(path)), Path(os.path.abspath(root))  # normalised, links kept
    if root in path.parents:
        return path.relative_to(root).as_posix()
    resolved_path, resolved_root = path.resolve(), root.resolve()
    if resolved_root in resolved_path.parents:
        return resolved_path.relative_to(resolved_root).as_posix()
    return path.as_posix()


def write_datalist(datalist: Mapping[str, Any], output: str | Path, *, indent: int = 4) -> Path:
    """Write ``datalist`` as indented JSON (parent folders created); returns the path."""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(datalist, indent=indent) + "\n")
    return output


def summarise(datalist: Mapping[str, Any]) -> str:
    """One line such as ``training: 1251 cases (fold 0: 251, fold 1: 250, ...), testing: 219 cases``."""
    parts = []
    for key, entries in datalist.items():
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            continue  # a header list such as landmark_names
        folds = sorted({e["fold"] for e in entries if isinstance(e, dict) and "fold" in e})
        per_fold = ", ".join(f"fold {f}: {sum(e.get('fold') == f for e in entries)}" for f in folds)
        parts.append(f"{key}: {len(entries)} cases" + (f" ({per_fold})" if per_fold else ""))
    return ", ".join(parts)


def add_subcommand(
    subparsers: argparse._SubParsersAction,
    name: str,
    summary: str,
    description: str | None,
    build: Callable[[argparse.Namespace], dict[str, Any]],
    output_example: str = "configs/datalist.json",
) -> argparse.ArgumentParser:
    """Register subcommand ``name`` (``summary`` in the list of datasets, ``description`` verbatim in its
    ``--help``, usually the module docstring). ``build`` turns the parsed arguments into the datalist, which
    the command line writes to ``--output`` (registered here): builders return data, only ``__main__`` writes
    files."""
    parser = subparsers.add_parser(
        name, help=summary, description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.set_defaults(build=build)
    parser.add_argument("--output", required=True, type=Path, help=f"datalist JSON to write, e.g. {output_example}")
    return parser


def call_with_arguments(function: Callable[..., Any], args: argparse.Namespace, **overrides: Any) -> Any:
    """Call ``function`` with each of its parameters that ``args`` holds (same name), and ``overrides``.

    For a subcommand whose options are named like its builder's parameters; ``overrides`` maps the others
    (e.g. ``csv_path=args.csv``). Parameters absent from both keep their defaults.
    """
    names = [name for name in inspect.signature(function).parameters if name not in overrides and hasattr(args, name)]
    return function(**{name: getattr(args, name) for name in names}, **overrides)


def add_common_arguments(parser: argparse.ArgumentParser, *, folds: bool = True) -> None:
    """``--dataset_dir`` and (``folds=True``) ``--num_folds``, ``--seed``, ``--fold``."""
    parser.add_argument("--dataset_dir", required=True, type=Path, help="root of the dataset in its standard layout")
    if folds:
        add_fold_arguments(parser)
        parser.add_argument(
            "--fold",
            type=int,
            default=0,
            help="validation fold to check and suggest (default 0); the bundle picks it at run time: --val_fold N",
        )


def add_fold_arguments(parser: argparse.ArgumentParser) -> None:
    """``--num_folds`` and ``--seed`` of the cross-validation folds written into the datalist."""
    parser.add_argument("--num_folds", type=int, default=5, help="cross-validation folds (default 5)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the case shuffle before dealing folds (default 0)")

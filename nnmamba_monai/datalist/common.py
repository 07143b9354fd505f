"""Pieces every datalist builder shares: missing-file errors, folds, relative paths, writing the JSON.

A datalist is MONAI's decathlon-style JSON read by ``monai.data.load_decathlon_datalist``: lists of entries
under keys such as ``"training"``, ``"validation"`` and ``"testing"``, each entry a dict of file paths
relative to the dataset directory (the bundles pass ``base_dir=@dataset_dir``).
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Sequence
from pathlib import Path

__all__ = [
    "MAX_LISTED",
    "MissingFilesError",
    "add_common_arguments",
    "assign_folds",
    "relative_path",
    "summarise",
    "write_datalist",
]

MAX_LISTED = 20  # missing files named in one error message; the rest are counted


class MissingFilesError(FileNotFoundError):
    """Raised when a dataset lacks files its layout requires; ``problems`` lists one line per missing file."""

    def __init__(self, dataset: str, dataset_dir: Path, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        shown = "\n  ".join(self.problems[:MAX_LISTED])
        more = len(self.problems) - MAX_LISTED
        suffix = f"\n  ... and {more} more" if more > 0 else ""
        super().__init__(
            f"{dataset} dataset at {dataset_dir} is incomplete ({len(self.problems)} missing file(s)):\n  "
            f"{shown}{suffix}"
        )


def relative_path(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` with forward slashes (datalists travel between machines)."""
    return path.resolve().relative_to(root.resolve()).as_posix()


def assign_folds(case_ids: Sequence[str], num_folds: int, seed: int) -> dict[str, int]:
    """Deterministic fold per case: sort, shuffle with ``seed``, deal round-robin into ``num_folds`` folds."""
    if num_folds < 2:
        raise ValueError(f"num_folds must be >= 2 (one fold validates, the others train); got {num_folds}")
    if len(case_ids) < num_folds:
        raise ValueError(f"{len(case_ids)} case(s) cannot fill {num_folds} folds; lower --num_folds")
    order = sorted(case_ids)
    random.Random(seed).shuffle(order)
    return {case_id: index % num_folds for index, case_id in enumerate(order)}


def write_datalist(datalist: dict[str, list[dict]], output: str | Path) -> Path:
    """Write ``datalist`` as indented JSON (parent folders created); returns the path."""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(datalist, indent=4) + "\n")
    return output


def summarise(datalist: dict[str, list[dict]]) -> str:
    """One line such as ``training: 1000 cases, validation: 251 cases``."""
    return ", ".join(f"{key}: {len(entries)} cases" for key, entries in datalist.items() if isinstance(entries, list))


def add_common_arguments(parser: argparse.ArgumentParser, *, folds: bool = True) -> None:
    """``--dataset_dir``, ``--output`` and (``folds=True``) ``--num_folds``, ``--fold``, ``--seed``."""
    parser.add_argument("--dataset_dir", required=True, type=Path, help="root of the dataset in its standard layout")
    parser.add_argument(
        "--output", required=True, type=Path, help="datalist JSON to write (e.g. configs/datalist.json)"
    )
    if folds:
        parser.add_argument("--num_folds", type=int, default=5, help="cross-validation folds (default 5)")
        parser.add_argument("--fold", type=int, default=0, help="fold used for validation (default 0)")
        parser.add_argument("--seed", type=int, default=0, help="seed of the case shuffle before dealing folds")

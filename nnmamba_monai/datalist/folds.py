"""Cross-validation folds and datalist files shared by the dataset builders."""

from __future__ import annotations

import json
import random
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["DatalistError", "grouped_stratified_folds", "relative_path", "write_datalist"]


class DatalistError(ValueError):
    """The dataset does not match the expected layout; the message names the file, column or landmark."""


def grouped_stratified_folds(
    groups: Sequence[Hashable], strata: Sequence[Hashable], num_folds: int, seed: int = 0
) -> list[int]:
    """A fold index per item, keeping each group (e.g. a subject's scans) in one fold and balancing the strata.

    Groups are shuffled with ``seed`` within each stratum (a group's stratum is that of its first item) and dealt to
    the folds in turn, continuing across strata so fold sizes stay even.

    Args:
        groups: group id per item (subject); items of one group always share a fold.
        strata: class per item (label), balanced across folds.
        num_folds: number of folds (>= 2).
        seed: shuffling seed; the same inputs and seed give the same folds.

    Returns:
        fold index in [0, num_folds) per item.
    """
    if num_folds < 2:
        raise DatalistError(f"--num_folds must be at least 2; got {num_folds}")
    first_stratum: dict[Hashable, Hashable] = {}
    for group, stratum in zip(groups, strata):
        first_stratum.setdefault(group, stratum)
    by_stratum: dict[Hashable, list[Hashable]] = {}
    for group, stratum in first_stratum.items():
        by_stratum.setdefault(stratum, []).append(group)
    too_small = {str(s): len(g) for s, g in by_stratum.items() if len(g) < num_folds}
    if too_small:
        raise DatalistError(
            f"{num_folds} folds need at least {num_folds} subjects per class; too few in {too_small} "
            "(use a smaller --num_folds)"
        )
    rng = random.Random(seed)
    fold_of: dict[Hashable, int] = {}
    position = 0
    for stratum in sorted(by_stratum, key=str):
        members = sorted(by_stratum[stratum], key=str)
        rng.shuffle(members)
        for group in members:
            fold_of[group] = position % num_folds
            position += 1
    return [fold_of[g] for g in groups]


def relative_path(path: Path, start: Path) -> str:
    """``path`` relative to ``start`` (POSIX separators) when it lies inside ``start``, else absolute."""
    path, start = path.resolve(), start.resolve()
    return (path.relative_to(start) if start in path.parents else path).as_posix()


def write_datalist(path: Path, content: Mapping[str, Any]) -> None:
    """Write the datalist JSON (creating its folder) and report where and how many cases."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content, indent=2) + "\n")
    print(f"wrote {path}: {len(content.get('training', []))} cases in {content.get('num_folds')} folds")

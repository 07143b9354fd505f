"""Cross-validation folds shared by the dataset builders: plain, grouped by subject, stratified by label."""

from __future__ import annotations

import os
import random
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

from nnmamba_monai.datalist.common import DatalistError

__all__ = ["assign_folds", "fold_datalist", "grouped_stratified_folds", "load_fold"]


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


def assign_folds(case_ids: Sequence[str], num_folds: int, seed: int) -> dict[str, int]:
    """Deterministic fold per case: sort, shuffle with ``seed``, deal round-robin into ``num_folds`` folds.

    The ungrouped, unstratified case of :func:`grouped_stratified_folds` (each case its own group, one class),
    with the error messages of the BraTS command line.
    """
    if num_folds < 2:
        raise ValueError(f"num_folds must be >= 2 (one fold validates, the others train); got {num_folds}")
    if len(case_ids) < num_folds:
        raise ValueError(f"{len(case_ids)} case(s) cannot fill {num_folds} folds; lower --num_folds")
    return dict(zip(case_ids, grouped_stratified_folds(case_ids, [0] * len(case_ids), num_folds, seed)))


def fold_datalist(
    header: Mapping[str, Any],
    entries: list[dict[str, Any]],
    *,
    num_folds: int,
    seed: int,
    group_key: str,
    stratum_key: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Give every entry its ``"fold"``; returns the datalist (the command line writes it).

    One datalist serves every fold: all entries go under ``"training"`` and the bundle's ``val_fold`` picks the
    validation fold. The folds keep the entries sharing ``entry[group_key]`` together and balance
    ``entry[stratum_key]`` (no stratification when None). The datalist is ``header``, then ``num_folds`` and
    ``seed``, then ``details``, then ``"training"``. ``num_folds=1`` (no cross-validation) puts every entry in fold
    0; such a datalist needs its own ``"validation"`` list (see :func:`load_fold`).
    """
    if num_folds == 1:
        for entry in entries:
            entry["fold"] = 0
        return {**header, "num_folds": 1, "seed": seed, **(details or {}), "training": entries}
    groups = [entry[group_key] for entry in entries]
    strata = [entry[stratum_key] for entry in entries] if stratum_key is not None else [0] * len(entries)
    for entry, fold in zip(entries, grouped_stratified_folds(groups, strata, num_folds, seed)):
        entry["fold"] = fold
    return {**header, "num_folds": num_folds, "seed": seed, **(details or {}), "training": entries}


def load_fold(
    datalist_file: str | os.PathLike,
    key: str = "training",
    base_dir: str | os.PathLike | None = None,
    val_fold: int = 0,
    is_segmentation: bool = True,
) -> list[dict]:
    """The bundles' one fold convention at run time (``monai.apps.datafold_read``-style, for any label type).

    ``"training"`` gives the labelled entries whose ``"fold"`` is not ``val_fold``, ``"validation"`` those whose fold
    is; any other key (``"testing"``, also asked for as ``"test"``) its list as written. A datalist with
    ``"num_folds": 1`` (no cross-validation) trains on every ``"training"`` entry and validates on its own
    ``"validation"`` list. Paths are resolved against ``base_dir`` by MONAI's ``load_decathlon_datalist``
    (``is_segmentation=False`` when ``"label"`` is a class, not a file). A datalist whose training entries carry no
    fold (written by hand, with its own ``"validation"`` list) is read as written.
    """
    from monai.data import load_decathlon_datalist

    from nnmamba_monai.datalist.schema import DatalistSchemaError, read_datalist_json, validate_datalist
    from nnmamba_monai.refusal import install_excepthook

    install_excepthook()  # a refused bundle run ends with the schema error's one line
    if not os.path.isfile(datalist_file):
        raise DatalistSchemaError(
            f"datalist not found: {datalist_file} (write it with python -m nnmamba_monai.datalist)"
        )
    content = read_datalist_json(datalist_file)
    if key == "test" and isinstance(content, dict) and "test" not in content:
        key = "testing"  # the builders' name for the held-out test list
    folded = isinstance(content, dict) and any("fold" in e for e in content.get("training", []) if isinstance(e, dict))
    # the sections read here are lists of entries with an image (one line naming the entry otherwise); the keys a
    # bundle needs beyond that are checked by its data check
    section = "training" if folded and key in ("training", "validation") else key
    validate_datalist(content, ("image",), str(datalist_file), sections=(section,))
    folded = folded and key in ("training", "validation")
    if folded and content.get("num_folds") == 1:
        if key == "validation" and not isinstance(content.get("validation"), list):
            raise DatalistSchemaError(
                f"{datalist_file}: one fold (num_folds 1) needs a 'validation' list (the builder's --validation_cases)"
            )
        if key == "validation":
            validate_datalist(content, ("image",), str(datalist_file), sections=("validation",))
        return load_decathlon_datalist(datalist_file, is_segmentation, key, base_dir)
    if not folded:
        return load_decathlon_datalist(datalist_file, is_segmentation, key, base_dir)
    entries = load_decathlon_datalist(datalist_file, is_segmentation, "training", base_dir)
    return [e for e in entries if (e["fold"] == val_fold) == (key == "validation")]

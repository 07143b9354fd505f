"""ADNI classification datalist from a CSV table (one row per T1 scan: image path, diagnosis label).

Tasks (label 0 / label 1):

- ``nc_ad``: normal controls (NC, also written CN) vs Alzheimer's disease (AD, also "Dementia");
- ``smci_pmci``: stable MCI (sMCI) vs progressive MCI (pMCI).

Labels may be given as 0/1 or by name (case-insensitive). Image paths in the CSV are absolute or relative to
``--dataset_dir`` (default: the CSV's folder). The datalist written holds, per scan, the image path relative to
``--dataset_dir`` (absolute if outside it; the bundle resolves them against its ``dataset_dir``), the 0/1 label, the
subject and a cross-validation fold (all scans of a subject share a fold, folds are stratified by label), under the
key "training"; the bundle's ``fold`` picks the validation fold, so one datalist serves every fold.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path
from typing import Any

from nnmamba_monai.datalist.common import (
    DatalistError,
    add_fold_arguments,
    call_with_arguments,
    format_listing,
    relative_path,
)
from nnmamba_monai.datalist.folds import fold_datalist

__all__ = ["TASKS", "add_arguments", "build_from_arguments", "build_adni_datalist", "parse_label"]

# the subcommand's line in ``python -m nnmamba_monai.datalist --help``
SUMMARY = "ADNI T1 classification (NC vs AD, sMCI vs pMCI) from a CSV of image paths and labels"
OUTPUT_EXAMPLE = "configs/datalist_nc_ad.json"

TASKS: dict[str, dict[int, tuple[str, ...]]] = {
    "nc_ad": {0: ("NC", "CN"), 1: ("AD", "DEMENTIA")},
    "smci_pmci": {0: ("SMCI",), 1: ("PMCI",)},
}
CLASS_NAMES = {"nc_ad": {0: "NC", 1: "AD"}, "smci_pmci": {0: "sMCI", 1: "pMCI"}}
MAX_LISTED = 10  # rows named in one error message; the rest are counted


def parse_label(value: str, task: str) -> int | None:
    """0 or 1 for a label of ``task`` ('0', '1', '1.0' or a class name, any case); None if not of this task."""
    text = value.strip()
    try:
        number = float(text)
    except ValueError:
        number = None
    if number in (0.0, 1.0):
        return int(number)
    for label, names in TASKS[task].items():
        if text.upper() in names:
            return label
    return None


def _read_rows(csv_path: Path, delimiter: str) -> tuple[list[str], list[dict[str, str]]]:
    if not csv_path.is_file():
        raise DatalistError(f"CSV file not found: {csv_path}")
    with open(csv_path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle, delimiter=delimiter)
        rows = list(reader)
        columns = list(reader.fieldnames or [])
    if not rows:
        raise DatalistError(f"{csv_path}: no data rows (a header line and one row per scan are expected)")
    return columns, rows


def _require_columns(csv_path: Path, columns: list[str], wanted: dict[str, str | None]) -> None:
    for option, column in wanted.items():
        if column is not None and column not in columns:
            raise DatalistError(
                f"{csv_path}: column {column!r} not found (set it with {option}); the columns are {columns}"
            )


def build_adni_datalist(
    csv_path: str | Path,
    task: str = "nc_ad",
    dataset_dir: str | Path | None = None,
    image_column: str = "image",
    label_column: str = "label",
    subject_column: str | None = None,
    num_folds: int = 5,
    seed: int = 0,
    skip_other_labels: bool = False,
    delimiter: str = ",",
) -> dict[str, Any]:
    """Read the CSV, check every image exists and every label belongs to ``task``, assign folds.

    Args:
        csv_path: the table, with a header line.
        task: "nc_ad" or "smci_pmci".
        dataset_dir: folder relative image paths start from, and the datalist's paths are relative to; default the
            CSV's folder.
        image_column, label_column: column names of the image path and the diagnosis.
        subject_column: column with the subject id (ADNI PTID, e.g. 002_S_0295), so that a subject's scans stay in
            one fold; None: every row is its own subject.
        num_folds, seed: cross-validation folds (stratified by label, grouped by subject).
        skip_other_labels: drop rows whose label is not a class of ``task`` (e.g. MCI rows for nc_ad) instead of
            failing.
        delimiter: CSV field separator.

    Returns:
        The datalist (``python -m nnmamba_monai.datalist`` writes it to ``--output``).

    Raises:
        DatalistError: naming the missing column, the rows with missing image files or unknown labels.
    """
    if task not in TASKS:
        raise DatalistError(f"unknown task {task!r}; choose one of {sorted(TASKS)}")
    csv_path = Path(csv_path)
    root = Path(dataset_dir) if dataset_dir is not None else csv_path.parent
    columns, rows = _read_rows(csv_path, delimiter)
    _require_columns(
        csv_path,
        columns,
        {"--image_column": image_column, "--label_column": label_column, "--subject_column": subject_column},
    )
    entries, missing, bad_labels, skipped = [], [], [], 0
    accepted = ", ".join(["0", "1", *[n for names in TASKS[task].values() for n in names]])
    for line, row in enumerate(rows, start=2):  # line 1 is the header
        raw_image, raw_label = (row.get(image_column) or "").strip(), row.get(label_column) or ""
        label = parse_label(raw_label, task)
        if label is None:
            if skip_other_labels:
                skipped += 1
                continue
            bad_labels.append(f"line {line}: {label_column}={raw_label!r}")
            continue
        image = Path(raw_image) if Path(raw_image).is_absolute() else root / raw_image
        if not raw_image or not image.is_file():
            missing.append(f"line {line}: {image_column}={raw_image!r} -> {image}")
            continue
        subject = (row.get(subject_column) or "").strip() if subject_column else f"row{line}"
        entries.append({"image": relative_path(image, root), "label": label, "subject": subject})
    if bad_labels:
        raise DatalistError(
            f"{csv_path}: {len(bad_labels)} row(s) with a label that is not a class of task {task!r} "
            f"(accepted, any case: {accepted}; or pass --skip_other_labels):{format_listing(bad_labels, MAX_LISTED)}"
        )
    if missing:
        raise DatalistError(
            f"{csv_path}: {len(missing)} image file(s) not found (relative paths start at {root}):"
            f"{format_listing(missing, MAX_LISTED)}"
        )
    seen: dict[str, int] = {}
    for entry in entries:
        seen[entry["image"]] = seen.get(entry["image"], 0) + 1
    duplicated = [image for image, count in seen.items() if count > 1]
    if duplicated:
        raise DatalistError(f"{csv_path}: image(s) listed more than once:{format_listing(duplicated, MAX_LISTED)}")
    header = {
        "name": f"ADNI {CLASS_NAMES[task][0]} vs {CLASS_NAMES[task][1]}",
        "task": task,
        "labels": {str(k): v for k, v in CLASS_NAMES[task].items()},
    }
    return fold_datalist(
        header,
        entries,
        num_folds=num_folds,
        seed=seed,
        group_key="subject",
        stratum_key="label",
        details={"source": str(csv_path), "skipped_rows": skipped},
    )


def build_from_arguments(args: argparse.Namespace) -> dict[str, Any]:
    """The datalist the parsed command-line options describe."""
    return call_with_arguments(build_adni_datalist, args, csv_path=args.csv)  # the other options share parameter names


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The subcommand's options (``--output`` is the command line's own)."""
    parser.add_argument("--csv", required=True, type=Path, help="table with a header line, one row per scan")
    parser.add_argument("--task", choices=sorted(TASKS), default="nc_ad", help="classification task (default nc_ad)")
    parser.add_argument("--dataset_dir", type=Path, help="folder image paths are relative to (default: the CSV's)")
    parser.add_argument("--image_column", default="image", help="column of image paths (default 'image')")
    parser.add_argument("--label_column", default="label", help="column of diagnoses (default 'label')")
    parser.add_argument("--subject_column", help="column of subject ids; keeps a subject's scans in one fold")
    add_fold_arguments(parser)
    parser.add_argument("--skip_other_labels", action="store_true", help="drop rows whose label is not of the task")
    parser.add_argument("--delimiter", default=",", help="CSV field separator (default ',')")

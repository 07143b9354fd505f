"""BraTS 2023 datalist: case folders ``BraTS-GLI-xxxxx-yyy/`` of ``BraTS-GLI-xxxxx-yyy-{t1n,t1c,t2w,t2f,seg}.nii.gz``.

That is the layout of the Synapse downloads (e.g. ``ASNR-MICCAI-BraTS2023-GLI-Challenge-TrainingData/``);
the other BraTS 2023 sub-challenges (MEN, MET, PED, SSA) name their folders the same way with their own
prefix (``--challenge``). Case folders are found at any depth below ``--dataset_dir``.

Output (paths relative to ``--dataset_dir``)::

    {"num_folds": 5, "seed": 0,
     "training": [{"image": [t1n, t1c, t2w, t2f], "label": seg, "fold": 1}, ...]}

Every labelled case is under ``"training"`` with its cross-validation fold; the bundle's ``val_fold`` (default
0) picks the cases it validates on, so one datalist serves every fold.

or, with ``--unlabelled`` (e.g. the challenge's validation data, which has no ``seg``)::

    {"testing": [{"image": [t1n, t1c, t2w, t2f]}, ...]}
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from nnmamba_monai.datalist.common import MissingFilesError, add_common_arguments, relative_path
from nnmamba_monai.datalist.folds import assign_folds

__all__ = ["BRATS_MODALITIES", "add_arguments", "build_from_arguments", "build_brats_datalist", "find_case_dirs"]

# the subcommand's line in ``python -m nnmamba_monai.datalist --help``
SUMMARY = "BraTS 2023 case folders (BraTS-GLI-xxxxx-yyy/...-{t1n,t1c,t2w,t2f,seg}.nii.gz)"

BRATS_MODALITIES = ("t1n", "t1c", "t2w", "t2f")  # channel order of the bundle's 4-channel input
LABEL_SUFFIX = "seg"
EXTENSION = ".nii.gz"


def find_case_dirs(dataset_dir: Path, challenge: str = "GLI") -> list[Path]:
    """Folders named ``BraTS-<challenge>-xxxxx-yyy`` anywhere below ``dataset_dir``, sorted by name."""
    pattern = re.compile(rf"^BraTS-{re.escape(challenge)}-\d{{5}}-\d{{3}}$")
    cases = [p for p in dataset_dir.rglob(f"BraTS-{challenge}-*") if p.is_dir() and pattern.match(p.name)]
    return sorted(cases, key=lambda p: p.name)


def _case_files(case_dir: Path, with_label: bool) -> tuple[dict[str, Path], list[str]]:
    """The case's expected files by suffix and the 'missing' lines for those absent."""
    suffixes = [*BRATS_MODALITIES, LABEL_SUFFIX] if with_label else list(BRATS_MODALITIES)
    files = {suffix: case_dir / f"{case_dir.name}-{suffix}{EXTENSION}" for suffix in suffixes}
    missing = [f"case {case_dir.name}: missing {path.name}" for path in files.values() if not path.is_file()]
    return files, missing


def build_brats_datalist(
    dataset_dir: str | Path,
    num_folds: int = 5,
    seed: int = 0,
    unlabelled: bool = False,
    challenge: str = "GLI",
) -> dict:
    """The datalist of a BraTS 2023 folder (see the module docstring for the layout and output).

    Raises:
        FileNotFoundError: the folder does not exist or holds no case folder.
        MissingFilesError: some case lacks a modality (or its ``seg`` unless ``unlabelled``); the message
            names every missing file, e.g. ``case BraTS-GLI-00001-000: missing BraTS-GLI-00001-000-t2f.nii.gz``.
        ValueError: fewer cases than folds.
    """
    dataset_dir = Path(dataset_dir)
    if not dataset_dir.is_dir():
        raise FileNotFoundError(f"BraTS dataset folder not found: {dataset_dir}")
    case_dirs = find_case_dirs(dataset_dir, challenge)
    if not case_dirs:
        raise FileNotFoundError(
            f"no case folders named BraTS-{challenge}-xxxxx-yyy under {dataset_dir} "
            "(point --dataset_dir at the extracted BraTS 2023 training or validation data)"
        )
    entries: dict[str, dict] = {}
    problems: list[str] = []
    for case_dir in case_dirs:
        files, missing = _case_files(case_dir, with_label=not unlabelled)
        problems += missing
        entry: dict = {"image": [relative_path(files[m], dataset_dir) for m in BRATS_MODALITIES]}
        if not unlabelled:
            entry["label"] = relative_path(files[LABEL_SUFFIX], dataset_dir)
        entries[case_dir.name] = entry
    if problems:
        raise MissingFilesError(f"BraTS-{challenge}", dataset_dir, problems)
    if unlabelled:
        return {"testing": list(entries.values())}
    folds = assign_folds(list(entries), num_folds, seed)
    training = [{**entry, "fold": folds[case_id]} for case_id, entry in entries.items()]
    return {"num_folds": num_folds, "seed": seed, "training": training}


def build_from_arguments(args: argparse.Namespace) -> dict:
    """The datalist the parsed command-line options describe."""
    if not args.unlabelled and not 0 <= args.fold < args.num_folds:
        raise ValueError(f"--fold must be in 0..{args.num_folds - 1}; got {args.fold}")
    return build_brats_datalist(args.dataset_dir, args.num_folds, args.seed, args.unlabelled, args.challenge)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The subcommand's options (``--output`` is the command line's own)."""
    add_common_arguments(parser)
    parser.add_argument(
        "--unlabelled",
        action="store_true",
        help="cases have no seg file (the challenge's validation data): write them under 'testing'",
    )
    parser.add_argument("--challenge", default="GLI", help="BraTS 2023 sub-challenge prefix (default GLI)")

"""AMOS22 datalist: ``dataset.json`` with ``imagesTr/labelsTr`` (training), ``imagesVa/labelsVa`` (validation)
and ``imagesTs`` (test, no labels), files named ``amos_NNNN.nii.gz``.

CT and MR cases share those folders. The release's own rule (AMOS22 readme on Zenodo, record 7262581:
"id numbers less than 500 belong to CT data, otherwise they belong to MRI data") splits them by case number.
The 500 CT scans are numbered from 1, so the boundary case is read as CT: ids 1-500 are CT, ids above 500 MR
(nnU-Net's AMOS conversion draws the same line, ``<= 500``, for the test images).
``--modality ct|mr`` keeps one of them, ``all`` keeps both (and any other file names, for your own data in
this layout).

Without ``dataset.json`` the folders are scanned instead. Output (paths relative to ``--dataset_dir``)::

    {"num_folds": 2, "training": [{"image": ..., "label": ..., "fold": 1}, ...], "testing": [{"image": ...}, ...]}

The fold convention of every bundle (a ``"fold"`` per labelled entry, the bundle's ``val_fold`` picks one) holds
the release's own split: fold 0 is its validation set (imagesVa), fold 1 its training set (imagesTr).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from nnmamba_monai.datalist.common import MissingFilesError, add_common_arguments, relative_path
from nnmamba_monai.datalist.schema import read_datalist_json, validate_datalist

__all__ = [
    "AMOS_LABELS",
    "LAST_CT_CASE_ID",
    "add_arguments",
    "build_from_arguments",
    "amos_case_id",
    "build_amos_datalist",
    "case_modality",
]

# the subcommand's line in ``python -m nnmamba_monai.datalist --help``
SUMMARY = "AMOS22 release (dataset.json, imagesTr/labelsTr, imagesVa/labelsVa, imagesTs); CT or MR cases"

LAST_CT_CASE_ID = 500
MODALITIES = ("ct", "mr", "all")
AMOS_LABELS = {
    0: "background",
    1: "spleen",
    2: "right kidney",
    3: "left kidney",
    4: "gallbladder",
    5: "esophagus",
    6: "liver",
    7: "stomach",
    8: "aorta",
    9: "inferior vena cava",
    10: "pancreas",
    11: "right adrenal gland",
    12: "left adrenal gland",
    13: "duodenum",
    14: "bladder",
    15: "prostate/uterus",
}
# (release split, dataset.json key, image folder, label folder or None)
SPLITS = (
    ("training", "training", "imagesTr", "labelsTr"),
    ("validation", "validation", "imagesVa", "labelsVa"),
    ("testing", "test", "imagesTs", None),
)
RELEASE_FOLDS = {"validation": 0, "training": 1}  # the release's split as folds: val_fold 0 validates on imagesVa
CASE_NAME = re.compile(r"^amos_(\d{4})\.nii\.gz$")


def amos_case_id(file_name: str) -> int | None:
    """507 for ``amos_0507.nii.gz``; None for names outside the AMOS pattern."""
    match = CASE_NAME.match(Path(file_name).name)
    return int(match.group(1)) if match else None


def case_modality(case_id: int) -> str:
    """``"ct"`` for ids up to 500, ``"mr"`` above (the AMOS22 release's rule)."""
    return "ct" if case_id <= LAST_CT_CASE_ID else "mr"


def _keep(file_name: str, modality: str) -> bool:
    if modality == "all":
        return True
    case_id = amos_case_id(file_name)
    if case_id is None:
        raise ValueError(
            f"cannot tell CT from MR for {file_name!r}: AMOS files are named amos_NNNN.nii.gz "
            "(use --modality all for other names)"
        )
    return case_modality(case_id) == modality


def _listed_images(dataset_dir: Path) -> dict[str, list[tuple[str, str | None]]]:
    """(image, label) relative paths per datalist key, from dataset.json or, without it, the folders."""
    manifest = dataset_dir / "dataset.json"
    listed: dict[str, list[tuple[str, str | None]]] = {}
    if manifest.is_file():
        content = read_datalist_json(manifest)
        validate_datalist(content, ("image", "label"), str(manifest), sections=("training",), label_kind="map")
        for key, json_key, _, label_dir in SPLITS:
            pairs = []
            for item in content.get(json_key, []):
                image = item["image"] if isinstance(item, dict) else item
                label = item.get("label") if isinstance(item, dict) and label_dir else None
                pairs.append((_normalise(image), _normalise(label) if label else None))
            listed[key] = pairs
        return listed
    for key, _, image_dir, label_dir in SPLITS:
        images = sorted((dataset_dir / image_dir).glob("*.nii.gz"))
        listed[key] = [(f"{image_dir}/{p.name}", f"{label_dir}/{p.name}" if label_dir else None) for p in images]
    return listed


def _normalise(path: str) -> str:
    return path[2:] if path.startswith("./") else path


def build_amos_datalist(dataset_dir: str | Path, modality: str = "ct") -> dict:
    """The datalist of an AMOS22 release folder, restricted to ``modality`` ("ct", "mr" or "all").

    Raises:
        FileNotFoundError: the folder does not exist, or holds neither dataset.json nor imagesTr.
        MissingFilesError: images or labels listed (or implied) are absent; the message names each, e.g.
            ``case amos_0005: missing labelsTr/amos_0005.nii.gz``.
        ValueError: unknown ``modality``, a file name outside ``amos_NNNN.nii.gz`` with ct/mr, or no training case.
    """
    dataset_dir = Path(dataset_dir)
    if modality not in MODALITIES:
        raise ValueError(f"modality must be one of {MODALITIES}; got {modality!r}")
    if not dataset_dir.is_dir():
        raise FileNotFoundError(f"AMOS dataset folder not found: {dataset_dir}")
    if not (dataset_dir / "dataset.json").is_file() and not (dataset_dir / "imagesTr").is_dir():
        raise FileNotFoundError(
            f"{dataset_dir} holds neither dataset.json nor imagesTr/: point --dataset_dir at the extracted "
            "AMOS22 release (the folder with dataset.json, imagesTr, labelsTr, imagesVa, labelsVa, imagesTs)"
        )
    splits: dict[str, list[dict]] = {}
    problems: list[str] = []
    for key, pairs in _listed_images(dataset_dir).items():
        entries = []
        for image, label in pairs:
            if not _keep(image, modality):
                continue
            case = Path(image).name.removesuffix(".nii.gz")
            for path in filter(None, (image, label)):
                if not (dataset_dir / path).is_file():
                    problems.append(f"case {case}: missing {path}")
            entry = {"image": relative_path(dataset_dir / image, dataset_dir)}
            if label:
                entry["label"] = relative_path(dataset_dir / label, dataset_dir)
            if key in RELEASE_FOLDS:
                entry["fold"] = RELEASE_FOLDS[key]
            entries.append(entry)
        splits[key] = entries
    if problems:
        raise MissingFilesError("AMOS22", dataset_dir, problems)
    if not splits.get("training"):
        raise ValueError(f"no {modality.upper()} training case in {dataset_dir} (CT: ids <= 500, MR: ids > 500)")
    training = splits.get("training", []) + splits.get("validation", [])
    return {"modality": modality, "num_folds": 2, "training": training, "testing": splits.get("testing", [])}


def build_from_arguments(args: argparse.Namespace) -> dict:
    """The datalist the parsed command-line options describe."""
    return build_amos_datalist(args.dataset_dir, args.modality)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The subcommand's options (``--output`` is the command line's own)."""
    add_common_arguments(parser, folds=False)
    parser.add_argument(
        "--modality", choices=MODALITIES, default="ct", help="ct: ids <= 500, mr: ids > 500, all: every case"
    )

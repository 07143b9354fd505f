"""Fetal cerebellum landmark datalist from image files and one landmark JSON file per case.

Layout (``<case>`` is any file-name-safe id)::

    <dataset_dir>/
      images/<case>.nii.gz          3D volume, one channel (.nii also accepted)
      landmarks/<case>.json         the six landmarks in world coordinates (mm); <case>.mrk.json also accepted

Landmark files: ``{"coordinate_system": "RAS", "landmarks": {"TCD1": [x, y, z], "TCD2": [...], "HDV1": [...],
"HDV2": [...], "ADV1": [...], "ADV2": [...]}}`` or a 3D Slicer markups file with control points labelled so (see
``nnmamba_monai.landmarks.io``). World space is that of the image file: RAS+ mm as nibabel reports it
(``nibabel.load(path).affine``: the sform if its code is > 0, else the qform); the bundle reads the images with MONAI's
NibabelReader, i.e. through the same affine. LPS points are converted to RAS.

The datalist (key "training") holds per case the image path relative to ``--dataset_dir``, the landmarks as an
(N, 3) list in RAS mm in the bundle's channel order (``--landmark_names``, default the fetal six), the case id under
the key ``case_id`` and a cross-validation fold (plain K-fold by case: there are no classes to balance). Cases named
in ``--test_cases`` go to a ``"testing"`` list instead (with their landmarks, no fold), which the bundle's
``evaluate.json`` scores with ``--evaluate_split test``. ``--num_folds 1`` turns cross-validation off: every training
entry is fold 0 and the cases named in ``--validation_cases`` form an explicit ``"validation"`` list. Every landmark
must lie inside its image volume (a point outside almost always means RAS/LPS or a wrong file);
``--no_check_bounds`` skips that check. Landmark files may also be Slicer fiducial CSVs (``<case>.fcsv``).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from nnmamba_monai.datalist.common import (
    DatalistError,
    add_fold_arguments,
    call_with_arguments,
    format_listing,
    relative_path,
)
from nnmamba_monai.datalist.folds import fold_datalist
from nnmamba_monai.landmarks.io import FETAL_CEREBELLUM_LANDMARKS, LandmarkFileError, read_landmark_file

__all__ = [
    "IMAGE_SUFFIXES",
    "LANDMARK_SUFFIXES",
    "add_arguments",
    "build_from_arguments",
    "build_fetal_datalist",
    "landmarks_outside_image",
]

# the subcommand's line in ``python -m nnmamba_monai.datalist --help``
SUMMARY = "fetal cerebellum landmarks (TCD, HDV, ADV pairs) from images/ and landmarks/ folders"

IMAGE_SUFFIXES = (".nii.gz", ".nii")
LANDMARK_SUFFIXES = (".mrk.json", ".json", ".fcsv")
MAX_LISTED = 10  # problems named in one error message; the rest are counted


def _case_id(path: Path, suffixes: Sequence[str]) -> str | None:
    for suffix in suffixes:
        if path.name.endswith(suffix) and len(path.name) > len(suffix):
            return path.name[: -len(suffix)]
    return None


def _index(folder: Path, suffixes: Sequence[str], what: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise DatalistError(f"{what} folder not found: {folder}")
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        case = _case_id(path, suffixes)
        if case is None or not path.is_file():
            continue
        if case in found:
            raise DatalistError(f"case {case!r} has two {what} files: {found[case].name} and {path.name}")
        found[case] = path
    return found


def landmarks_outside_image(image_path: Path, points_ras: np.ndarray, tolerance_voxels: float = 0.5) -> list[int]:
    """Indices of the points (N, 3) RAS mm that fall outside the image volume (voxel centres +- ``tolerance``)."""
    image = nib.load(str(image_path))  # header only: the voxel data is not read
    voxels = nib.affines.apply_affine(np.linalg.inv(image.affine), points_ras)
    shape = np.asarray(image.shape[:3], dtype=float)
    inside = (voxels >= -tolerance_voxels).all(-1) & (voxels <= shape - 1 + tolerance_voxels).all(-1)
    return [int(i) for i in np.flatnonzero(~inside)]


def build_fetal_datalist(
    dataset_dir: str | Path,
    images_dir: str = "images",
    landmarks_dir: str = "landmarks",
    landmark_names: Sequence[str] = FETAL_CEREBELLUM_LANDMARKS,
    num_folds: int = 5,
    seed: int = 0,
    check_bounds: bool = True,
    test_cases: Sequence[str] = (),
    validation_cases: Sequence[str] = (),
) -> dict[str, Any]:
    """Pair images with landmark files, read and check the landmarks, assign folds; returns the datalist.

    Args:
        dataset_dir: the dataset folder (layout in the module docstring).
        images_dir, landmarks_dir: sub-folders of ``dataset_dir``.
        landmark_names: landmarks required in every file, in heatmap-channel order.
        num_folds, seed: cross-validation folds (one case per fetus is assumed: each case is its own group); 1: no
            cross-validation, ``validation_cases`` then form the validation list.
        check_bounds: fail when a landmark lies outside its image volume.
        test_cases: case ids held out in a ``"testing"`` list (with landmarks), never in a fold.
        validation_cases: case ids of the ``"validation"`` list; required with, and only allowed with, one fold.

    Returns:
        The datalist (``python -m nnmamba_monai.datalist`` writes it to ``--output``).

    Raises:
        DatalistError: naming cases without a landmark file (or the reverse), unreadable files, missing landmarks and
            landmarks outside their image.
    """
    dataset_dir = Path(dataset_dir)
    images = _index(dataset_dir / images_dir, IMAGE_SUFFIXES, "image")
    landmark_files = _index(dataset_dir / landmarks_dir, LANDMARK_SUFFIXES, "landmark")
    if not images:
        raise DatalistError(f"no images ({' or '.join(IMAGE_SUFFIXES)}) in {dataset_dir / images_dir}")
    without_landmarks = [
        f"{images[c].name}: expected {landmarks_dir}/{c}.json" for c in images if c not in landmark_files
    ]
    if without_landmarks:
        raise DatalistError(
            f"{len(without_landmarks)} image(s) without a landmark file:{format_listing(without_landmarks, MAX_LISTED)}"
        )
    orphans = [landmark_files[c].name for c in landmark_files if c not in images]
    if orphans:
        raise DatalistError(
            f"{len(orphans)} landmark file(s) without an image {images_dir}/<case>.nii.gz:"
            f"{format_listing(orphans, MAX_LISTED)}"
        )
    entries, problems = [], []
    for case, image in images.items():
        try:
            points = read_landmark_file(landmark_files[case], landmark_names)
        except LandmarkFileError as err:
            problems.append(str(err))
            continue
        outside = landmarks_outside_image(image, points) if check_bounds else []
        if outside:
            names = [landmark_names[i] for i in outside]
            problems.append(
                f"{landmark_files[case]}: landmark(s) {names} lie outside {image.name} "
                "(check the coordinate system, RAS or LPS, and that the file belongs to this image)"
            )
            continue
        entries.append(
            {
                "image": relative_path(image, dataset_dir),
                "landmarks": np.round(points, 4).tolist(),
                "case_id": case,
            }
        )
    if problems:
        raise DatalistError(f"{len(problems)} landmark file problem(s):{format_listing(problems, MAX_LISTED)}")
    header = {
        "name": "fetal cerebellum landmarks",
        "landmark_names": list(landmark_names),
        "coordinate_system": "RAS",
        "units": "mm",
    }
    held_out = _split_off(entries, test_cases, validation_cases, num_folds)
    datalist = fold_datalist(header, entries, num_folds=num_folds, seed=seed, group_key="case_id")
    return {**datalist, **held_out}


def _split_off(
    entries: list[dict[str, Any]], test_cases: Sequence[str], validation_cases: Sequence[str], num_folds: int
) -> dict[str, list[dict[str, Any]]]:
    """Remove the named test and validation cases from ``entries`` (in place); returns the non-empty lists."""
    if num_folds < 1:
        raise DatalistError(f"--num_folds must be at least 1; got {num_folds}")
    if num_folds == 1 and not validation_cases:
        raise DatalistError("--num_folds 1 (no cross-validation) needs --validation_cases to validate on")
    if num_folds > 1 and validation_cases:
        raise DatalistError(f"--validation_cases needs --num_folds 1; with {num_folds} folds the fold validates")
    overlap = sorted(set(test_cases) & set(validation_cases))
    if overlap:
        raise DatalistError(f"case(s) {overlap} are both in --test_cases and --validation_cases")
    known = {entry["case_id"] for entry in entries}
    unknown = sorted(set(test_cases) - known) + sorted(set(validation_cases) - known)
    if unknown:
        raise DatalistError(f"--test_cases/--validation_cases name unknown case(s) {unknown}; cases: {sorted(known)}")
    sections = {"validation": set(validation_cases), "testing": set(test_cases)}
    held_out = {key: [e for e in entries if e["case_id"] in cases] for key, cases in sections.items()}
    entries[:] = [e for e in entries if e["case_id"] not in sections["validation"] | sections["testing"]]
    if len(entries) < max(num_folds, 1):
        raise DatalistError(f"{len(entries)} training case(s) left cannot fill {num_folds} fold(s)")
    return {key: cases for key, cases in held_out.items() if cases}


def build_from_arguments(args: argparse.Namespace) -> dict[str, Any]:
    """The datalist the parsed command-line options describe."""
    return call_with_arguments(build_fetal_datalist, args)  # every option is named like the builder's parameter


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The subcommand's options (``--output`` is the command line's own)."""
    parser.add_argument("--dataset_dir", required=True, type=Path, help="folder holding images/ and landmarks/")
    parser.add_argument("--images_dir", default="images", help="image sub-folder (default 'images')")
    parser.add_argument("--landmarks_dir", default="landmarks", help="landmark sub-folder (default 'landmarks')")
    parser.add_argument(
        "--landmark_names",
        nargs="+",
        default=list(FETAL_CEREBELLUM_LANDMARKS),
        help="landmarks every file must hold, in heatmap-channel order (default the fetal six: "
        f"{' '.join(FETAL_CEREBELLUM_LANDMARKS)}); quote names with spaces",
    )
    add_fold_arguments(parser)
    parser.add_argument("--test_cases", nargs="+", default=[], help="case ids held out in a 'testing' list")
    parser.add_argument(
        "--validation_cases", nargs="+", default=[], help="with --num_folds 1: case ids of the 'validation' list"
    )
    parser.add_argument(
        "--no_check_bounds", dest="check_bounds", action="store_false", help="allow landmarks outside the image"
    )

"""Generated stand-in datasets in the real BraTS 2023 and AMOS22 file layouts (tiny volumes, random blobs).

The real datasets cannot be downloaded in CI; these files have the real names, folders, label values,
orientation conventions and (for AMOS) anisotropic spacing, so the datalist builders and the bundles run
exactly as they would on the real data, only on 32^3-sized volumes.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import nibabel as nib
import numpy as np

__all__ = [
    "BRATS_AFFINE",
    "BRATS_TINY_TRAINING",
    "AMOS_AFFINE",
    "brats_case_id",
    "make_amos_dataset",
    "make_brats_dataset",
    "write_absurd_header",
]

# BraTS volumes are 1 mm isotropic with a flipped-x/y (LPS-like) affine; AMOS CT/MR are anisotropic.
BRATS_AFFINE = np.array([[-1.0, 0, 0, 0], [0, -1.0, 0, 239.0], [0, 0, 1.0, 0], [0, 0, 0, 1]])
AMOS_AFFINE = np.array([[-0.8, 0, 0, 150.0], [0, -0.8, 0, 120.0], [0, 0, 2.5, -300.0], [0, 0, 0, 1]])


# a BraTS bundle training small enough for seconds on a CPU (4-channel net, 32^3 crops, validation never reached)
BRATS_TINY_TRAINING = {
    "num_workers": 0,
    "patch_size": [32, 32, 32],
    "network_override#channels": 4,
    "batch_size": 1,
    "val_interval": 100,
}


def brats_case_id(index: int) -> str:
    """``BraTS-GLI-00012-000`` for index 12."""
    return f"BraTS-GLI-{index:05d}-000"


def _ball(shape: Sequence[int], centre: Sequence[float], radius: float) -> np.ndarray:
    grid = np.indices(shape, dtype=np.float32)
    distance2 = sum((grid[i] - centre[i]) ** 2 for i in range(len(shape)))
    return distance2 <= radius**2


def _save(array: np.ndarray, affine: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, affine), str(path))


def _tumour_labels(shape: Sequence[int], rng: np.random.Generator) -> np.ndarray:
    """Nested blobs in BraTS 2023 values: edema 2 around core 1 around enhancing 3."""
    centre = [s / 2 + rng.uniform(-3, 3) for s in shape]
    labels = np.zeros(shape, dtype=np.uint8)
    labels[_ball(shape, centre, 9)] = 2
    labels[_ball(shape, centre, 6)] = 1
    labels[_ball(shape, [c + 1 for c in centre], 3.5)] = 3
    return labels


def make_brats_dataset(
    root: str | Path,
    case_indices: Iterable[int] = (1, 2, 3),
    shape: Sequence[int] = (32, 32, 32),
    with_labels: bool = True,
    omit: Iterable[str] = (),
    seed: int = 0,
) -> Path:
    """BraTS 2023 GLI case folders under ``root``; ``omit`` names files (e.g. ``"BraTS-GLI-00002-000-t2f.nii.gz"``)
    not to write. Each case: t1n, t1c, t2w, t2f (float32, zero outside a brain ball) and seg (uint8)."""
    root = Path(root)
    omitted = set(omit)
    rng = np.random.default_rng(seed)
    brain = _ball(shape, [s / 2 for s in shape], min(shape) / 2 - 1)
    for index in case_indices:
        case = brats_case_id(index)
        labels = _tumour_labels(shape, rng)
        files = {}
        for channel, modality in enumerate(("t1n", "t1c", "t2w", "t2f")):
            image = (100 + 40 * labels * (channel + 1) + rng.normal(0, 10, shape)) * brain
            files[modality] = image.astype(np.float32)
        if with_labels:
            files["seg"] = labels
        for suffix, array in files.items():
            name = f"{case}-{suffix}.nii.gz"
            if name not in omitted:
                _save(array, BRATS_AFFINE, root / case / name)
    return root


def _organ_labels(shape: Sequence[int], rng: np.random.Generator, num_organs: int = 15) -> np.ndarray:
    labels = np.zeros(shape, dtype=np.uint8)
    for organ in range(1, num_organs + 1):
        centre = [rng.uniform(0.25 * s, 0.75 * s) for s in shape]
        labels[_ball(shape, centre, rng.uniform(2.5, 4.5))] = organ
    return labels


def _amos_image(labels: np.ndarray, case_id: int, rng: np.random.Generator) -> np.ndarray:
    body = _ball(labels.shape, [s / 2 for s in labels.shape], min(labels.shape) / 2 + 2)
    if case_id <= 500:  # CT in Hounsfield units: air outside the body
        image = np.where(body, 20.0, -1000.0) + 8.0 * labels + rng.normal(0, 15, labels.shape)
    else:  # MR: arbitrary positive intensities
        image = body * (300.0 + 40.0 * labels) + np.abs(rng.normal(0, 20, labels.shape))
    return image.astype(np.float32)


def make_amos_dataset(
    root: str | Path,
    training: Iterable[int] = (1, 2, 507),
    validation: Iterable[int] = (8, 508),
    test: Iterable[int] = (9, 509),
    shape: Sequence[int] = (40, 40, 16),
    omit: Iterable[str] = (),
    write_dataset_json: bool = True,
    seed: int = 0,
) -> Path:
    """An AMOS22 release folder: ``dataset.json`` listing ``amos_NNNN.nii.gz`` files in imagesTr/labelsTr,
    imagesVa/labelsVa and imagesTs (ids <= 500 CT in HU, > 500 MR). ``omit`` names relative paths
    (e.g. ``"labelsTr/amos_0002.nii.gz"``) listed in dataset.json but not written."""
    root = Path(root)
    omitted = set(omit)
    rng = np.random.default_rng(seed)
    manifest: dict = {
        "name": "AMOS",
        "description": "stand-in files in the AMOS22 layout (generated for tests)",
        "tensorImageSize": "3D",
        "modality": {"0": "CT/MRI"},
        "labels": {str(k): v for k, v in _AMOS_NAMES.items()},
        "training": [],
        "validation": [],
        "test": [],
    }
    splits = (("training", training, "imagesTr", "labelsTr"), ("validation", validation, "imagesVa", "labelsVa"))
    for key, case_ids, image_dir, label_dir in splits:
        for case_id in case_ids:
            name = f"amos_{case_id:04d}.nii.gz"
            labels = _organ_labels(shape, rng)
            files = {f"{image_dir}/{name}": _amos_image(labels, case_id, rng), f"{label_dir}/{name}": labels}
            for path, array in files.items():
                if path not in omitted:
                    _save(array, AMOS_AFFINE, root / path)
            manifest[key].append({"image": f"./{image_dir}/{name}", "label": f"./{label_dir}/{name}"})
    for case_id in test:
        name = f"amos_{case_id:04d}.nii.gz"
        if f"imagesTs/{name}" not in omitted:
            _save(_amos_image(_organ_labels(shape, rng), case_id, rng), AMOS_AFFINE, root / "imagesTs" / name)
        manifest["test"].append({"image": f"./imagesTs/{name}"})
    manifest.update(numTraining=len(manifest["training"]), numValidation=len(manifest["validation"]))
    manifest["numTest"] = len(manifest["test"])
    if write_dataset_json:
        (root / "dataset.json").write_text(json.dumps(manifest, indent=4))
    return root


_AMOS_NAMES = {
    0: "background",
    1: "spleen",
    2: "right kidney",
    3: "left kidney",
    4: "gall bladder",
    5: "esophagus",
    6: "liver",
    7: "stomach",
    8: "arota",
    9: "postcava",
    10: "pancreas",
    11: "right adrenal gland",
    12: "left adrenal gland",
    13: "duodenum",
    14: "bladder",
    15: "prostate/uterus",
}


def write_absurd_header(path: Path, shape=(2048, 1024, 1024)) -> None:
    """A .nii.gz whose header claims ``shape`` (2^31 voxels, 8 GiB of float32) but which holds 1 kB of data."""
    header = nib.Nifti1Header()
    header.set_data_dtype(np.float32)
    header.set_data_shape(shape)
    header.set_qform(BRATS_AFFINE, 1)
    header.set_sform(BRATS_AFFINE, 1)
    header["vox_offset"] = 352
    with gzip.open(path, "wb") as stream:
        stream.write(header.binaryblock + b"\0" * 4 + b"\0" * 1024)

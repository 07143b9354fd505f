"""Tiny generated stand-ins for the private datasets, written in the real layouts (ADNI CSV, fetal folders)."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np

from nnmamba_monai.landmarks import FETAL_CEREBELLUM_LANDMARKS

# An oblique, anisotropic voxel-to-RAS affine (axes permuted and flipped) so that orientation handling is exercised.
OBLIQUE_AFFINE = np.array(
    [
        [0.0, 0.0, -1.5, 40.0],
        [0.8, 0.0, 0.0, -20.0],
        [0.0, 1.2, 0.0, 10.0],
        [0.0, 0.0, 0.0, 1.0],
    ]
)


def gaussian_blobs(shape: Sequence[int], centres_voxel: np.ndarray, sigma_voxel: float) -> np.ndarray:
    """Sum of isotropic Gaussians (peak 1) at the given voxel centres (K, 3); float32 volume of ``shape``."""
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), axis=-1).astype(np.float64)
    volume = np.zeros(tuple(shape))
    for centre in centres_voxel:
        volume += np.exp(-((grid - centre) ** 2).sum(-1) / (2 * sigma_voxel**2))
    return volume.astype(np.float32)


def save_nifti(path: Path, volume: np.ndarray, affine: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = nib.Nifti1Image(volume, affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    nib.save(image, str(path))
    return path


def make_adni_dataset(
    root: Path, subjects_per_class: int = 3, shape: Sequence[int] = (20, 24, 20), seed: int = 0
) -> Path:
    """``root/subjects.csv`` (columns image, label, subject) and ``root/images/*.nii.gz``; label 1 has a dark core."""
    rng = np.random.default_rng(seed)
    rows = []
    for label, name in ((0, "CN"), (1, "AD")):
        for index in range(subjects_per_class):
            subject = f"{label:03d}_S_{index:04d}"
            volume = rng.normal(1.0, 0.1, size=shape).astype(np.float32)
            if label:
                centre = tuple(slice(s // 3, 2 * s // 3) for s in shape)
                volume[centre] = 0.2  # "atrophy": a dark core
            image = save_nifti(root / "images" / f"{subject}.nii.gz", volume, np.diag([1.5, 1.5, 1.5, 1.0]))
            rows.append({"image": f"images/{image.name}", "label": name, "subject": subject})
    csv_path = root / "subjects.csv"
    with open(csv_path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["image", "label", "subject"])
        writer.writeheader()
        writer.writerows(rows)
    return csv_path


def fetal_case_landmarks(shape: Sequence[int], rng: np.random.Generator) -> np.ndarray:
    """Six voxel positions (6, 3), non-integer, well inside a volume of ``shape``."""
    size = np.asarray(shape, dtype=float)
    return rng.uniform(0.25, 0.75, size=(len(FETAL_CEREBELLUM_LANDMARKS), 3)) * (size - 1)


def make_fetal_dataset(
    root: Path,
    num_cases: int = 6,
    shape: Sequence[int] = (24, 28, 20),
    affine: np.ndarray = OBLIQUE_AFFINE,
    seed: int = 0,
    coordinate_system: str = "RAS",
    blob_landmarks: Sequence[int] | None = None,
) -> dict[str, np.ndarray]:
    """``root/images/<case>.nii.gz`` with a bright blob at landmarks, ``root/landmarks/<case>.json`` in world mm.

    Args:
        blob_landmarks: indices of the landmarks that get a Gaussian blob (sigma 1.5 voxels) in the image;
            None: all six.

    Returns the RAS world coordinates (6, 3) per case id.
    """
    rng = np.random.default_rng(seed)
    truth = {}
    for index in range(num_cases):
        case = f"fetus_{index:03d}"
        voxels = fetal_case_landmarks(shape, rng)
        world = (affine[:3, :3] @ voxels.T).T + affine[:3, 3]
        blobs = voxels if blob_landmarks is None else voxels[list(blob_landmarks)]
        save_nifti(root / "images" / f"{case}.nii.gz", gaussian_blobs(shape, blobs, 1.5), affine)
        points = world * np.array([-1.0, -1.0, 1.0]) if coordinate_system == "LPS" else world
        content = {
            "coordinate_system": coordinate_system,
            "landmarks": {n: p.tolist() for n, p in zip(FETAL_CEREBELLUM_LANDMARKS, points)},
        }
        (root / "landmarks").mkdir(parents=True, exist_ok=True)
        (root / "landmarks" / f"{case}.json").write_text(json.dumps(content, indent=1))
        truth[case] = world
    return truth

"""Metrics of a saved binary segmentation against its reference mask: Dice, HD95 (mm), NSD."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from monai.data import MetaTensor
from monai.metrics import DiceMetric

from nnmamba_monai.metrics import SpacingAwareHausdorffDistanceMetric, SpacingAwareSurfaceDiceMetric

__all__ = ["METRIC_COLUMNS", "binary_metrics", "evaluate_files", "write_metrics"]

METRIC_COLUMNS = ("case", "dice", "hd95_mm", "nsd", "nsd_tolerance_mm", "pred_volume_ml", "ref_volume_ml")


def _one_hot(mask: np.ndarray, affine: np.ndarray) -> MetaTensor:
    """(H, W, D) binary mask -> (1, 2, H, W, D) background/foreground ``MetaTensor`` carrying the affine."""
    foreground = torch.as_tensor(mask > 0)
    stacked = torch.stack([~foreground, foreground]).float()[None]
    return MetaTensor(stacked, affine=torch.as_tensor(affine, dtype=torch.float64))


def binary_metrics(
    prediction: np.ndarray, reference: np.ndarray, affine: np.ndarray, nsd_tolerance_mm: float = 2.0
) -> dict[str, float]:
    """Dice, 95th-percentile Hausdorff distance (mm) and normalised surface Dice of two (H, W, D) masks.

    Args:
        prediction: predicted mask, nonzero = foreground.
        reference: reference mask on the same grid.
        affine: (4, 4) voxel-to-world matrix of that grid (mm); its column norms give the spacing.
        nsd_tolerance_mm: surface distance (mm) within which a boundary point counts as correct.

    Returns:
        ``dice``, ``nsd`` (in [0, 1]), ``hd95_mm``, and both volumes in millilitres. An empty prediction of a
        non-empty reference (an untrained network) gets the grid's diagonal as HD95, not NaN.
    """
    if prediction.shape != reference.shape:
        raise ValueError(f"prediction {prediction.shape} and reference {reference.shape} grids differ")
    pred, ref = _one_hot(prediction, affine), _one_hot(reference, affine)
    spacing = np.linalg.norm(np.asarray(affine, dtype=np.float64)[:3, :3], axis=0)
    diagonal_mm = float(np.linalg.norm(np.asarray(prediction.shape) * spacing))
    dice = DiceMetric(include_background=False)(pred, ref)
    hd95 = SpacingAwareHausdorffDistanceMetric(include_background=False, percentile=95, empty_distance=diagonal_mm)(
        pred, ref
    )
    nsd = SpacingAwareSurfaceDiceMetric(class_thresholds=[nsd_tolerance_mm], include_background=False)(pred, ref)
    voxel_ml = abs(float(np.linalg.det(np.asarray(affine, dtype=np.float64)[:3, :3]))) / 1000.0
    return {
        "dice": float(dice.mean()),
        "hd95_mm": float(hd95.mean()),
        "nsd": float(nsd.mean()),
        "nsd_tolerance_mm": float(nsd_tolerance_mm),
        "pred_volume_ml": float((prediction > 0).sum()) * voxel_ml,
        "ref_volume_ml": float((reference > 0).sum()) * voxel_ml,
    }


def evaluate_files(
    prediction_path: str | Path, reference_path: str | Path, nsd_tolerance_mm: float = 2.0
) -> dict[str, float]:
    """:func:`binary_metrics` of two NIfTI files; they must share shape and affine (the prediction is saved
    on the input's grid)."""
    pred_img, ref_img = nib.load(str(prediction_path)), nib.load(str(reference_path))
    if not np.allclose(pred_img.affine, ref_img.affine, atol=1e-3):
        raise ValueError(
            f"{prediction_path} and {reference_path} have different affines:\n{pred_img.affine}\n{ref_img.affine}"
        )
    prediction = np.asarray(pred_img.dataobj).squeeze()
    reference = np.asarray(ref_img.dataobj).squeeze()
    return binary_metrics(prediction, reference, ref_img.affine, nsd_tolerance_mm)


def write_metrics(rows: Sequence[dict], csv_path: str | Path, json_path: str | Path) -> None:
    """Write per-case metric rows (keys as :data:`METRIC_COLUMNS`) to a CSV table and a JSON list."""
    csv_path, json_path = Path(csv_path), Path(json_path)
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    with csv_path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(METRIC_COLUMNS), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    json_path.write_text(json.dumps(list(rows), indent=1))

"""How the shipped brain-extraction weights hold up when Colin27 is acquired differently (synthetic changes).

Takes the real Colin27 T1 and its brain mask as the package ships them (2 mm, ``nnmamba_monai/demo/data``: a
held-out subject of ``brain_nnmamba_extraction``), changes the scan the way clinical scans differ from it, runs
``python -m nnmamba_monai.predict``'s :func:`~nnmamba_monai.predict.cli.predict` with the bundle as shipped on each
copy, and scores the mask against the reference on the copy's own grid (``binary_metrics`` of the demo and the
held-out table: Dice, HD95, NSD at 2 mm, predicted / reference volume).
Prints a table and writes ``benchmarks/results/brain_robustness.json``.

Changes (each alone, the reference mask moved with the image where the grid changes):

- ``thick_slices_6mm``: 3 axial slices averaged into one (2 x 2 x 6 mm, partial volume), as a 2-D clinical T1;
- ``tilt_15deg`` / ``tilt_30deg``: the head pitched about the left-right axis inside the same field of view;
- ``bias_30pct`` / ``bias_60pct``: a smooth multiplicative field whose extremes differ by that much;
- ``noise_5pct`` / ``noise_10pct``: Rician noise (magnitude of complex Gaussian), sigma as a fraction of the
  head's 99th percentile;
- ``gamma_0.6`` / ``gamma_1.6``: intensities (rescaled to [0, 1]) raised to that power.

These are synthetic stand-ins for other acquisitions of ONE subject, not other subjects or scanners.

    python benchmarks/brain_robustness.py --threads 2
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from scipy import ndimage

from nnmamba_monai.demo.evaluation import binary_metrics
from nnmamba_monai.demo.run import DATA_DIR
from nnmamba_monai.predict.cli import predict

REPO_ROOT = Path(__file__).resolve().parents[1]
BUNDLE = "brain_nnmamba_extraction"
Volume = tuple[np.ndarray, np.ndarray, np.ndarray]  # image, brain mask (bool), affine (4 x 4)


def thick_slices(image: np.ndarray, mask: np.ndarray, affine: np.ndarray, factor: int = 3) -> Volume:
    """``factor`` consecutive slices of the last axis averaged into one; the mask by majority."""
    depth = image.shape[2] // factor * factor
    image_slabs = image[:, :, :depth].reshape(*image.shape[:2], -1, factor).mean(-1)
    mask_slabs = mask[:, :, :depth].reshape(*mask.shape[:2], -1, factor).mean(-1) >= 0.5
    thick = affine.copy()
    thick[:3, 2] *= factor
    thick[:3, 3] += affine[:3, 2] * (factor - 1) / 2.0  # the slab's centre
    return image_slabs.astype(np.float32), mask_slabs, thick


def tilt(image: np.ndarray, mask: np.ndarray, affine: np.ndarray, degrees: float) -> Volume:
    """The head rotated by ``degrees`` about the first (left-right) axis, around the volume's centre."""
    rotated = ndimage.rotate(image, degrees, axes=(1, 2), reshape=False, order=1, mode="constant", cval=0.0)
    rotated_mask = ndimage.rotate(mask.astype(np.float32), degrees, axes=(1, 2), reshape=False, order=1) >= 0.5
    return rotated.astype(np.float32), rotated_mask, affine


def bias_field(image: np.ndarray, mask: np.ndarray, affine: np.ndarray, strength: float) -> Volume:
    """``image`` times a smooth field (a tilted plane plus a quadratic bowl) spanning 1 -/+ ``strength`` / 2."""
    grid = np.meshgrid(*[np.linspace(-1.0, 1.0, n) for n in image.shape], indexing="ij")
    field = 0.6 * grid[0] + 0.8 * grid[1] - 0.5 * grid[2] + 0.7 * (grid[0] ** 2 + grid[2] ** 2)
    field = (field - field.min()) / (field.max() - field.min()) - 0.5  # [-0.5, 0.5]
    return (image * (1.0 + strength * field)).astype(np.float32), mask, affine


def rician_noise(image: np.ndarray, mask: np.ndarray, affine: np.ndarray, fraction: float, seed: int = 0) -> Volume:
    """The magnitude of ``image`` plus complex Gaussian noise of sigma ``fraction`` x the head's 99th percentile."""
    rng = np.random.default_rng(seed)
    sigma = fraction * np.percentile(image[mask], 99)
    real = image + rng.normal(0.0, sigma, image.shape)
    imaginary = rng.normal(0.0, sigma, image.shape)
    return np.hypot(real, imaginary).astype(np.float32), mask, affine


def gamma(image: np.ndarray, mask: np.ndarray, affine: np.ndarray, power: float) -> Volume:
    """Intensities rescaled to [0, 1] and raised to ``power``."""
    scaled = (image - image.min()) / (image.max() - image.min())
    return (scaled**power).astype(np.float32), mask, affine


CHANGES: dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray], Volume]] = {
    "none": lambda image, mask, affine: (image, mask, affine),
    "thick_slices_6mm": thick_slices,
    "tilt_15deg": lambda i, m, a: tilt(i, m, a, 15.0),
    "tilt_30deg": lambda i, m, a: tilt(i, m, a, 30.0),
    "bias_30pct": lambda i, m, a: bias_field(i, m, a, 0.3),
    "bias_60pct": lambda i, m, a: bias_field(i, m, a, 0.6),
    "noise_5pct": lambda i, m, a: rician_noise(i, m, a, 0.05),
    "noise_10pct": lambda i, m, a: rician_noise(i, m, a, 0.10),
    "gamma_0.6": lambda i, m, a: gamma(i, m, a, 0.6),
    "gamma_1.6": lambda i, m, a: gamma(i, m, a, 1.6),
}


def score_change(name: str, work: Path) -> dict:
    """Make the changed copy of Colin27, predict its mask with the shipped bundle, score it on the copy's grid."""
    source = nib.load(str(DATA_DIR / "colin27_t1.nii.gz"))
    image = np.asarray(source.dataobj, dtype=np.float32)
    mask = np.asarray(nib.load(str(DATA_DIR / "colin27_brainmask.nii.gz")).dataobj) > 0
    changed, reference, affine = CHANGES[name](image, mask, source.affine)
    scan = work / f"colin27_{name}.nii.gz"
    nib.save(nib.Nifti1Image(changed, affine), str(scan))
    started = time.perf_counter()
    predict(BUNDLE, [str(scan)], work / "predictions", device="cpu")
    seconds = time.perf_counter() - started
    predicted = np.asarray(nib.load(str(work / "predictions" / f"colin27_{name}_seg.nii.gz")).dataobj) > 0
    metrics = binary_metrics(predicted, reference, affine)
    return {
        "change": name,
        "shape": list(changed.shape),
        "dice": round(metrics["dice"], 4),
        "hd95_mm": round(metrics["hd95_mm"], 1),
        "nsd": round(metrics["nsd"], 3),
        "pred_volume_ml": round(metrics["pred_volume_ml"], 1),
        "ref_volume_ml": round(metrics["ref_volume_ml"], 1),
        "seconds": round(seconds, 2),
    }


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--changes", nargs="+", choices=list(CHANGES), default=list(CHANGES))
    parser.add_argument("--threads", type=int, default=None, help="torch threads (torch's default)")
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "brain_robustness.json")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name in args.changes:
            rows.append(score_change(name, Path(folder)))
    print(f"{'change':18s} {'shape':>14s} {'Dice':>6s} {'HD95':>6s} {'NSD':>6s} {'pred / ref (ml)':>16s} {'s':>5s}")
    for row in rows:
        shape = "x".join(map(str, row["shape"]))
        volumes = f"{row['pred_volume_ml']:.0f} / {row['ref_volume_ml']:.0f}"
        scores = f"{row['dice']:6.3f} {row['hd95_mm']:6.1f} {row['nsd']:6.3f}"
        print(f"{row['change']:18s} {shape:>14s} {scores} {volumes:>16s} {row['seconds']:5.1f}")
    record = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads",
        "bundle": BUNDLE,
        "case": "colin27_t1 (2 mm, nnmamba_monai/demo/data)",
        "rows": rows,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(record, indent=1) + "\n")
    return rows


if __name__ == "__main__":
    main()

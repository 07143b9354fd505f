"""PNG figures of the demo: orthogonal slices with the predicted mask, and the training curves."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on a headless machine

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402

PREDICTION_CMAP = ListedColormap(["red"])

__all__ = ["plot_overlay", "plot_training_curve", "orthogonal_slices", "slice_center"]


def orthogonal_slices(volume: np.ndarray, center: Sequence[int]) -> list[np.ndarray]:
    """Axial, coronal and sagittal 2D slices of an (X, Y, Z) RAS volume through ``center``, oriented for
    ``imshow(origin="lower")`` (anterior/superior up)."""
    x, y, z = (int(c) for c in center)
    return [volume[:, :, z].T, volume[:, y, :].T, volume[x, :, :].T]


def slice_center(mask: np.ndarray) -> tuple[int, int, int]:
    """Voxel through which to cut a brain mask: its centre of mass, moved sideways by a sixth of the mask's
    left-right extent so that the sagittal slice shows a hemisphere rather than the midline fissure."""
    coords = np.argwhere(mask > 0)
    if len(coords) == 0:
        return tuple(s // 2 for s in mask.shape)  # type: ignore[return-value]
    x, y, z = (int(round(c)) for c in coords.mean(axis=0))
    x = min(x + int(np.ptp(coords[:, 0])) // 6, mask.shape[0] - 1)
    return x, y, z


def plot_overlay(
    image: np.ndarray,
    prediction: np.ndarray,
    reference: np.ndarray | None,
    path: str | Path,
    title: str = "",
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
) -> Path:
    """Save axial/coronal/sagittal slices of ``image`` with ``prediction`` filled and ``reference`` outlined.

    Args:
        image: (X, Y, Z) intensities in RAS orientation.
        prediction: (X, Y, Z) mask, nonzero = foreground (red, translucent).
        reference: (X, Y, Z) ground-truth mask drawn as a yellow contour, or None.
        path: PNG file to write.
        title: figure title (e.g. the Dice).
        spacing: voxel size (mm) per axis, for the aspect ratio.
    """
    center = slice_center(reference if reference is not None else prediction)
    aspects = [spacing[1] / spacing[0], spacing[2] / spacing[0], spacing[2] / spacing[1]]
    names = ["axial", "coronal", "sagittal"]
    low, high = np.percentile(image, [1, 99.5])
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.8))
    slices = zip(
        orthogonal_slices(image, center),
        orthogonal_slices(prediction, center),
        orthogonal_slices(reference, center) if reference is not None else [None] * 3,
    )
    for ax, (img, pred, ref), name, aspect in zip(axes, slices, names, aspects):
        ax.imshow(img, cmap="gray", vmin=low, vmax=high, origin="lower", aspect=aspect)
        ax.imshow(np.ma.masked_where(pred == 0, pred), cmap=PREDICTION_CMAP, alpha=0.4, origin="lower", aspect=aspect)
        if ref is not None and ref.any():
            ax.contour(ref > 0, levels=[0.5], colors="yellow", linewidths=1.0, origin="lower")
        ax.set_title(name)
        ax.axis("off")
    handles = [plt.Rectangle((0, 0), 1, 1, color="red", alpha=0.5, label="prediction")]
    if reference is not None:
        handles.append(plt.Line2D([0], [0], color="yellow", label="reference contour"))
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.05, 1, 0.95))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_training_curve(records: Sequence[dict], path: str | Path, title: str = "") -> Path:
    """Save the training loss per epoch (left axis) and the validation Dice per validated epoch (right axis).

    Args:
        records: per-epoch dicts with ``epoch``, ``loss`` and, on validation epochs, ``val_mean_dice``
            (as :class:`nnmamba_monai.demo.history.EpochHistory` writes them).
        path: PNG file to write.
        title: figure title.
    """
    epochs = [r["epoch"] for r in records if "loss" in r]
    losses = [r["loss"] for r in records if "loss" in r]
    val = [(r["epoch"], r["val_mean_dice"]) for r in records if "val_mean_dice" in r]
    fig, loss_ax = plt.subplots(figsize=(7, 4.5))
    loss_ax.plot(epochs, losses, color="tab:blue", label="training loss (Dice + CE)")
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("training loss", color="tab:blue")
    loss_ax.grid(alpha=0.3)
    dice_ax = loss_ax.twinx()
    if val:
        dice_ax.plot(*zip(*val), "o-", color="tab:red", label="validation Dice (colin27)")
    dice_ax.set_ylim(0, 1)
    dice_ax.set_ylabel("validation Dice", color="tab:red")
    lines = loss_ax.get_lines() + dice_ax.get_lines()
    loss_ax.legend(lines, [line.get_label() for line in lines], loc="center right")
    loss_ax.set_title(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path

"""Surface metrics in millimetres: MONAI's HD95 and NSD with the voxel spacing read from each image's affine.

MONAI's ``HausdorffDistanceMetric`` and ``SurfaceDiceMetric`` measure in voxels unless ``spacing`` is passed
to every call, and MONAI's ignite handlers never pass it. These subclasses take the spacing from the
prediction's ``MetaTensor`` affine (the column norms of its 3x3 block), so a handler such as
``IgniteMetricHandler(metric_fn=SpacingAwareHausdorffDistanceMetric(percentile=95))`` reports millimetres on
resampled and on original grids alike. Plain tensors (no affine) fall back to unit spacing.

MONAI warns once per class and case whose prediction or ground truth is empty ("the prediction of class 3 is
all 0, this may result in nan/inf distance"): dozens of lines per validation of an early model. Both metrics
here count those warnings instead and log one line per ``aggregate`` (once per validation) with the counts.
"""

from __future__ import annotations

import logging
import re
import warnings
from typing import Any

import torch
from monai.data import MetaTensor
from monai.metrics import HausdorffDistanceMetric, SurfaceDiceMetric
from monai.metrics.utils import do_metric_reduction

__all__ = ["SpacingAwareHausdorffDistanceMetric", "SpacingAwareSurfaceDiceMetric", "voxel_spacing"]

logger = logging.getLogger(__name__)
_EMPTY_WARNING = re.compile(r"the (prediction|ground truth) of class (\S+) is all 0")


def voxel_spacing(image: torch.Tensor) -> list[list[float]] | None:
    """Per-item voxel spacing (mm) of a (B, C, *spatial) ``MetaTensor``, from its affine; None for plain tensors."""
    if not isinstance(image, MetaTensor):
        return None
    spatial_dims = image.ndim - 2
    affine = torch.as_tensor(image.affine, dtype=torch.float64)
    affines = affine[None] if affine.ndim == 2 else affine
    spacings = torch.linalg.norm(affines[:, :spatial_dims, :spatial_dims], dim=1)  # column norms: (N, dims)
    if spacings.shape[0] == 1 and image.shape[0] > 1:
        spacings = spacings.expand(image.shape[0], -1)
    return [row.tolist() for row in spacings]


def _channel_emptiness(y_pred: torch.Tensor, y: torch.Tensor, include_background: bool) -> tuple[torch.Tensor, ...]:
    first = 0 if include_background else 1
    pred_empty = ~y_pred[:, first:].flatten(2).bool().any(-1)
    gt_empty = ~y[:, first:].flatten(2).bool().any(-1)
    return pred_empty, gt_empty


class _EmptyWarningsCounted:
    """Counts MONAI's per-class "is all 0" warnings while computing; :meth:`_report_empty` logs them once."""

    def _compute_counting_empty(self, compute: Any, *args: Any, **kwargs: Any) -> torch.Tensor:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = compute(*args, **kwargs)
        counts = self.__dict__.setdefault("_empty_counts", {})
        for warning in caught:
            match = _EMPTY_WARNING.search(str(warning.message))
            if match:
                counts[match.group(1)] = counts.get(match.group(1), 0) + 1
            else:  # anything else is passed on unchanged
                warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
        return result

    def _report_empty(self) -> None:
        counts = self.__dict__.pop("_empty_counts", {})
        if counts:
            what = ", ".join(f"{count} with an empty {side}" for side, count in sorted(counts.items()))
            logger.warning(
                "%s: %s (class x case pairs; MONAI's per-class 'is all 0' warnings, collapsed)",
                type(self).__name__,
                what,
            )


class SpacingAwareHausdorffDistanceMetric(_EmptyWarningsCounted, HausdorffDistanceMetric):
    """``HausdorffDistanceMetric`` in millimetres (spacing from the prediction's affine).

    Args:
        empty_distance: the distance (mm) to report when exactly one of prediction and ground truth is empty
            for a class; both empty then gives 0. None keeps MONAI's behaviour (NaN, left out of the mean).
            Where no value is left to average (every prediction empty), the mean is NaN, a missing value, not
            MONAI's 0 mm, which would read as a perfect score.
            The BraTS 2021 convention is 373.13 mm, the diagonal of the 240x240x155 1 mm grid.
        kwargs: ``HausdorffDistanceMetric`` arguments (``include_background``, ``percentile``, ``reduction``...).

    Inputs: one-hot / binarised ``y_pred`` and ``y`` of shape (B, C, H, W, D).
    """

    def __init__(self, empty_distance: float | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.empty_distance = empty_distance

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor, **kwargs: Any) -> torch.Tensor:  # type: ignore[override]
        if kwargs.get("spacing") is None:
            kwargs["spacing"] = voxel_spacing(y_pred)
        distances = self._compute_counting_empty(super()._compute_tensor, y_pred, y, **kwargs)
        if self.empty_distance is None:
            return distances
        pred_empty, gt_empty = _channel_emptiness(y_pred, y, self.include_background)
        distances = torch.as_tensor(distances).clone()
        distances[pred_empty ^ gt_empty] = float(self.empty_distance)
        distances[pred_empty & gt_empty] = 0.0
        return distances

    def aggregate(self, reduction: Any = None) -> Any:  # type: ignore[override]
        """MONAI's reduction, with NaN where it averaged nothing (MONAI gives 0 there)."""
        self._report_empty()
        data = self.get_buffer()
        if not isinstance(data, torch.Tensor):
            raise ValueError("the data to aggregate must be a PyTorch Tensor.")
        reduced, not_nans = do_metric_reduction(data, reduction or self.reduction)
        reduced = torch.where(not_nans > 0, reduced, torch.full_like(reduced, float("nan")))
        return (reduced, not_nans) if self.get_not_nans else reduced


class SpacingAwareSurfaceDiceMetric(_EmptyWarningsCounted, SurfaceDiceMetric):
    """``SurfaceDiceMetric`` (normalised surface Dice, NSD) with tolerances in millimetres.

    Args:
        class_thresholds: tolerance (mm) per class, background excluded unless ``include_background``.
        kwargs: other ``SurfaceDiceMetric`` arguments.

    MONAI gives 0 where exactly one of prediction and ground truth is empty and NaN where both are (an
    absent organ correctly left out; NaN is left out of the mean).
    """

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor, **kwargs: Any) -> torch.Tensor:  # type: ignore[override]
        if kwargs.get("spacing") is None:
            kwargs["spacing"] = voxel_spacing(y_pred)
        return self._compute_counting_empty(super()._compute_tensor, y_pred, y, **kwargs)

    def aggregate(self, reduction: Any = None) -> Any:  # type: ignore[override]
        """MONAI's reduction; logs the collapsed empty-structure warnings first."""
        self._report_empty()
        return super().aggregate(reduction)

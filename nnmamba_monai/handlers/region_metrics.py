"""Per-region validation metrics of a region-based segmentation (e.g. BraTS WT/TC/ET) as one config line."""

from __future__ import annotations

from collections.abc import Sequence

from monai.handlers import IgniteMetricHandler, from_engine
from monai.metrics import DiceMetric

from nnmamba_monai.metrics import SpacingAwareHausdorffDistanceMetric

__all__ = ["region_metric_handlers"]


def region_metric_handlers(
    region_names: Sequence[str], hd95_empty_mm: float | None, prefix: str = "val"
) -> dict[str, IgniteMetricHandler]:
    """``{prefix}_dice_<region>``, ``{prefix}_mean_hd95`` and ``{prefix}_hd95_<region>`` metric handlers, in that order.

    The per-region handlers read ``pred_<region>`` / ``label_<region>`` (one channel each, as ``SplitDimd`` with
    ``output_postfixes=region_names`` writes them); the mean HD95 reads ``pred`` / ``label``. Dice counts an empty
    region as a miss (``ignore_empty=False``); HD95 is in millimetres with ``hd95_empty_mm`` where exactly one of
    prediction and truth is empty.

    Args:
        region_names: region postfixes, e.g. ``["wt", "tc", "et"]``.
        hd95_empty_mm: HD95 (mm) reported for a region present in only one of prediction and truth.
        prefix: metric name prefix.
    """

    def dice(pred: str, label: str) -> IgniteMetricHandler:
        metric = DiceMetric(include_background=True, ignore_empty=False)
        return IgniteMetricHandler(metric_fn=metric, output_transform=from_engine([pred, label]))

    def hd95(pred: str, label: str) -> IgniteMetricHandler:
        metric = SpacingAwareHausdorffDistanceMetric(
            include_background=True, percentile=95, empty_distance=hd95_empty_mm
        )
        return IgniteMetricHandler(metric_fn=metric, output_transform=from_engine([pred, label]))

    handlers = {f"{prefix}_dice_{r}": dice(f"pred_{r}", f"label_{r}") for r in region_names}
    handlers[f"{prefix}_mean_hd95"] = hd95("pred", "label")
    handlers.update({f"{prefix}_hd95_{r}": hd95(f"pred_{r}", f"label_{r}") for r in region_names})
    return handlers

"""Metrics MONAI does not provide."""

from nnmamba_monai.metrics.radial_error import MeanRadialErrorMetric, compute_radial_error

__all__ = ["MeanRadialErrorMetric", "compute_radial_error"]

"""Metrics MONAI does not provide: surface distances in millimetres, landmark mean radial error."""

from nnmamba_monai.metrics.radial_error import MeanRadialErrorMetric, compute_radial_error
from nnmamba_monai.metrics.spacing_aware import (
    SpacingAwareHausdorffDistanceMetric,
    SpacingAwareSurfaceDiceMetric,
    voxel_spacing,
)

__all__ = [
    "MeanRadialErrorMetric",
    "SpacingAwareHausdorffDistanceMetric",
    "SpacingAwareSurfaceDiceMetric",
    "compute_radial_error",
    "voxel_spacing",
]

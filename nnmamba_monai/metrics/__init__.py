"""Metrics for the bundles: surface distances in millimetres."""

from nnmamba_monai.metrics.spacing_aware import (
    SpacingAwareHausdorffDistanceMetric,
    SpacingAwareSurfaceDiceMetric,
    voxel_spacing,
)

__all__ = ["SpacingAwareHausdorffDistanceMetric", "SpacingAwareSurfaceDiceMetric", "voxel_spacing"]

"""Heatmaps to landmark coordinates: arg-max with sub-voxel refinement, then voxel to world (mm)."""

from __future__ import annotations

import itertools

import torch

__all__ = ["REFINEMENTS", "heatmap_peaks", "voxel_to_world"]

REFINEMENTS = ("none", "quadratic", "centroid")


def _strides(spatial_shape: tuple[int, ...]) -> list[int]:
    strides, step = [], 1
    for size in reversed(spatial_shape):
        strides.insert(0, step)
        step *= size
    return strides


def _values_at(
    flat: torch.Tensor, coords: torch.Tensor, spatial_shape: tuple[int, ...]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Values of flat heatmaps (B, N, L) at integer coords (B, N, K, S); out-of-grid points get mask False."""
    size = torch.as_tensor(spatial_shape, device=coords.device)
    inside = ((coords >= 0) & (coords < size)).all(-1)
    clamped = torch.minimum(coords.clamp(min=0), size - 1)
    index = (clamped * torch.as_tensor(_strides(spatial_shape), device=coords.device)).sum(-1)
    values = torch.gather(flat, 2, index.flatten(2)).view(index.shape)
    return values, inside


def _quadratic_offsets(flat: torch.Tensor, peak: torch.Tensor, spatial_shape: tuple[int, ...]) -> torch.Tensor:
    """Per-axis parabola through (peak - 1, peak, peak + 1); on log values when all three are positive.

    A Gaussian is a parabola in log space, so for Gaussian heatmaps the log fit is exact. Offsets are clamped to
    half a voxel (the arg-max is the nearest voxel); at the grid border the offset is 0.
    """
    num_dims = len(spatial_shape)
    eye = torch.eye(num_dims, dtype=peak.dtype, device=peak.device)
    neighbours = torch.stack([peak[..., None, :] - eye, peak[..., None, :] + eye], dim=-2)  # (B, N, S, 2, S)
    values, inside = _values_at(flat, neighbours.flatten(2, 3), spatial_shape)
    values = values.view(*peak.shape[:2], num_dims, 2).double()
    inside = inside.view(*peak.shape[:2], num_dims, 2).all(-1)
    centre, _ = _values_at(flat, peak[..., None, :], spatial_shape)  # (B, N, 1)
    centre = centre.double().expand(-1, -1, num_dims)
    below, above = values[..., 0], values[..., 1]
    positive = (below > 0) & (centre > 0) & (above > 0)
    tiny = torch.finfo(torch.float64).tiny
    log_below, log_centre, log_above = (v.clamp(min=tiny).log() for v in (below, centre, above))
    below = torch.where(positive, log_below, below)
    above = torch.where(positive, log_above, above)
    centre = torch.where(positive, log_centre, centre)
    curvature = below - 2 * centre + above
    curved = inside & (curvature < 0)
    offset = torch.where(curved, 0.5 * (below - above) / torch.where(curved, curvature, -1.0), 0.0)
    return offset.clamp(-0.5, 0.5)


def _centroid_offsets(
    flat: torch.Tensor, peak: torch.Tensor, spatial_shape: tuple[int, ...], radius: int
) -> torch.Tensor:
    """Centroid of the non-negative heatmap values in the (2 radius + 1)^S window around the arg-max."""
    steps = range(-radius, radius + 1)
    window = torch.as_tensor(list(itertools.product(steps, repeat=len(spatial_shape))), device=peak.device)
    values, inside = _values_at(flat, peak[..., None, :] + window, spatial_shape)
    weights = torch.where(inside, values.double().clamp(min=0), 0.0)  # (B, N, K)
    total = weights.sum(-1, keepdim=True)
    offset = (weights[..., None] * window.double()).sum(-2) / total.clamp(min=torch.finfo(torch.float64).tiny)
    return torch.where(total > 0, offset, 0.0)


def heatmap_peaks(heatmaps: torch.Tensor, refine: str = "quadratic", radius: int = 1) -> torch.Tensor:
    """Sub-voxel peak position of every heatmap channel.

    Args:
        heatmaps: (B, N, *spatial) with N landmarks (one heatmap each), S = len(spatial) in 2..3.
        refine: "quadratic" (per-axis parabola through the arg-max and its two neighbours, fitted to the log of the
            values when they are positive, exact for Gaussian heatmaps), "centroid" (centroid of the non-negative
            values in a window of ``2 * radius + 1`` voxels per axis around the arg-max) or "none" (the arg-max).
        radius: half-width of the centroid window in voxels.

    Returns:
        (B, N, S) float64 voxel coordinates in array-index order (axis 0 first), the convention of MONAI's image
        affine: voxel index ``i`` lies at world position ``affine @ (i, 1)``. Always finite: a flat heatmap decodes to
        its first voxel.
    """
    if refine not in REFINEMENTS:
        raise ValueError(f"refine must be one of {REFINEMENTS}; got {refine!r}")
    if heatmaps.dim() not in (4, 5):
        raise ValueError(f"heatmaps must be (B, N, *spatial) with 2 or 3 spatial dims; got {tuple(heatmaps.shape)}")
    spatial_shape = tuple(heatmaps.shape[2:])
    flat = torch.nan_to_num(heatmaps.detach().flatten(2), nan=-torch.inf)
    index = flat.argmax(-1)  # (B, N)
    strides = _strides(spatial_shape)
    peak = torch.stack([torch.div(index, st, rounding_mode="floor") % sz for st, sz in zip(strides, spatial_shape)], -1)
    if refine == "quadratic":
        return peak.double() + _quadratic_offsets(flat, peak, spatial_shape)
    if refine == "centroid":
        return peak.double() + _centroid_offsets(flat, peak, spatial_shape, radius)
    return peak.double()


def voxel_to_world(points: torch.Tensor, affine: torch.Tensor) -> torch.Tensor:
    """Voxel coordinates to world coordinates: ``world = affine[:S, :S] @ point + affine[:S, S]``.

    Args:
        points: (..., N, S) voxel coordinates in array-index order.
        affine: (S + 1, S + 1), or batched (..., S + 1, S + 1) matching the leading dims of ``points``; MONAI's
            ``MetaTensor.affine`` of the image the heatmaps are aligned with (RAS mm after ``LoadImage``).

    Returns:
        (..., N, S) float64 world coordinates (mm).
    """
    num_dims = points.shape[-1]
    affine = torch.as_tensor(affine, dtype=torch.float64, device=points.device)
    if affine.shape[-2:] != (num_dims + 1, num_dims + 1):
        raise ValueError(
            f"affine must be {num_dims + 1}x{num_dims + 1} for {num_dims}D points; got {tuple(affine.shape)}"
        )
    rotation, translation = affine[..., :num_dims, :num_dims], affine[..., :num_dims, num_dims]
    return points.double() @ rotation.transpose(-1, -2) + translation[..., None, :]

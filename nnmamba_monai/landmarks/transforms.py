"""Dictionary transform: predicted heatmaps of one case to landmark world coordinates (mm)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform
from monai.utils import ensure_tuple_rep

from nnmamba_monai.landmarks.decode import heatmap_peaks, voxel_to_world

__all__ = ["HeatmapToWorldLandmarksd"]


class HeatmapToWorldLandmarksd(MapTransform):
    """Decode channel-first heatmaps (N, *spatial) of one case to world coordinates (N, S) in mm.

    The peak of each channel is found with :func:`heatmap_peaks` (sub-voxel), then mapped through the affine of the
    image the heatmaps are aligned with: the network input, i.e. the image after all preprocessing (orientation,
    resizing, ...). MONAI keeps that affine up to date on the ``MetaTensor`` through every spatial transform, so the
    result is in the world space of the original file (RAS mm for images read by ``LoadImage``), with no inversion
    of the preprocessing needed.

    Args:
        keys: heatmap keys (e.g. "pred").
        ref_image_keys: key of the image whose affine maps heatmap voxels to world (e.g. "image"); one per key or
            one for all. None: use the heatmap's own ``MetaTensor.affine``.
        output_keys: where to store the (N, S) float32 world coordinates (on the CPU: they are a few numbers, and
            reference landmarks from the datalist stay on the CPU too); default "{key}_landmarks".
        refine: sub-voxel refinement, see :func:`heatmap_peaks`.
        radius: centroid window half-width (voxels) for ``refine="centroid"``.
        allow_missing_keys: do not raise if a key is missing.
    """

    def __init__(
        self,
        keys: KeysCollection,
        ref_image_keys: KeysCollection | None = "image",
        output_keys: KeysCollection | None = None,
        refine: str = "quadratic",
        radius: int = 1,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.ref_image_keys = ensure_tuple_rep(ref_image_keys, len(self.keys))
        self.output_keys = (
            tuple(f"{key}_landmarks" for key in self.keys)
            if output_keys is None
            else ensure_tuple_rep(output_keys, len(self.keys))
        )
        self.refine = refine
        self.radius = radius

    @staticmethod
    def _affine(data: Mapping[Hashable, Any], heatmaps: Any, ref_key: Hashable | None) -> torch.Tensor:
        source = heatmaps if ref_key is None else data.get(ref_key)
        affine = getattr(source, "affine", None)
        if not isinstance(source, MetaTensor) or affine is None:
            name = "the heatmaps" if ref_key is None else f"data[{ref_key!r}]"
            raise ValueError(f"{name} must be a MetaTensor with an affine to map voxels to world coordinates")
        return affine

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key, ref_key, out_key in self.key_iterator(d, self.ref_image_keys, self.output_keys):
            heatmaps = d[key]
            affine = self._affine(d, heatmaps, ref_key)
            maps = torch.as_tensor(heatmaps)
            peaks = heatmap_peaks(maps[None], refine=self.refine, radius=self.radius)[0]  # (N, S) voxels
            world = voxel_to_world(peaks, torch.as_tensor(affine).to(peaks.device))
            d[out_key] = world.float().cpu()
        return d

"""What a bundle expects of its data: input channels, label values, landmark count (from its metadata and config)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["DEFAULT_MAX_VOXELS", "DataSpec"]

# largest plausible voxel count of one file (all dimensions): 2^30, e.g. 1024^3, or a 512x512x4096 CT; four times
# BraTS' four channels together. A header claiming more is refused before any voxel is read (raise it with
# check_data's --max_voxels, or data_check#max_voxels in a bundle run).
DEFAULT_MAX_VOXELS = 2**30

# metadata output format -> (the label's kind, keys a training entry must hold)
_FORMAT_KEYS = {
    "segmentation": ("map", ("image", "label")),
    "classes": ("class", ("image", "label")),
    "heatmap": (None, ("image", "landmarks")),
}


@dataclass(frozen=True)
class DataSpec:
    """Expectations the data checks compare each case with.

    Attributes:
        num_channels: input channels of the network (sum over an entry's image files; a 4D NIfTI adds its 4th dim).
        label_values: allowed label-map voxel values (segmentation) or class labels (classification);
            None: not checked.
        num_landmarks: landmarks per case (landmark bundles); None: no landmarks expected.
        affine_tolerance_mm: largest allowed absolute difference between the affines of one case's files.
        label_kind: "map" (label-map file, segmentation), "class" (a number, classification) or None (unknown).
        required_keys: keys each training/validation datalist entry must hold.
        max_voxels: files whose header claims more voxels are refused without reading them.
    """

    num_channels: int
    label_values: tuple[int, ...] | None = None
    num_landmarks: int | None = None
    affine_tolerance_mm: float = 1e-3
    label_kind: str | None = None
    required_keys: tuple[str, ...] = ("image",)
    max_voxels: int = DEFAULT_MAX_VOXELS

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any], label_values: Sequence[int] | None = None) -> DataSpec:
        """From a bundle's ``metadata.json`` content: ``network_data_format.inputs.image.num_channels``; the
        landmark count is the output's ``num_channels`` when its format is ``heatmap``; the output format also
        gives the keys an entry needs (segmentation and classes: image and label, heatmap: image and landmarks)."""
        data_format = metadata["network_data_format"]
        outputs = data_format.get("outputs", {}).get("pred", {})
        landmarks = int(outputs["num_channels"]) if outputs.get("format") == "heatmap" else None
        values = None if label_values is None else tuple(int(v) for v in label_values)
        label_kind, required_keys = _FORMAT_KEYS.get(outputs.get("format"), (None, ("image",)))
        return cls(
            int(data_format["inputs"]["image"]["num_channels"]),
            values,
            landmarks,
            label_kind=label_kind,
            required_keys=required_keys,
        )

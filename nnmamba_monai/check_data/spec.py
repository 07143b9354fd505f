"""What a bundle expects of its data: input channels, label values, landmark count (from its metadata and config)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["DataSpec"]


@dataclass(frozen=True)
class DataSpec:
    """Expectations the data checks compare each case with.

    Attributes:
        num_channels: input channels of the network (sum over an entry's image files; a 4D NIfTI adds its 4th dim).
        label_values: allowed label-map voxel values (segmentation) or class labels (classification);
            None: not checked.
        num_landmarks: landmarks per case (landmark bundles); None: no landmarks expected.
        affine_tolerance_mm: largest allowed absolute difference between the affines of one case's files.
    """

    num_channels: int
    label_values: tuple[int, ...] | None = None
    num_landmarks: int | None = None
    affine_tolerance_mm: float = 1e-3

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any], label_values: Sequence[int] | None = None) -> DataSpec:
        """From a bundle's ``metadata.json`` content: ``network_data_format.inputs.image.num_channels``; the
        landmark count is the output's ``num_channels`` when its format is ``heatmap``."""
        data_format = metadata["network_data_format"]
        outputs = data_format.get("outputs", {}).get("pred", {})
        landmarks = int(outputs["num_channels"]) if outputs.get("format") == "heatmap" else None
        values = None if label_values is None else tuple(int(v) for v in label_values)
        return cls(int(data_format["inputs"]["image"]["num_channels"]), values, landmarks)

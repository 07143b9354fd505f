"""Brain-mask clean-up after argmax: keep the largest connected component, fill its holes (scipy only).

MONAI's ``KeepLargestConnectedComponentd`` needs scikit-image (or cuCIM) on the CPU, which this package does
not depend on; ``scipy.ndimage`` does the same for one foreground label.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform
from scipy import ndimage

__all__ = ["largest_component_filled", "LargestComponentd"]


def largest_component_filled(mask: np.ndarray) -> np.ndarray:
    """(H, W, D) mask (nonzero = foreground) -> bool mask of its largest 26-connected component, holes filled.

    An empty mask stays empty.
    """
    if mask.ndim != 3:
        raise ValueError(f"expected a (H, W, D) mask; got shape {tuple(mask.shape)}")
    labels, count = ndimage.label(mask > 0, structure=np.ones((3, 3, 3), dtype=bool))
    if count == 0:
        return np.zeros(mask.shape, dtype=bool)
    sizes = np.bincount(labels.ravel())[1:]
    return ndimage.binary_fill_holes(labels == (int(np.argmax(sizes)) + 1))


class LargestComponentd(MapTransform):
    """:func:`largest_component_filled` on (1, H, W, D) label maps (0/1) under ``keys``; metadata kept.

    Args:
        keys: label-map keys (one channel, after ``AsDiscreted(argmax=True)``).
        allow_missing_keys: skip absent keys instead of raising.
    """

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            value = d[key]
            if value.ndim != 4 or value.shape[0] != 1:
                raise ValueError(
                    f"LargestComponentd: {key!r} must be a (1, H, W, D) label map; got {tuple(value.shape)}"
                )
            array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
            kept = torch.as_tensor(largest_component_filled(array[0])[None]).to(
                value.dtype if isinstance(value, torch.Tensor) else torch.uint8
            )
            d[key] = MetaTensor(kept, meta=value.meta) if isinstance(value, MetaTensor) else kept
        return d

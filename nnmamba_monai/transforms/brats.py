"""BraTS glioma labels <-> the three overlapping evaluation regions (WT, TC, ET).

BraTS 2023 GLI label maps use 1 = necrotic tumour core (NCR), 2 = peritumoral edema (ED), 3 = enhancing
tumour (ET); BraTS 2018-2022 used 4 for ET (what MONAI's ``ConvertToMultiChannelBasedOnBratsClassesd``
assumes by default). The challenge evaluates nested regions:

- WT (whole tumour) = NCR | ED | ET
- TC (tumour core)  = NCR | ET
- ET (enhancing)    = ET

Channel order here is (WT, TC, ET), the order in which the paper reports its results.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Mapping
from pathlib import PurePath
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform
from monai.utils import ImageMetaKey

__all__ = [
    "BRATS_REGIONS",
    "BratsLabelsToRegions",
    "BratsLabelsToRegionsd",
    "BratsRegionsToLabels",
    "BratsRegionsToLabelsd",
    "brats_case_name",
]

BRATS_REGIONS = ("WT", "TC", "ET")
NCR_LABEL = 1
ED_LABEL = 2
_SEQUENCE_FILE = re.compile(r"^(?P<case>.+)-(t1n|t1c|t2w|t2f)$")


def _check_et_label(et_label: int) -> int:
    if et_label in (0, NCR_LABEL, ED_LABEL):
        raise ValueError(f"et_label must differ from background 0, NCR 1 and ED 2; got {et_label}")
    return int(et_label)


def _plain_tensor(data: torch.Tensor | np.ndarray) -> torch.Tensor:
    return data.as_tensor() if isinstance(data, MetaTensor) else torch.as_tensor(data)


def _like_input(result: torch.Tensor, given: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
    """``result`` as the type the transform was given: a numpy array, a MetaTensor (its metadata and applied
    operations carried over) or a plain tensor."""
    if isinstance(given, np.ndarray):
        return result.numpy()
    if isinstance(given, MetaTensor):
        return MetaTensor(result, meta=given.meta, applied_operations=given.applied_operations)
    return result


def _as_label_volume(label: torch.Tensor, name: str) -> torch.Tensor:
    """(1, H, W, D) or (H, W, D) -> (H, W, D)."""
    if label.ndim >= 4 and label.shape[0] == 1:
        return label[0]
    if label.ndim == 3:
        return label
    raise ValueError(f"{name} expects a label map of shape (1, H, W, D) or (H, W, D); got {tuple(label.shape)}")


class BratsLabelsToRegions(Transform):
    """Label map (1, H, W, D) with values {0, 1, 2, et_label} -> binary regions (3, H, W, D) as (WT, TC, ET).

    Args:
        et_label: value of the enhancing tumour: 3 for BraTS 2023 (default), 4 for BraTS 2018-2022.

    Values other than 0, 1, 2 and ``et_label`` raise ``ValueError`` (a wrong ``et_label`` would otherwise
    silently drop the enhancing tumour from every region).
    """

    def __init__(self, et_label: int = 3) -> None:
        self.et_label = _check_et_label(et_label)

    def __call__(self, label: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
        volume = _as_label_volume(_plain_tensor(label), type(self).__name__)
        present = {float(v) for v in torch.unique(volume).tolist()}
        unexpected = sorted(present - {0.0, float(NCR_LABEL), float(ED_LABEL), float(self.et_label)})
        if unexpected:
            values = ", ".join(f"{v:g}" for v in unexpected)
            raise ValueError(
                f"BraTS label map has values {values} besides 0, {NCR_LABEL} (NCR), {ED_LABEL} (ED) and "
                f"{self.et_label} (ET); BraTS 2023 uses 3 for ET, BraTS 2018-2022 used 4 (set et_label)"
            )
        ncr, ed, et = volume == NCR_LABEL, volume == ED_LABEL, volume == self.et_label
        regions = torch.stack([ncr | ed | et, ncr | et, et]).to(torch.float32)
        return _like_input(regions, label)


class BratsRegionsToLabels(Transform):
    """Binary regions (3, H, W, D) as (WT, TC, ET) -> label map (1, H, W, D) in the challenge's values.

    ET -> ``et_label``; TC without ET -> 1 (NCR); WT without TC -> 2 (ED); elsewhere 0. The regions are nested
    by definition; where a prediction is not, the inner region wins (an ET voxel outside the predicted TC is
    still labelled ET, which makes it part of TC and WT in the label map).

    Args:
        et_label: value written for the enhancing tumour (3 for BraTS 2023).
        threshold: a channel counts as present where its value is > ``threshold`` (0.5 for probabilities;
            already-binary inputs work the same).
    """

    def __init__(self, et_label: int = 3, threshold: float = 0.5) -> None:
        self.et_label = _check_et_label(et_label)
        self.threshold = float(threshold)

    def __call__(self, regions: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
        data = _plain_tensor(regions)
        if data.ndim != 4 or data.shape[0] != len(BRATS_REGIONS):
            raise ValueError(
                f"{type(self).__name__} expects regions of shape (3, H, W, D) ordered {BRATS_REGIONS}; "
                f"got {tuple(data.shape)}"
            )
        wt, tc, et = (data[i] > self.threshold for i in range(3))
        labels = torch.zeros(data.shape[1:], dtype=torch.uint8, device=data.device)
        labels[wt] = ED_LABEL
        labels[tc] = NCR_LABEL
        labels[et] = self.et_label
        return _like_input(labels[None], regions)


class _KeyedConversion(MapTransform):
    """Applies an array transform, ``converter``, to each key and writes the result under its output key."""

    def __init__(
        self,
        keys: KeysCollection,
        converter: Transform,
        output_keys: KeysCollection | None,
        allow_missing_keys: bool,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.converter = converter
        self.output_keys = _output_keys(self.keys, output_keys)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[self.output_keys[key]] = self.converter(d[key])
        return d


class BratsLabelsToRegionsd(_KeyedConversion):
    """Dictionary version of :class:`BratsLabelsToRegions` (usually ``keys="label"``).

    Args:
        keys: keys of (1, H, W, D) label maps.
        et_label: value of the enhancing tumour (3 for BraTS 2023, 4 for 2018-2022).
        output_keys: where to write the regions (default: replace ``keys``), e.g. turn a predicted label map
            ``"pred_label"`` back into nested regions under ``"pred"``.
    """

    def __init__(
        self,
        keys: KeysCollection,
        et_label: int = 3,
        output_keys: KeysCollection | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, BratsLabelsToRegions(et_label=et_label), output_keys, allow_missing_keys)


class BratsRegionsToLabelsd(_KeyedConversion):
    """Dictionary version of :class:`BratsRegionsToLabels` (usually ``keys="pred"``).

    Args:
        keys: keys of (3, H, W, D) region tensors.
        et_label: value written for the enhancing tumour.
        threshold: presence threshold per channel.
        output_keys: where to write the label maps (default: replace ``keys``), e.g. ``"pred_label"`` to keep
            the regions for metrics and save the label map.
    """

    def __init__(
        self,
        keys: KeysCollection,
        et_label: int = 3,
        threshold: float = 0.5,
        output_keys: KeysCollection | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        converter = BratsRegionsToLabels(et_label=et_label, threshold=threshold)
        super().__init__(keys, converter, output_keys, allow_missing_keys)


def _output_keys(keys: tuple[Hashable, ...], output_keys: KeysCollection | None) -> dict[Hashable, Hashable]:
    """Input key -> output key (the same key when ``output_keys`` is None)."""
    if output_keys is None:
        return {key: key for key in keys}
    outputs = [output_keys] if isinstance(output_keys, (str, int)) else list(output_keys)
    if len(outputs) != len(keys):
        raise ValueError(f"output_keys {outputs} must match keys {list(keys)} one to one")
    return dict(zip(keys, outputs))


def brats_case_name(metadict: dict | None, saver: Any = None) -> dict:
    """``SaveImage(d)`` ``output_name_formatter``: name outputs by case (``BraTS-GLI-00001-000``), not by the
    first input file (``BraTS-GLI-00001-000-t1n``), which is the naming the challenge's submissions use.

    Returns ``{"subject": case, "idx": patch_index}`` as ``monai.data.folder_layout.default_name_formatter`` does.
    """
    metadict = metadict or {}
    source = metadict.get(ImageMetaKey.FILENAME_OR_OBJ, getattr(saver, "_data_index", 0))
    source = source[0] if isinstance(source, (list, tuple)) else source
    stem = PurePath(str(source)).name
    for extension in (".nii.gz", ".nii"):
        stem = stem[: -len(extension)] if stem.endswith(extension) else stem
    match = _SEQUENCE_FILE.match(stem)
    return {"subject": match.group("case") if match else stem, "idx": metadict.get(ImageMetaKey.PATCH_INDEX)}

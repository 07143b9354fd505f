"""An inferer that gives the network plain tensors: MONAI's ``SimpleInferer`` minus the MetaTensor wrapping."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from monai.data import MetaTensor
from monai.inferers import SimpleInferer

__all__ = ["PlainTensorInferer"]


class PlainTensorInferer(SimpleInferer):
    """``SimpleInferer`` that strips the MONAI metadata from the input before calling the network.

    MONAI engines feed ``MetaTensor`` batches; inside the network the metadata is dead weight (every operation pays
    for propagating it) and some tensor factory calls (``Tensor.new_empty(*sizes)``) are not supported by
    ``MetaTensor``. The engine keeps the original input (with its affine) in its output dict, so postprocessing that
    needs the affine reads it from there (e.g. ``HeatmapToWorldLandmarksd(ref_image_keys="image")``).
    """

    def __call__(self, inputs: torch.Tensor, network: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """inputs: (B, C, *spatial), MetaTensor or Tensor; returns ``network(plain_inputs, *args, **kwargs)``."""
        plain = inputs.as_tensor() if isinstance(inputs, MetaTensor) else inputs
        return super().__call__(plain, network, *args, **kwargs)

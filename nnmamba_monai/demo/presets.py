"""Small network definitions (bundle ``network_def`` dicts) for the demo's CPU budget, one per family."""

from __future__ import annotations

from typing import Any

__all__ = ["FAMILIES", "network_def"]

# widths chosen so that one 64^3 training step (batch 2) takes about a second on 2 CPU cores
_UNET_FILTERS = [8, 16, 32, 64]
_UNET_STRIDES = [1, 2, 2, 2]

FAMILIES: dict[str, dict[str, Any]] = {
    "nnmamba": {
        "_target_": "nnmamba_monai.networks.nnMambaSeg",
        "channels": 8,
        "blocks": 2,
        "d_state": 8,
        "generation": "miccss",
        "out_relu": False,
    },
    "segmamba": {"_target_": "nnmamba_monai.networks.SegMamba"},
    "bisegmamba": {"_target_": "nnmamba_monai.networks.BiSegMamba"},
    "multisegmamba": {"_target_": "nnmamba_monai.networks.MultiSegMamba"},
    "segmambaskip": {"_target_": "nnmamba_monai.networks.SegMambaSkip"},
    "dynunet": {
        "_target_": "monai.networks.nets.DynUNet",
        "kernel_size": [3] * len(_UNET_STRIDES),
        "strides": _UNET_STRIDES,
        "upsample_kernel_size": _UNET_STRIDES[1:],
        "filters": _UNET_FILTERS,
        "norm_name": ["INSTANCE", {"affine": True}],
        "res_block": True,
    },
}
for _family in ("segmamba", "bisegmamba", "multisegmamba", "segmambaskip"):
    FAMILIES[_family].update({"filters": _UNET_FILTERS, "strides": _UNET_STRIDES, "d_state": 8})


def network_def(family: str, in_channels: int = 1, out_channels: int = 2) -> dict[str, Any]:
    """The bundle ``network_def`` for a family: a ``_target_`` dict MONAI's ``ConfigParser`` instantiates.

    Args:
        family: one of :data:`FAMILIES` ("nnmamba", the Taming Mambas nets, "dynunet" as a MONAI baseline).
        in_channels: image channels (1 for T1).
        out_channels: classes including background.

    Every family divides the input by 8 (U-Nets, 4 levels) or 16 (nnMamba): patch sizes of multiples of 16 fit all.
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown network family {family!r}; choose one of {sorted(FAMILIES)}")
    return {"spatial_dims": 3, "in_channels": in_channels, "out_channels": out_channels, **FAMILIES[family]}

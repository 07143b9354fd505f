"""Glue between MONAI engines and the nnMamba networks.

MONAI engines feed networks ``MetaTensor`` batches. The pure-PyTorch selective scan allocates its buffers
with ``tensor.new_empty(b, c, l)``, a call form that ``MetaTensor.new_empty`` rejects (it takes one size
tuple), so a MetaTensor reaching the scan fails with "new_empty(): argument 'size' must be tuple of ints".
Until the scan (``nnmamba_monai/ssm/scan_torch.py``) passes tuples, bundles wrap their network with
:func:`accept_meta_tensors`: the metadata is not needed inside the network (MONAI's sliding-window inferer
restores it on the output), only the values are.
"""

from __future__ import annotations

from typing import Any

import torch
from monai.data import MetaTensor

__all__ = ["accept_meta_tensors"]


def _as_plain(value: Any) -> Any:
    return value.as_tensor() if isinstance(value, MetaTensor) else value


def _plain_inputs(_module: torch.nn.Module, args: tuple) -> tuple:
    return tuple(_as_plain(a) for a in args)


def accept_meta_tensors(network: torch.nn.Module) -> torch.nn.Module:
    """Register a forward pre-hook on ``network`` that turns ``MetaTensor`` arguments into plain tensors.

    Returns the same module (state dict, parameters and TorchScript export of the bare network unchanged).
    """
    network.register_forward_pre_hook(_plain_inputs)
    return network

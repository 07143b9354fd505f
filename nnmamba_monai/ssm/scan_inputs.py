"""The inputs of one selective scan as one record, the form every backend and the chunked core receive.

The public call (:func:`nnmamba_monai.ssm.selective_scan`) keeps ``mamba_ssm.selective_scan_fn``'s positional
arguments; below it, a backend gets a :class:`ScanInputs` and ``return_last_state``, so the argument list is
written once. TorchScript compiles functions that take it (the torch backend's export path), which is why the
optional fields are spelled ``Optional[...]`` and this module has no ``from __future__ import annotations``.
"""

from typing import NamedTuple, Optional

import torch

__all__ = ["ScanInputs", "channel_slice"]


class ScanInputs(NamedTuple):
    """u, delta, A, B, C, D, z, delta_bias, delta_softplus of ``mamba_ssm.selective_scan_fn``, in its order.

    Shapes in the native form (other forms: :mod:`nnmamba_monai.ssm.scan_forms`):
        u, delta: (batch, D_inner, L); A: (D_inner, N); B, C: (batch, N, L); D, delta_bias: (D_inner,);
        z: (batch, D_inner, L) gate (output times SiLU(z)); delta_softplus: softplus on delta + delta_bias.
    """

    u: torch.Tensor
    delta: torch.Tensor
    A: torch.Tensor
    B: torch.Tensor
    C: torch.Tensor
    D: Optional[torch.Tensor] = None
    z: Optional[torch.Tensor] = None
    delta_bias: Optional[torch.Tensor] = None
    delta_softplus: bool = False


def channel_slice(inputs: ScanInputs, channels: slice, B: torch.Tensor, C: torch.Tensor) -> ScanInputs:
    """The scan of the channels ``channels`` only, reading ``B`` and ``C`` (each (batch, N, L)).

    Per-channel tensors (u, delta, A, D, z, delta_bias) are sliced along D_inner; B and C are given, because a
    channel group reads its own rows of grouped projections.
    """

    def part(t: Optional[torch.Tensor], batched: bool) -> Optional[torch.Tensor]:
        if t is None:
            return None
        return t[:, channels] if batched else t[channels]

    return ScanInputs(
        inputs.u[:, channels],
        inputs.delta[:, channels],
        inputs.A[channels],
        B,
        C,
        part(inputs.D, False),
        part(inputs.z, True),
        part(inputs.delta_bias, False),
        inputs.delta_softplus,
    )

"""Backend that forwards to ``mamba_ssm``'s CUDA kernel when that package happens to be installed."""

from __future__ import annotations

import importlib.util

import torch

__all__ = ["is_available", "selective_scan_mamba_ssm"]


def is_available() -> bool:
    """True when ``mamba_ssm`` can be imported (it is never required)."""
    return importlib.util.find_spec("mamba_ssm") is not None


def selective_scan_mamba_ssm(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
):
    """Call ``mamba_ssm.ops.selective_scan_interface.selective_scan_fn`` (CUDA tensors only)."""
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn

    return selective_scan_fn(
        u.contiguous(),
        delta.contiguous(),
        A.contiguous(),
        B.contiguous(),
        C.contiguous(),
        D,
        z.contiguous() if z is not None else None,
        delta_bias,
        delta_softplus,
        return_last_state,
    )

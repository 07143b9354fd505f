"""Backend that forwards to ``mamba_ssm``'s CUDA kernel when that package happens to be installed."""

from __future__ import annotations

import importlib.util

__all__ = ["is_available", "selective_scan_mamba_ssm"]


def is_available() -> bool:
    """True when ``mamba_ssm`` can be imported (it is never required)."""
    return importlib.util.find_spec("mamba_ssm") is not None


def selective_scan_mamba_ssm(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                             return_last_state=False):  # fmt: skip
    """``mamba_ssm.ops.selective_scan_interface.selective_scan_fn`` on contiguous copies (CUDA tensors only).

    Arguments and result as :func:`nnmamba_monai.ssm.selective_scan` (without ``backend``).
    """
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn

    u, delta, A, B, C = (t.contiguous() for t in (u, delta, A, B, C))
    z = z.contiguous() if z is not None else None
    return selective_scan_fn(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)

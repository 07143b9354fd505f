"""Backend that forwards to ``mamba_ssm``'s CUDA kernel when that package happens to be installed."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from nnmamba_monai.ssm.scan_inputs import ScanInputs

__all__ = ["is_available", "mamba_ssm_scan"]


# The opt-in stand-in (nnmamba_monai.mamba_ssm_compat) serves a ``mamba_ssm`` from here; it forwards to this
# engine, so it must never count as the real package (it would call itself).
_SHIM_ROOT = Path(__file__).resolve().parents[1] / "mamba_ssm_compat"


def is_available() -> bool:
    """True when the real ``mamba_ssm`` can be imported (it is never required; the shim does not count)."""
    try:
        spec = importlib.util.find_spec("mamba_ssm")
    except (ImportError, ValueError):
        return False
    if spec is None:
        return False
    origin = spec.origin or ""
    return not (origin and Path(origin).resolve().is_relative_to(_SHIM_ROOT))


def mamba_ssm_scan(inputs: ScanInputs, return_last_state: bool = False):
    """``mamba_ssm.ops.selective_scan_interface.selective_scan_fn`` on contiguous copies (CUDA tensors only).

    Any call form mamba_ssm accepts; the result as :func:`nnmamba_monai.ssm.selective_scan`.
    """
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn

    u, delta, A, B, C, D, z, delta_bias, delta_softplus = inputs
    u, delta, A, B, C = (t.contiguous() for t in (u, delta, A, B, C))
    z = z.contiguous() if z is not None else None
    return selective_scan_fn(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)

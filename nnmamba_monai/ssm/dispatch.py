"""One entry point, ``selective_scan``, over interchangeable backends.

Choice order: the ``backend`` argument when it is not ``"auto"``, else the environment variable
``NNMAMBA_SSM_BACKEND``, else automatic: on CUDA tensors ``triton`` when Triton imports, then ``mamba_ssm``
when installed, then ``torch``; on any other device ``torch``.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from typing import Callable

import torch

from nnmamba_monai.ssm import scan_mamba_ssm
from nnmamba_monai.ssm.scan_torch import selective_scan_torch

__all__ = ["BACKENDS", "ENV_VAR", "available_backends", "resolve_backend", "selective_scan"]

ENV_VAR = "NNMAMBA_SSM_BACKEND"
BACKENDS = ("auto", "torch", "triton", "mamba_ssm")


# Looked up once at import (find_spec does not import triton): torch.compile cannot trace importlib calls, and
# the dispatcher runs inside compiled Mamba layers.
_TRITON_FOUND = (
    importlib.util.find_spec("triton") is not None
    and importlib.util.find_spec("nnmamba_monai.ssm.scan_triton") is not None
)


def _triton_available() -> bool:
    return _TRITON_FOUND


def available_backends() -> list[str]:
    """Backends whose dependencies are importable on this machine (``torch`` always is)."""
    found = ["torch"]
    if _triton_available():
        found.append("triton")
    if scan_mamba_ssm.is_available():
        found.append("mamba_ssm")
    return found


def resolve_backend(backend: str, device: torch.device) -> str:
    """The concrete backend name for ``backend`` (argument, env var or auto) on ``device``."""
    requested = backend if backend != "auto" else os.environ.get(ENV_VAR, "auto").strip().lower() or "auto"
    if requested not in BACKENDS:
        raise ValueError(
            f"unknown selective-scan backend {requested!r} (from "
            f"{'the backend argument' if backend != 'auto' else ENV_VAR}); choose one of {BACKENDS}"
        )
    if requested == "auto":
        if device.type == "cuda":
            if _triton_available():
                return "triton"
            if scan_mamba_ssm.is_available():
                return "mamba_ssm"
        return "torch"
    if requested == "mamba_ssm" and not scan_mamba_ssm.is_available():
        raise RuntimeError("backend 'mamba_ssm' requested but the mamba_ssm package is not installed")
    if requested == "mamba_ssm" and device.type != "cuda":
        raise RuntimeError(f"backend 'mamba_ssm' runs on CUDA tensors only; got tensors on {device}")
    if requested == "triton" and not _triton_available():
        raise RuntimeError("backend 'triton' requested but Triton (or nnmamba_monai.ssm.scan_triton) is not importable")
    return requested


def _backend_fn(name: str) -> Callable:
    if name == "torch":
        return selective_scan_torch
    if name == "mamba_ssm":
        return scan_mamba_ssm.selective_scan_mamba_ssm
    # An import statement (not importlib.import_module) so that torch.compile can trace through the dispatch.
    from nnmamba_monai.ssm import scan_triton

    return scan_triton.selective_scan_triton


def _check_shapes(u, delta, A, B, C, D, z, delta_bias) -> None:
    if u.dim() != 3:
        raise ValueError(f"u must be (batch, d_inner, length); got shape {tuple(u.shape)}")
    batch, d_inner, length = u.shape
    if delta.shape != u.shape:
        raise ValueError(f"delta must have u's shape {tuple(u.shape)}; got {tuple(delta.shape)}")
    if A.dim() != 2 or A.shape[0] != d_inner:
        raise ValueError(f"A must be (d_inner={d_inner}, d_state); got {tuple(A.shape)}")
    d_state = A.shape[1]
    for name, t in (("B", B), ("C", C)):
        if tuple(t.shape) != (batch, d_state, length):
            raise ValueError(
                f"{name} must be (batch, d_state, length) = {(batch, d_state, length)}; got {tuple(t.shape)}"
            )
    for name, t in (("D", D), ("delta_bias", delta_bias)):
        if t is not None and tuple(t.shape) != (d_inner,):
            raise ValueError(f"{name} must be (d_inner,) = ({d_inner},); got {tuple(t.shape)}")
    if z is not None and z.shape != u.shape:
        raise ValueError(f"z must have u's shape {tuple(u.shape)}; got {tuple(z.shape)}")


def selective_scan(
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
    backend: str = "auto",
):
    """Mamba-1 selective scan with ``mamba_ssm.selective_scan_fn``'s arguments and output.

    Args:
        u, delta: (B, D_inner, L) input and time step.
        A: (D_inner, N) state matrix (diagonal per channel; negative for a stable scan).
        B, C: (B, N, L) input-dependent input and output projections.
        D: (D_inner,) skip weight.
        z: (B, D_inner, L) gate; the output is multiplied by SiLU(z).
        delta_bias: (D_inner,) added to delta before ``delta_softplus``.
        delta_softplus: apply softplus to the (biased) delta.
        return_last_state: also return the final state (B, D_inner, N).
        backend: "auto", "torch", "triton" or "mamba_ssm" (see the module docstring).
    Returns:
        (B, D_inner, L) in u's dtype; with ``return_last_state`` a tuple (out, last_state).
    """
    if not torch.jit.is_tracing():  # a trace records tensor ops only; the eager call checked the shapes
        _check_shapes(u, delta, A, B, C, D, z, delta_bias)
    name = resolve_backend(backend, u.device)
    return _backend_fn(name)(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)

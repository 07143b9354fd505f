"""``mamba_ssm``'s fused Mamba-1 layer function and the causal convolution, as compositions of torch ops.

:func:`mamba_inner_fn` is the arithmetic of ``mamba_ssm.ops.selective_scan_interface.mamba_inner_fn`` (the
whole Mamba-1 layer after ``in_proj``: causal convolution, projections, selective scan, ``out_proj``) built
from PyTorch ops and :func:`nnmamba_monai.ssm.selective_scan`, so it runs on every scan backend and autograd
gives its gradients. ``checkpoint_lvl`` only chose what mamba_ssm recomputed in its backward; it is accepted
and has no effect here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nnmamba_monai.ssm.dispatch import selective_scan

__all__ = ["causal_conv1d", "causal_conv1d_step", "mamba_inner_fn"]


def _activate(x: torch.Tensor, activation: str | None) -> torch.Tensor:
    if activation in ("silu", "swish"):
        return F.silu(x)
    if activation is None:
        return x
    raise ValueError(f"activation must be None, 'silu' or 'swish'; got {activation!r}")


def causal_conv1d(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, activation: str | None = None
) -> torch.Tensor:
    """Depthwise causal convolution: x (B, D, L), weight (D, W), bias (D,) -> (B, D, L) in x's dtype.

    Output token t sees input tokens t - W + 1 .. t (zeros before the first), as ``causal_conv1d_fn``.
    """
    width = weight.shape[-1]
    out = F.conv1d(x, weight.to(x.dtype)[:, None, :], None if bias is None else bias.to(x.dtype), padding=width - 1,
                   groups=x.shape[1])  # fmt: skip
    return _activate(out[..., : x.shape[-1]], activation)


def causal_conv1d_step(
    x: torch.Tensor,
    conv_state: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    activation: str | None = None,
) -> torch.Tensor:
    """New tokens x (B, D) or (B, D, L) through the convolution, conv_state (B, D, S >= W-1) updated in place.

    The state holds the last S inputs (oldest first), as ``causal_conv1d_update``; returns x's shape.
    """
    one_token = x.dim() == 2
    tokens = x[:, :, None] if one_token else x
    state_len, width, length = conv_state.shape[-1], weight.shape[-1], tokens.shape[-1]
    window = torch.cat([conv_state.to(tokens.dtype), tokens], dim=-1)  # (B, D, S + L)
    out = F.conv1d(window[:, :, state_len - width + 1 :], weight.to(tokens.dtype)[:, None, :],
                   None if bias is None else bias.to(tokens.dtype), groups=tokens.shape[1])  # fmt: skip
    conv_state.copy_(window[:, :, -state_len:])
    out = _activate(out[..., -length:], activation)
    return out[:, :, 0] if one_token else out


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """RMS norm over the last axis, times ``weight``, in x's dtype (at least float32 inside)."""
    wide = x.to(torch.promote_types(x.dtype, torch.float32))
    return (wide * torch.rsqrt(wide.square().mean(-1, keepdim=True) + eps) * weight.to(wide.dtype)).to(x.dtype)


def _projection(x_dbl: torch.Tensor, columns: slice, bias, rms_weight, eps: float, batch: int, complex_a: bool):
    """B or C (batch, N, L) - (batch, N, 2L) interleaved for a complex A - from the rows of x_dbl (B*L, ...)."""
    t = x_dbl[:, columns]
    if bias is not None:
        t = t + bias.to(t.dtype)
    if rms_weight is not None:
        t = _rms_norm(t, rms_weight, eps)
    t = t.reshape(batch, -1, t.shape[-1])  # (batch, L, N) or (batch, L, 2N)
    if complex_a:  # (b l) (n two) -> b n (l two)
        t = t.unflatten(-1, (-1, 2)).permute(0, 2, 1, 3).flatten(2)
        return t.contiguous()
    return t.transpose(1, 2)


def mamba_inner_fn(
    xz: torch.Tensor,
    conv1d_weight: torch.Tensor,
    conv1d_bias: torch.Tensor | None,
    x_proj_weight: torch.Tensor,
    delta_proj_weight: torch.Tensor,
    out_proj_weight: torch.Tensor,
    out_proj_bias: torch.Tensor | None,
    A: torch.Tensor,
    B: torch.Tensor | None = None,
    C: torch.Tensor | None = None,
    D: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    B_proj_bias: torch.Tensor | None = None,
    C_proj_bias: torch.Tensor | None = None,
    delta_softplus: bool = True,
    checkpoint_lvl: int = 1,
    b_rms_weight: torch.Tensor | None = None,
    c_rms_weight: torch.Tensor | None = None,
    dt_rms_weight: torch.Tensor | None = None,
    b_c_dt_rms_eps: float = 1e-6,
    backend: str = "auto",
) -> torch.Tensor:
    """The Mamba-1 layer after ``in_proj``, with ``mamba_ssm``'s ``mamba_inner_fn`` arguments: (B, L, C) out.

    Args:
        xz: (B, 2*D_inner, L), ``in_proj``'s output transposed: x then the gate z.
        conv1d_weight: (D_inner, 1, W); conv1d_bias: (D_inner,) or None.
        x_proj_weight: (dt_rank + 2N, D_inner) (2N doubled for a complex A); delta_proj_weight: (D_inner, dt_rank).
        out_proj_weight: (C, D_inner); out_proj_bias: (C,) or None.
        A: (D_inner, N), real or complex.
        B, C: None to project them from x (the usual case), else given in any form
            :func:`~nnmamba_monai.ssm.selective_scan` accepts.
        D, delta_bias: (D_inner,) skip weight and time-step bias.
        B_proj_bias, C_proj_bias: biases added to the projected B and C.
        delta_softplus: apply softplus to the (biased) time step.
        checkpoint_lvl: accepted for mamba_ssm's signature; no effect.
        b_rms_weight, c_rms_weight, dt_rms_weight: RMS-norm weights applied to the projected B, C (over N) and
            the time step (over D_inner), with ``b_c_dt_rms_eps``.
        backend: selective-scan backend.
    """
    batch, _, length = xz.shape
    dt_rank = delta_proj_weight.shape[1]
    d_state = A.shape[-1] * (2 if A.is_complex() else 1)
    x, z = xz.chunk(2, dim=1)
    x = causal_conv1d(x, conv1d_weight[:, 0], conv1d_bias, activation="silu")
    x_dbl = F.linear(x.transpose(1, 2).reshape(batch * length, -1), x_proj_weight)  # (B*L, dt_rank + 2N)
    delta = x_dbl[:, :dt_rank] @ delta_proj_weight.t()  # (B*L, D_inner)
    if dt_rms_weight is not None:
        delta = _rms_norm(delta, dt_rms_weight, b_c_dt_rms_eps)
    delta = delta.reshape(batch, length, -1).transpose(1, 2)
    if B is None:
        B = _projection(x_dbl, slice(dt_rank, dt_rank + d_state), B_proj_bias, b_rms_weight, b_c_dt_rms_eps, batch,
                        A.is_complex())  # fmt: skip
    if C is None:
        C = _projection(x_dbl, slice(x_dbl.shape[1] - d_state, None), C_proj_bias, c_rms_weight, b_c_dt_rms_eps,
                        batch, A.is_complex())  # fmt: skip
    y = selective_scan(x, delta, A, B, C, D, z=z, delta_bias=delta_bias, delta_softplus=delta_softplus,
                       backend=backend)  # fmt: skip
    return F.linear(y.transpose(1, 2), out_proj_weight, out_proj_bias)

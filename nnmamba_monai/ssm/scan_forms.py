"""The call forms of ``mamba_ssm.selective_scan_fn`` beyond (B, N, L) B/C and real A, for every backend.

``mamba_ssm`` 2.x accepts, for each of B and C independently:

- variable, (batch, N, L): one row per token, shared by every channel (the form every backend runs natively);
- grouped, (batch, G, N, L) with D_inner divisible by G: channel d reads group ``d // (D_inner / G)``;
- time-invariant, (D_inner, N): one row per channel, the same for every token;

and a complex A (D_inner, N), with variable/grouped B/C given as real tensors whose last axis interleaves
(real, imaginary) per token, (..., N, 2L), time-invariant ones as complex (D_inner, N); the output is then
``2 * Re(sum_n C h)`` (a state paired with its conjugate).

Two ways to run them on a backend that only knows the native form:

- :func:`scan_per_group`: grouped real scans as G native scans over channel slices (G is small: 1 to 8 in
  practice), joined along the channels; autograd joins the gradients.
- :func:`scan_general`: complex A and time-invariant B/C: the recurrence one token at a time in PyTorch, with
  autograd. The chunked closed form of :mod:`nnmamba_monai.ssm.scan_torch` and the Triton kernels carry a
  real state fed by one B/C row per token shared by all channels; a per-channel row or a rotating (complex)
  decay would be a second kernel family for forms that no Mamba layer uses (``Mamba`` builds (B, N, L) B/C
  and a real A). This path is exact and slow (one step per token); it follows the precision policy of
  :mod:`nnmamba_monai.ssm.precision`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from nnmamba_monai.ssm.scan_inputs import ScanInputs, channel_slice

__all__ = ["is_native", "needs_general", "scan_general", "scan_per_group"]


def _groups(t: torch.Tensor) -> int:
    """0 for time-invariant (D_inner, N), G for (batch, G, N, L), 1 for (batch, N, L)."""
    return 0 if t.dim() == 2 else (1 if t.dim() == 3 else t.shape[1])


def is_native(A: torch.Tensor, B: torch.Tensor, C: torch.Tensor) -> bool:
    """Real A and (batch, N, L) B and C: the form every backend runs as it is."""
    return B.dim() == 3 and C.dim() == 3 and not A.is_complex()


def needs_general(A: torch.Tensor, B: torch.Tensor, C: torch.Tensor) -> bool:
    """Complex A or a time-invariant B or C: only :func:`scan_general` (or mamba_ssm itself) runs it."""
    return A.is_complex() or B.dim() == 2 or C.dim() == 2


def _group_slice(t: torch.Tensor, group: int) -> torch.Tensor:
    """(batch, N, L) of group ``group`` from a (batch, G, N, L) or (batch, N, L) tensor (a view)."""
    if t.dim() == 3:
        return t
    return t[:, group if t.shape[1] > 1 else 0]


def scan_per_group(scan: Callable, inputs: ScanInputs, return_last_state: bool):
    """A real-A scan with grouped B/C as one ``scan`` call per group of channels (outputs joined on channels).

    ``scan`` is a backend function, ``scan(inputs, return_last_state)`` on the native form.
    """
    groups = max(_groups(inputs.B), _groups(inputs.C))
    per_group = inputs.u.shape[1] // groups
    outs, states = [], []
    for group in range(groups):
        channels = slice(group * per_group, (group + 1) * per_group)
        B, C = _group_slice(inputs.B, group), _group_slice(inputs.C, group)
        out, state = scan(channel_slice(inputs, channels, B, C), True)
        outs.append(out)
        states.append(state)
    out = outs[0] if groups == 1 else torch.cat(outs, dim=1)
    if not return_last_state:
        return out
    return out, states[0] if groups == 1 else torch.cat(states, dim=1)


def _per_channel(t: torch.Tensor, d_inner: int, length: int, complex_a: bool, compute: torch.dtype) -> torch.Tensor:
    """B or C as a tensor broadcastable to (batch, D_inner, N, L), in the compute dtype (complex if A is)."""
    complex_dtype = torch.complex128 if compute == torch.float64 else torch.complex64
    if t.dim() == 2:  # (D_inner, N): one row per channel, constant in time
        t = t.to(complex_dtype if complex_a else compute)
        return t[None, :, :, None]
    if complex_a:  # real (..., N, 2L): (real, imaginary) interleaved per token
        t = torch.view_as_complex(t.to(compute).unflatten(-1, (length, 2)).contiguous())
    else:
        t = t.to(compute)
    if t.dim() == 3:  # (batch, N, L): shared by every channel
        return t[:, None]
    return t.repeat_interleave(d_inner // t.shape[1], dim=1)  # (batch, G, N, L) -> per channel


def scan_general(inputs: ScanInputs, return_last_state: bool = False):
    """Any form ``mamba_ssm.selective_scan_fn`` accepts, one token at a time, differentiable by autograd.

    B and C may be in any of the forms in this module's docstring. The state is float32 (float64 when an input is
    float64; complex of that width for a complex A); the output is in u's dtype; the last state (B, D_inner, N)
    is in the state's dtype.
    """
    u, delta, A, B, C, D, z, delta_bias, delta_softplus = inputs
    device_type = u.device.type
    with torch.autocast(device_type=device_type, enabled=False):
        wide = any(t.dtype in (torch.float64, torch.complex128) for t in (u, delta, A, B, C))
        compute = torch.float64 if wide else torch.float32
        complex_a = A.is_complex()
        batch, d_inner, length = u.shape
        u_c = u.to(compute)
        delta_c = delta.to(compute)
        if delta_bias is not None:
            delta_c = delta_c + delta_bias.to(compute)[:, None]
        if delta_softplus:
            delta_c = F.softplus(delta_c)
        a_c = A.to(torch.complex128 if wide else torch.complex64) if complex_a else A.to(compute)
        b_c = _per_channel(B, d_inner, length, complex_a, compute)
        c_c = _per_channel(C, d_inner, length, complex_a, compute)
        drive = delta_c * u_c  # (batch, D, L)
        h = torch.zeros(batch, d_inner, A.shape[1], dtype=a_c.dtype, device=u.device)
        ys = []
        for t in range(length):
            b_t = b_c[..., t] if b_c.shape[-1] > 1 else b_c[..., 0]
            c_t = c_c[..., t] if c_c.shape[-1] > 1 else c_c[..., 0]
            h = torch.exp(delta_c[:, :, t, None] * a_c) * h + drive[:, :, t, None] * b_t
            y = (h * c_t).sum(-1)
            ys.append(2 * y.real if complex_a else y)
        y = torch.stack(ys, dim=-1) if ys else u_c.new_zeros(batch, d_inner, 0)
        if D is not None:
            y = y + u_c * D.to(compute)[:, None]
        if z is not None:
            y = y * F.silu(z.to(compute))
        out = y.to(u.dtype)
    return (out, h) if return_last_state else out

"""Test oracle: a plain step-by-step selective scan, and random inputs shaped like mamba_ssm's."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def step_by_step_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """The Mamba-1 recurrence one token at a time, in the inputs' dtype; returns (out, last_state)."""
    if delta_bias is not None:
        delta = delta + delta_bias[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    batch, d_inner, length = u.shape
    h = u.new_zeros(batch, d_inner, A.shape[1])
    ys = []
    for t in range(length):
        h = torch.exp(delta[:, :, t, None] * A) * h + (delta[:, :, t] * u[:, :, t])[:, :, None] * B[:, None, :, t]
        ys.append((h * C[:, None, :, t]).sum(-1))
    y = torch.stack(ys, dim=-1)
    if D is not None:
        y = y + u * D[:, None]
    if z is not None:
        y = y * F.silu(z)
    return y, h


def random_scan_inputs(batch, d_inner, length, d_state, dtype=torch.float32, delta_scale=1.0, seed=0):
    """Inputs shaped like mamba_ssm's: u/delta/z (B, D, L), A (D, N) < 0, B/C (B, N, L), D and bias (D,)."""
    gen = torch.Generator().manual_seed(seed)

    def rnd(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64)

    inputs = {
        "u": rnd(batch, d_inner, length),
        "delta": rnd(batch, d_inner, length) * delta_scale,
        "A": -torch.exp(rnd(d_inner, d_state) * 0.5 + 1.0),
        "B": rnd(batch, d_state, length),
        "C": rnd(batch, d_state, length),
        "D": rnd(d_inner),
        "z": rnd(batch, d_inner, length),
        "delta_bias": rnd(d_inner) * 0.5,
    }
    return {k: v.to(dtype) for k, v in inputs.items()}


def reference_scan_any_form(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """The Mamba-1 recurrence in float64 (complex128 for a complex A) for every form mamba_ssm accepts.

    B/C: (batch, N, L) shared by all channels, (batch, G, N, L) with channel d reading group d // (D_inner / G),
    or time-invariant (D_inner, N); with a complex A, variable B/C are real (..., N, 2L) holding (real,
    imaginary) pairs per token and the output is 2 * Re(sum_n C h). Returns (out float64, last state).
    """
    complex_a = A.is_complex()
    state_dtype = torch.complex128 if complex_a else torch.float64
    u, delta = u.double(), delta.double()
    if delta_bias is not None:
        delta = delta + delta_bias.double()[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    batch, d_inner, length = u.shape
    A = A.to(state_dtype)

    def token(X, t):  # X's row for token t, broadcastable to (batch, D_inner, N)
        if X.dim() == 2:
            return X.to(state_dtype)[None]
        X = X.double()
        if complex_a:
            X = torch.complex(X[..., 0::2], X[..., 1::2])
        if X.dim() == 3:
            return X[:, None, :, t]
        group_of_channel = torch.arange(d_inner) // (d_inner // X.shape[1])
        return X[:, group_of_channel, :, t]

    h = torch.zeros(batch, d_inner, A.shape[1], dtype=state_dtype)
    ys = []
    for t in range(length):
        h = torch.exp(delta[:, :, t, None] * A) * h + (delta[:, :, t] * u[:, :, t])[:, :, None] * token(B, t)
        y = (h * token(C, t)).sum(-1)
        ys.append(2 * y.real if complex_a else y)
    y = torch.stack(ys, dim=-1)
    if D is not None:
        y = y + u * D.double()[:, None]
    if z is not None:
        y = y * F.silu(z.double())
    return y, h


# This process's peak resident set in KiB, as a Python expression for scripts run in a child process. VmHWM belongs
# to the address space and starts afresh at exec; ru_maxrss does not, so a child forked from a large pytest process
# would report the parent's size (a full suite run made a 466 MiB check read as 1389 MiB).
PEAK_RSS_KIB = "int(next(line for line in open('/proc/self/status') if line.startswith('VmHWM')).split()[1])"

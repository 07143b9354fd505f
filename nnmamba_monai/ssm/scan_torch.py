"""Pure-PyTorch selective scan: the exact reference backend, forward and backward written out.

The Mamba-1 recurrence for every (batch b, channel d, state n) is::

    h_t = exp(delta_t * A) * h_{t-1} + delta_t * B_t * u_t
    y_t = sum_n C_t[n] * h_t[n]

Walking it one token at a time costs one Python step per token. Here the sequence is cut into short
chunks of ``T`` tokens; inside a chunk the recurrence is solved in closed form with cumulative sums,

    h_t = E_t * (F * h_in + cumsum_{s<=t}(w_s / E_s)),   E_t = exp(A * (Delta_t - Delta_0)),

where ``Delta`` is the running sum of ``delta`` within the chunk, ``F = exp(A * delta_0)`` the first token's
decay and ``w_s = delta_s * B_s * u_s``. ``1 / E_s`` grows as the state decays, so a chunk is only used when
its decay range stays below ``MAX_LOG_RANGE`` (``exp(60)`` ~ 1e26 leaves room below the float32 limit);
otherwise the chunk is halved, down to a single token, which is exact by construction. Only the carry
between chunks is sequential, on (B, D, N)-sized tensors. The cumsums are GEMMs with a triangular ones matrix.

The backward pass is the same computation run in reverse: the state's adjoint ``lambda_t = dL/dh_t`` obeys
``lambda_t = C_t * g_t + exp(delta_{t+1} * A) * lambda_{t+1}``, solved chunk by chunk with a reverse cumsum;
every gradient is then a product of ``lambda``, the recomputed states and the inputs, e.g.
``dL/dB_t = sum_d lambda_t * delta_t * u_t`` and ``dL/d(delta_t A) = lambda_t * (h_t - w_t)``. No autograd
graph is built: the forward keeps only the state entering each block (a few KiB per block), the backward
recomputes the block from it.

Precision follows :mod:`nnmamba_monai.ssm.precision`: the state is accumulated in float32 (float64 when an
input is float64) whatever the input dtype, with autocast off in the forward and the backward. The
block-level computation lives in :mod:`nnmamba_monai.ssm._chunked_scan`.
"""

from __future__ import annotations

import functools

import torch

from nnmamba_monai.ssm import _chunked_scan
from nnmamba_monai.ssm._chunked_scan import block_backward, block_bounds, scan_blocks
from nnmamba_monai.ssm.precision import autocast_off
from nnmamba_monai.ssm.scan_inputs import ScanInputs

__all__ = ["scan_core", "torch_scan"]


class _SelectiveScan(torch.autograd.Function):
    """out, last_state = selective_scan(u, delta, A, B, C, D, z, delta_bias), with a hand-written backward.

    The forward keeps only the state entering each block; the backward recomputes each block from it.
    """

    @staticmethod
    @autocast_off
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus):  # noqa: D102
        block_elements = _chunked_scan.BLOCK_ELEMENTS  # read at call time (tests make it small to get many blocks)
        inputs = ScanInputs(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
        out, h, entries, chunk_lens = scan_blocks(inputs, block_elements)
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, *entries)
        ctx.delta_softplus, ctx.chunk_lens = delta_softplus, chunk_lens
        ctx.bounds = block_bounds(*u.shape, A.shape[1], block_elements)
        return out, h

    @staticmethod
    @autocast_off
    def backward(ctx, grad_out, grad_last):  # noqa: D102
        u, delta, A, B, C, D, z, delta_bias, *entries = ctx.saved_tensors
        compute = entries[0].dtype
        A_c, D_c, bias_c = (None if t is None else t.to(compute) for t in (A, D, delta_bias))
        grad_h = torch.zeros_like(entries[0]) if grad_last is None else grad_last.to(compute)
        if grad_out is None:
            grad_out = torch.zeros_like(u)
        full = {"u": u, "delta": delta, "B": B, "C": C, "z": z}
        params = {name: t for name, t in (("A", A), ("D", D), ("delta_bias", delta_bias)) if t is not None}
        result = {name: torch.empty_like(t) for name, t in full.items() if t is not None}
        sums = {name: torch.zeros_like(t, dtype=compute) for name, t in params.items()}
        workspace: dict[str, torch.Tensor] = {}
        for (start, stop), chunk_len, h_in in zip(reversed(ctx.bounds), reversed(ctx.chunk_lens), reversed(entries)):
            part = {name: None if t is None else t[:, :, start:stop] for name, t in full.items()}
            block = ScanInputs(
                part["u"], part["delta"], A_c, part["B"], part["C"], D_c, part["z"], bias_c, ctx.delta_softplus
            )
            grads = block_backward(grad_out[:, :, start:stop], grad_h, block, h_in, chunk_len, workspace)
            for name in result:
                result[name][:, :, start:stop] = grads[name]
            for name in sums:
                sums[name] += grads[name]
            grad_h = grads["h_in"]
        grad_params = {name: sums[name].to(t.dtype) for name, t in params.items()}
        return (
            result["u"],
            result["delta"],
            grad_params["A"],
            result["B"],
            result["C"],
            grad_params.get("D"),
            result.get("z"),
            grad_params.get("delta_bias"),
            None,
        )


def _scan_outputs(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None,
    z: torch.Tensor | None,
    delta_bias: torch.Tensor | None,
    delta_softplus: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """out (B, D, L) and the last state (B, D, N): what a trace records, from flat arguments (a trace passes
    tensors and constants to a compiled function, not a record)."""
    out, h, _, _ = scan_blocks(ScanInputs(u, delta, A, B, C, D, z, delta_bias, delta_softplus))
    return out, h


@functools.cache
def _scripted_scan() -> torch.jit.ScriptFunction:
    """:func:`_scan_outputs` compiled by TorchScript once, on first use (export only)."""
    return torch.jit.script(_scan_outputs)


def scan_core(
    u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The bare recurrence: y (B, D, L) in u's dtype and the last state (B, D, N) in the compute dtype.

    ``delta`` is used as given (no bias, no softplus); there is no D skip and no gating.
    """
    out, last = torch_scan(ScanInputs(u, delta, A, B, C), return_last_state=True)
    return out, last


def torch_scan(inputs: ScanInputs, return_last_state: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """The ``torch`` backend: the selective scan in pure PyTorch, on inputs in the native form.

    Users call :func:`nnmamba_monai.ssm.selective_scan` (``backend="torch"``) or
    :func:`nnmamba_monai.ssm.selective_scan_torch`, which check shapes and map the other call forms onto this.

    Under ``torch.jit.trace`` (e.g. ``monai.bundle ckpt_export``) the scan is recorded as a call to its
    TorchScript-compiled forward, which keeps its loops and its data-dependent chunk length, so the exported
    network is exact for any sequence length, not only the traced one.

    Returns:
        out: (B, D_inner, L) in u's dtype; with ``return_last_state`` also the final state (B, D_inner, N) in the
        compute dtype (float32, float64 for float64 inputs).
    """
    if torch.jit.is_tracing():
        out, last_state = _scripted_scan()(*inputs)
    else:
        out, last_state = _SelectiveScan.apply(*inputs)
    return (out, last_state) if return_last_state else out

"""Triton selective scan (forward and backward): the GPU backend that needs no CUDA compile.

Semantics are exactly ``mamba_ssm.selective_scan_fn``'s (see :func:`triton_scan`). The kernels are
in :mod:`nnmamba_monai.ssm._triton_kernels`; this module holds the launch logic, the autograd rule and the
``torch.library`` registration.

Why chunked
-----------
At nnMamba's shapes (batch 2, d_inner 128..512, L = 32768..512, N = 16) mamba_ssm's CUDA kernel gives each
(batch, channel) row to one thread block and walks the whole sequence inside it: only B * D = 256..1024 rows
of parallel work, so it reaches 4-10 % of the H100's copy bandwidth (``anchor_h100.md``). Here the sequence
is also cut into chunks of ``chunk_len`` tokens, which multiplies the parallel work by L / chunk_len. Every
pass has the grid (channel blocks x chunks, batch), channel blocks fastest (programs that share a chunk's
B / C rows run together and hit L2):

1. summary - each chunk's state from a zero entry state and its total time step ``sum_t dt_t`` (the
   chunk's decay is ``exp(A * sum dt)``);
2. ``chunk_carry_kernel`` - the sequential dependency between chunks, ``entry[c+1] = decay[c] * entry[c] +
   summary[c]``, as an associative scan over the chunk axis (blocks of up to 128 chunks); it also yields the
   last state for ``return_last_state``;
3. output - each chunk again from its entry state, writing ``(sum_n C_n h_n + D u) * SiLU(z)``.

The state is float32 whatever the input dtype (bf16, fp16, fp32; fp64 inputs are computed in float32 too),
the output is written in u's dtype, and inputs are read through their strides: the transposed views the
Mamba layer produces (z and delta are channel-contiguous there) are never copied.

Two kernel families
-------------------
* Token-sequential (``fwd_seq_kernel``, ``bwd_seq_summary_kernel``; d_state <= ``seq_max_states``, i.e.
  nnMamba's 16 and 8): one channel per thread, 32 channels per warp, the N states of the channel held in
  registers ("d_state vectorised in registers"). The program walks its chunk token by token: per token a
  thread loads u, delta (and z) of its channel and the N-vectors B[:, t], C[:, t] (identical across the warp,
  so broadcast loads), updates the N states with one exp2 and one FMA each and reduces ``sum_n C h`` inside
  the thread. There is no scan network and no cross-lane traffic: ptxas/SASS counts for sm_90 give about 15
  instructions per (channel, state, token) for the output pass and 9 for the summary, against 58 and 27 for
  the tiled associative-scan versions below. Activation strides are not specialised, so the compiler keeps
  one channel per lane instead of vectorising along L; the output is allocated channel-contiguous
  ((B, L, D) memory seen as (B, D, L)) so that a warp's stores are 32 neighbouring channels.
* Tiled (``fwd_chunk_summary_kernel``, ``fwd_output_kernel``, ``bwd_chunk_summary_kernel``,
  ``bwd_scan_kernel``): a program holds (``block_d`` x ``chunk_len``) tiles with tokens along the lanes and
  loops over the N states, each an associative scan of (exp(dt A_n), dt u B_n) pairs along the tokens. Used
  for larger d_state (registers would not hold the states) and for the backward's main pass.

Backward (recompute, do not store)
----------------------------------
Only the chunk entry states (batch, chunks, N, D) in float32 are saved from the forward, chunk_len times
fewer values than the per-token states. The backward mirrors the forward:

1. summary (token-sequential when possible) - what each chunk adds to the adjoint flowing to the previous
   chunk, ``sum_t exp(A * sum_{s<=t} dt_s) * C_t * dy_t`` with dy = dout * SiLU(z); every exponent is <= 0;
2. ``chunk_carry_kernel`` with ``REVERSE`` - the adjoint arriving at each chunk's end, from the last chunk
   backwards (started from the gradient of the last state when it was returned and used);
3. ``bwd_scan_kernel`` (tiled) - per chunk and state n: recompute the states by a forward scan from the saved
   entry state, run the adjoint by a reverse scan, and form du, d delta (through softplus and the bias), dz
   (recomputing y), dA, dD and d delta_bias as per-program partial sums (reduced by torch afterwards,
   deterministic), dB and dC as float32 atomics across channel blocks (deterministic when one block covers
   all channels). The reverse scan needs exp(dt_{t+1} A); it comes from a second, shifted load of delta.
   It needs the state and the adjoint of the same token at once, which is why it is tiled: a
   token-sequential version would have to hold a chunk's states or reduce dB / dC across lanes per token.

Block sizes
-----------
``default_config``: 64-token chunks, halved (down to 8) until the token-sequential kernels have 16 warps
per SM (one thread per channel and chunk): 64 at stage 1 (128 x 32768), 16 at stage 2, 8 at stage 3.
Chunk-state traffic is 8 accesses * 4 bytes * N / chunk_len per (batch, channel, token) over forward and
backward: 8 bytes at chunk 64 and N 16, against 22 bytes of bf16 activations. The tiled backward scan uses
16 channels x 64 tokens (8 elements per thread at 4 warps) or 32 channels on shorter chunks: SASS counts of
98-122 instructions per element, with ~140-250 registers. ``ScanConfig`` overrides all of this and
``benchmarks/ssm_gpu.py --sweep`` times alternatives on a GPU.

Registration
------------
The forward and the backward are ``torch.library.triton_op`` operators (``nnmamba::selective_scan_fwd`` /
``nnmamba::selective_scan_bwd``) with the autograd rule attached by ``torch.library.register_autograd``, so
``torch.compile`` traces through them instead of breaking the graph on an ``autograd.Function``. They accept
any floating dtypes (no autocast rule is needed: the kernels cast on load and keep the state in float32, the
policy of :mod:`nnmamba_monai.ssm.precision`).
Under ``TRITON_INTERPRET=1`` (CPU tests) the kernels cannot be traced, so the same functions are registered
as opaque ``custom_op`` operators with shape-only fake implementations.

Triton is imported only when this module is imported, and the dispatcher imports it only when Triton is
installed; without Triton, :func:`is_available` is False and calling the scan raises a clear error.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Optional

import torch

from nnmamba_monai.ssm.scan_inputs import ScanInputs

__all__ = ["ScanConfig", "default_config", "is_available", "scan_with_config", "triton_scan"]

_HAS_TRITON = importlib.util.find_spec("triton") is not None

_MIN_THREADS_PER_SM = 512  # 16 warps per SM for the token-sequential kernels
_DEFAULT_NUM_SMS = 132  # H100 SXM; used when no CUDA device is visible (interpreter runs)
_CARRY_TILE = 4096  # elements of the (chunks x states) tile of the carry kernel


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "yes", "on")


def is_available() -> bool:
    """True when Triton is installed and can run here: a CUDA device, or ``TRITON_INTERPRET=1`` (CPU, slow)."""
    return _HAS_TRITON and (torch.cuda.is_available() or _interpreting())


@dataclass(frozen=True)
class ScanConfig:
    """Launch parameters of the Triton scan (block sizes and warp counts powers of two).

    Args:
        chunk_len: tokens per chunk (the unit of parallelism along L and of the saved states).
        block_d: channels per program of the tiled forward kernels (used when d_state > ``seq_max_states``).
        num_warps: warps per program of the tiled forward kernels.
        block_d_bwd: channels per program of the tiled backward scan kernel.
        num_warps_bwd: warps per program of the tiled backward scan kernel.
        seq_warps: warps per program of the token-sequential kernels (32 channels per warp).
        seq_max_states: largest d_state handled by the token-sequential kernels (its states sit in registers);
            0 forces the tiled kernels everywhere.
    """

    chunk_len: int = 64
    block_d: int = 16
    num_warps: int = 4
    block_d_bwd: int = 16
    num_warps_bwd: int = 4
    seq_warps: int = 2
    seq_max_states: int = 32

    def __post_init__(self) -> None:
        for name in ("chunk_len", "block_d", "num_warps", "block_d_bwd", "num_warps_bwd", "seq_warps"):
            value = getattr(self, name)
            if value < 1 or value & (value - 1):
                raise ValueError(f"ScanConfig.{name} must be a positive power of two; got {value}")
        if self.seq_max_states < 0:
            raise ValueError(f"ScanConfig.seq_max_states must be >= 0; got {self.seq_max_states}")

    def launch_args(self) -> tuple[int, ...]:
        """The integers the registered forward op takes after ``delta_softplus``."""
        return (
            self.chunk_len, self.block_d, self.num_warps, self.seq_warps, self.seq_max_states,
            self.block_d_bwd, self.num_warps_bwd,
        )  # fmt: skip


def _next_pow2(value: int) -> int:
    return 1 << max(int(value) - 1, 0).bit_length()


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def default_config(batch: int, d_inner: int, length: int, num_sms: int | None = None) -> ScanConfig:
    """The launch parameters used when none are given, for u of shape (batch, d_inner, length).

    The token-sequential kernels give one channel to each thread, so the number of threads is
    batch * d_inner * chunks: chunks start at 64 tokens and are halved (down to 8) until there are at least
    16 warps per SM to hide memory latency. The tiled backward scan takes 16 channels per program on long
    chunks and 32 on short ones (fewer instructions per element at these sizes, from ptxas/SASS counts).
    """
    if num_sms is None:
        num_sms = torch.cuda.get_device_properties(0).multi_processor_count if torch.cuda.is_available() else 0
        num_sms = num_sms or _DEFAULT_NUM_SMS
    chunk_len = 64
    while chunk_len > 8 and batch * d_inner * _cdiv(length, chunk_len) < _MIN_THREADS_PER_SM * num_sms:
        chunk_len //= 2
    chunk_len = min(chunk_len, max(8, _next_pow2(length)))
    padded_d = _next_pow2(d_inner)
    return ScanConfig(
        chunk_len=chunk_len,
        block_d=min(padded_d, max(16, min(64, 1024 // chunk_len))),
        num_warps=4,
        block_d_bwd=min(padded_d, 16 if chunk_len >= 64 else 32),
        num_warps_bwd=8 if chunk_len == 32 else 4,
        seq_warps=max(1, min(4, padded_d // 32)),
    )


def _strides3(t: torch.Tensor) -> tuple[int, int, int]:
    return t.stride(0), t.stride(1), t.stride(2)


def _channel_contiguous(u: torch.Tensor) -> torch.Tensor:
    """An uninitialised tensor shaped and typed like u (B, D, L) with channels contiguous (not a view)."""
    batch, d_inner, length = u.shape
    return torch.empty_strided((batch, d_inner, length), (length * d_inner, 1, d_inner), dtype=u.dtype, device=u.device)


def _pass1_buffers(u: torch.Tensor, num_chunks: int, d_state: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Uninitialised float32 outputs of pass 1 for u (B, D, L): dtsum (B, G, D) and per-state sums (B, G, N, D)."""
    batch, d_inner, _ = u.shape
    f32 = {"dtype": torch.float32, "device": u.device}
    return torch.empty(batch, num_chunks, d_inner, **f32), torch.empty(batch, num_chunks, d_state, d_inner, **f32)


def _optional_inputs(
    u: torch.Tensor, z: torch.Tensor | None, delta_bias: torch.Tensor | None, delta_softplus: bool
) -> tuple[dict[str, bool], torch.Tensor, torch.Tensor]:
    """(HAS_BIAS / SOFTPLUS constexprs, delta_bias argument, z argument): u stands in for an absent optional
    input (a valid pointer the kernels never read)."""
    flags = {"HAS_BIAS": delta_bias is not None, "SOFTPLUS": delta_softplus}
    return flags, delta_bias if delta_bias is not None else u, z if z is not None else u


def _carry_blocks(num_chunks: int, num_states: int) -> tuple[int, int]:
    """(BLOCK_S, CHUNK_BLOCK) of the carry kernel: up to 128 chunks per step, a tile of about 4096 elements."""
    chunk_block = min(128, _next_pow2(num_chunks + 1))
    block_s = max(16, min(_next_pow2(num_states), _CARRY_TILE // chunk_block))
    return block_s, chunk_block


if _HAS_TRITON:
    import triton
    from torch.library import custom_op, register_autograd, triton_op, wrap_triton

    from nnmamba_monai.ssm import _triton_kernels as _k

    def _launch(kernel):
        """``wrap_triton(kernel)`` (traceable by torch.compile); interpreted kernels cannot be wrapped."""
        return kernel if _interpreting() else wrap_triton(kernel)

    def _carry(
        dtsum: torch.Tensor, A: torch.Tensor, inp: torch.Tensor, init: torch.Tensor | None, reverse: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Pass 2 for dtsum (B, G, D), inp (B, G, N, D): entry states (B, G, N, D) and final state (B, N, D)."""
        batch, num_chunks, d_state, d_inner = inp.shape
        entry = torch.empty_like(inp)
        final = inp.new_empty(batch, d_state, d_inner)
        block_s, chunk_block = _carry_blocks(num_chunks, d_state * d_inner)
        grid = (triton.cdiv(d_state * d_inner, block_s), batch)
        _launch(_k.chunk_carry_kernel)[grid](
            dtsum, A, inp, init if init is not None else inp, entry, final,
            d_inner, d_state, num_chunks, A.stride(0), A.stride(1),
            BLOCK_S=block_s, CHUNK_BLOCK=chunk_block, REVERSE=reverse, HAS_INIT=init is not None,
            num_warps=4,
        )  # fmt: skip
        return entry, final

    def _scan_fwd(
        u: torch.Tensor,
        delta: torch.Tensor,
        A: torch.Tensor,
        B: torch.Tensor,
        C: torch.Tensor,
        D: Optional[torch.Tensor],
        z: Optional[torch.Tensor],
        delta_bias: Optional[torch.Tensor],
        delta_softplus: bool,
        chunk_len: int,
        block_d: int,
        num_warps: int,
        seq_warps: int,
        seq_max_states: int,
        block_d_bwd: int,
        num_warps_bwd: int,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Forward op: out (B, D, L) in u's dtype, last state (B, N, D) fp32, chunk entry states (B, G, N, D) fp32.

        ``block_d_bwd`` and ``num_warps_bwd`` are only recorded for the backward.
        """
        batch, d_inner, length = u.shape
        d_state = A.shape[1]
        num_chunks = triton.cdiv(length, chunk_len)
        dtsum, hsum = _pass1_buffers(u, num_chunks, d_state)
        flags, bias_arg, z_arg = _optional_inputs(u, z, delta_bias, delta_softplus)
        d_arg = D if D is not None else u
        if d_state <= seq_max_states:
            # Channel-contiguous output: a warp stores 32 neighbouring channels of one token at once.
            out = _channel_contiguous(u)
            block_seq = 32 * seq_warps
            grid = (triton.cdiv(d_inner, block_seq) * num_chunks, batch)
            common = (
                d_inner, length, num_chunks, triton.cdiv(d_inner, block_seq),
                *_strides3(u), *_strides3(delta), A.stride(0), A.stride(1), *_strides3(B), *_strides3(C),
                *_strides3(z_arg), *_strides3(out),
            )  # fmt: skip
            meta = {"N": d_state, "N_PAD": _next_pow2(d_state), "BLOCK_D": block_seq, "CHUNK": chunk_len}
            meta.update(flags, HAS_D=D is not None, HAS_Z=z is not None, num_warps=seq_warps)
            _launch(_k.fwd_seq_kernel)[grid](
                u, delta, bias_arg, A, B, C, d_arg, z_arg, hsum, out, dtsum, hsum, *common, SUMMARY=True, **meta
            )
            entry, last = _carry(dtsum, A, hsum, None, reverse=False)
            _launch(_k.fwd_seq_kernel)[grid](
                u, delta, bias_arg, A, B, C, d_arg, z_arg, entry, out, dtsum, hsum, *common, SUMMARY=False, **meta
            )
            return out, last, entry
        out = torch.empty_like(u)
        num_dblocks = triton.cdiv(d_inner, block_d)
        grid = (num_dblocks * num_chunks, batch)
        _launch(_k.fwd_chunk_summary_kernel)[grid](
            u, delta, bias_arg, A, B, dtsum, hsum,
            d_inner, length, d_state, num_chunks, num_dblocks,
            *_strides3(u), *_strides3(delta), A.stride(0), A.stride(1), *_strides3(B),
            BLOCK_D=block_d, CHUNK=chunk_len, num_warps=num_warps, **flags,
        )  # fmt: skip
        entry, last = _carry(dtsum, A, hsum, None, reverse=False)
        _launch(_k.fwd_output_kernel)[grid](
            u, delta, bias_arg, A, B, C, d_arg, z_arg, entry, out,
            d_inner, length, d_state, num_chunks, num_dblocks,
            *_strides3(u), *_strides3(delta), A.stride(0), A.stride(1), *_strides3(B), *_strides3(C),
            *_strides3(z_arg), *_strides3(out),
            BLOCK_D=block_d, CHUNK=chunk_len, HAS_D=D is not None, HAS_Z=z is not None, num_warps=num_warps,
            **flags,
        )  # fmt: skip
        return out, last, entry

    def _scan_bwd(
        u: torch.Tensor,
        delta: torch.Tensor,
        A: torch.Tensor,
        B: torch.Tensor,
        C: torch.Tensor,
        D: Optional[torch.Tensor],
        z: Optional[torch.Tensor],
        delta_bias: Optional[torch.Tensor],
        entry: torch.Tensor,
        dout: torch.Tensor,
        dlast: Optional[torch.Tensor],
        delta_softplus: bool,
        chunk_len: int,
        block_d: int,
        num_warps: int,
        seq_warps: int,
        seq_max_states: int,
    ) -> tuple[
        torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor
    ]:
        """Backward op: (du, d delta, dA, dB, dC, dD, dz, d delta_bias), each in its input's dtype.

        entry: (B, G, N, D) chunk entry states from the forward; dout: (B, D, L); dlast: (B, N, D) or None.
        Gradients of absent optional inputs come back as empty tensors.
        """
        batch, d_inner, length = u.shape
        d_state = A.shape[1]
        num_chunks = entry.shape[1]
        num_dblocks = triton.cdiv(d_inner, block_d)
        f32 = {"dtype": torch.float32, "device": u.device}
        grid = (num_dblocks * num_chunks, batch)
        flags, bias_arg, z_arg = _optional_inputs(u, z, delta_bias, delta_softplus)

        dtsum, gsum = _pass1_buffers(u, num_chunks, d_state)
        if d_state <= seq_max_states:
            block_seq = 32 * seq_warps
            _launch(_k.bwd_seq_summary_kernel)[(triton.cdiv(d_inner, block_seq) * num_chunks, batch)](
                delta, bias_arg, A, C, z_arg, dout, dtsum, gsum,
                d_inner, length, num_chunks, triton.cdiv(d_inner, block_seq),
                *_strides3(delta), A.stride(0), A.stride(1), *_strides3(C), *_strides3(z_arg), *_strides3(dout),
                N=d_state, N_PAD=_next_pow2(d_state), BLOCK_D=block_seq, CHUNK=chunk_len, HAS_Z=z is not None,
                num_warps=seq_warps, **flags,
            )  # fmt: skip
        else:
            _launch(_k.bwd_chunk_summary_kernel)[grid](
                delta, bias_arg, A, C, z_arg, dout, dtsum, gsum,
                d_inner, length, d_state, num_chunks, num_dblocks,
                *_strides3(delta), A.stride(0), A.stride(1), *_strides3(C), *_strides3(z_arg), *_strides3(dout),
                BLOCK_D=block_d, CHUNK=chunk_len, HAS_Z=z is not None, num_warps=num_warps, **flags,
            )  # fmt: skip
        adjoint, _ = _carry(dtsum, A, gsum, dlast, reverse=True)

        du = torch.empty_like(u)
        ddelta = torch.empty_like(delta)
        dz = torch.empty_like(z) if z is not None else u.new_empty(0)
        dB = torch.zeros(batch, d_state, length, **f32)
        dC = torch.zeros(batch, d_state, length, **f32)
        dA_part = torch.empty(batch, num_chunks, d_state, d_inner, **f32)
        dD_part = torch.empty(batch, num_chunks, d_inner, **f32) if D is not None else dA_part
        dbias_part = torch.empty(batch, num_chunks, d_inner, **f32) if delta_bias is not None else dA_part
        dz_arg = dz if z is not None else du
        _launch(_k.bwd_scan_kernel)[grid](
            u, delta, bias_arg, A, B, C, D if D is not None else u, z_arg, dout, entry, adjoint,
            du, ddelta, dz_arg, dB, dC, dA_part, dD_part, dbias_part,
            d_inner, length, d_state, num_chunks, num_dblocks,
            *_strides3(u), *_strides3(delta), A.stride(0), A.stride(1), *_strides3(B), *_strides3(C),
            *_strides3(z_arg), *_strides3(dout), *_strides3(du), *_strides3(ddelta), *_strides3(dz_arg),
            BLOCK_D=block_d, CHUNK=chunk_len, HAS_D=D is not None, HAS_Z=z is not None, num_warps=num_warps,
            **flags,
        )  # fmt: skip
        dA = dA_part.sum(dim=(0, 1)).t().to(A.dtype)
        dD = dD_part.sum(dim=(0, 1)).to(D.dtype) if D is not None else u.new_empty(0)
        dbias = dbias_part.sum(dim=(0, 1)).to(delta_bias.dtype) if delta_bias is not None else u.new_empty(0)
        return du, ddelta, dA, dB.to(B.dtype), dC.to(C.dtype), dD, dz, dbias

    def _scan_fwd_fake(u, delta, A, B, C, D, z, delta_bias, delta_softplus, chunk_len, *launch):
        """Shapes, dtypes and strides of the forward op's outputs (opaque registration under the interpreter)."""
        batch, d_inner, length = u.shape
        d_state = A.shape[1]
        num_chunks = _cdiv(length, chunk_len)
        seq_max_states = launch[3]
        if d_state <= seq_max_states:
            out = _channel_contiguous(u)
        else:
            out = torch.empty_like(u)
        last = u.new_empty(batch, d_state, d_inner, dtype=torch.float32)
        return out, last, u.new_empty(batch, num_chunks, d_state, d_inner, dtype=torch.float32)

    def _scan_bwd_fake(u, delta, A, B, C, D, z, delta_bias, entry, dout, dlast, *_launch_args):
        """Shapes and dtypes of the backward op's outputs (for the opaque registration under the interpreter)."""
        return (
            torch.empty_like(u), torch.empty_like(delta), torch.empty_like(A), torch.empty_like(B),
            torch.empty_like(C), torch.empty_like(D) if D is not None else u.new_empty(0),
            torch.empty_like(z) if z is not None else u.new_empty(0),
            torch.empty_like(delta_bias) if delta_bias is not None else u.new_empty(0),
        )  # fmt: skip

    if _interpreting():
        # torch.compile can only trace compiled (JIT) kernels; interpreted ones become opaque custom ops.
        custom_op("nnmamba::selective_scan_fwd", _scan_fwd, mutates_args=()).register_fake(_scan_fwd_fake)
        custom_op("nnmamba::selective_scan_bwd", _scan_bwd, mutates_args=()).register_fake(_scan_bwd_fake)
    else:
        triton_op("nnmamba::selective_scan_fwd", _scan_fwd, mutates_args=())
        triton_op("nnmamba::selective_scan_bwd", _scan_bwd, mutates_args=())

    def _setup_context(ctx, inputs, output) -> None:
        u, delta, A, B, C, D, z, delta_bias, delta_softplus, chunk_len, _, _, seq_warps, seq_max_states = inputs[:14]
        block_d_bwd, num_warps_bwd = inputs[14:]
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, output[2])
        ctx.launch = (delta_softplus, chunk_len, block_d_bwd, num_warps_bwd, seq_warps, seq_max_states)
        ctx.mark_non_differentiable(output[2])

    def _backward(ctx, dout, dlast, _dentry):
        u, delta, A, B, C, D, z, delta_bias, entry = ctx.saved_tensors
        if dout is None:
            dout = torch.zeros_like(u)
        grads = torch.ops.nnmamba.selective_scan_bwd(
            u, delta, A, B, C, D, z, delta_bias, entry, dout, dlast.contiguous() if dlast is not None else None,
            *ctx.launch,
        )  # fmt: skip
        du, ddelta, dA, dB, dC, dD, dz, dbias = grads
        return (
            du, ddelta, dA, dB, dC,
            dD if D is not None else None, dz if z is not None else None, dbias if delta_bias is not None else None,
            None, None, None, None, None, None, None, None,
        )  # fmt: skip

    register_autograd("nnmamba::selective_scan_fwd", _backward, setup_context=_setup_context)


def triton_scan(
    inputs: ScanInputs, return_last_state: bool = False, config: ScanConfig | None = None
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """The ``triton`` backend: the selective scan on the GPU with Triton, on inputs in the native form.

    Users call :func:`nnmamba_monai.ssm.selective_scan` (``backend="triton"``) or
    :func:`nnmamba_monai.ssm.selective_scan_triton`, which check shapes and map the other call forms onto this;
    call it directly for explicit launch parameters (benchmarks, tests).

    Args:
        inputs: u, delta (B, D_inner, L) of any floating dtype and any strides; A (D_inner, N) real; B, C
            (B, N, L); optional D, z, delta_bias (see :class:`~nnmamba_monai.ssm.scan_inputs.ScanInputs`).
        return_last_state: also return the final state (B, D_inner, N), float32.
        config: launch parameters; :func:`default_config` when None.
    Returns:
        out: (B, D_inner, L) in u's dtype (and the last state when asked).
    """
    u = inputs.u
    if not _HAS_TRITON:
        raise RuntimeError("the Triton selective scan needs the triton package (pip install triton)")
    if u.device.type != "cuda" and not _interpreting():
        raise RuntimeError(
            f"the Triton selective scan runs on CUDA tensors (got {u.device}); "
            "set TRITON_INTERPRET=1 before importing triton to run it on the CPU (slow, for tests)"
        )
    batch, d_inner, length = u.shape
    if config is None:
        config = default_config(batch, d_inner, length)
    out, last, _ = torch.ops.nnmamba.selective_scan_fwd(
        *inputs[:-1], bool(inputs.delta_softplus), *config.launch_args()
    )
    return (out, last.transpose(1, 2)) if return_last_state else out


def scan_with_config(config: ScanConfig | None) -> Callable[..., torch.Tensor | tuple[torch.Tensor, torch.Tensor]]:
    """:func:`triton_scan` with fixed launch parameters, called with ``selective_scan``'s arguments (native form
    only, no shape checks): ``scan_with_config(cfg)(u, delta, A, B, C, D=..., return_last_state=True)``."""

    def scan(*args, return_last_state: bool = False, **kwargs):
        return triton_scan(ScanInputs(*args, **kwargs), return_last_state, config)

    return scan

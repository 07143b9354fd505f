"""Triton kernels of the chunked selective scan; the design is explained in :mod:`nnmamba_monai.ssm.scan_triton`.

Notation shared by all kernels (one program = one batch row b, one chunk c of ``CHUNK`` tokens, one block of
``BLOCK_D`` channels; the tiled kernels hold (BLOCK_D, CHUNK) tiles with tokens along the second axis, the
token-sequential ones (at the end of the file) hold the (N_PAD, BLOCK_D) states of one token):

* ``dt`` is the processed time step: ``softplus(delta + delta_bias)`` (or without softplus / bias), 0 at
  padded positions so that padding leaves the state untouched (exp(0 * A) = 1, input 0).
* per state n: decay ``a_t = exp(dt_t * A[d, n])``, input ``x_t * B[n, t]`` with ``x_t = dt_t * u_t``.
* chunk buffers are float32 laid out (batch, chunk, state, channel) so that the per-state loads of a
  channel block are contiguous.

Only importable where Triton is installed; :mod:`nnmamba_monai.ssm.scan_triton` imports it on demand.
"""

from __future__ import annotations

import triton
import triton.language as tl

__all__ = [
    "chunk_carry_kernel",
    "fwd_chunk_summary_kernel",
    "fwd_output_kernel",
    "bwd_chunk_summary_kernel",
    "bwd_scan_kernel",
    "bwd_seq_summary_kernel",
    "fwd_seq_kernel",
]

# torch.nn.functional.softplus switches to the identity above this input (beta = 1), as does mamba_ssm.
SOFTPLUS_THRESHOLD = tl.constexpr(20.0)
LOG2E = tl.constexpr(1.4426950408889634)  # exp(x) = exp2(x * LOG2E); A is scaled once per program


@triton.jit
def _linear_combine(decay_left, value_left, decay_right, value_right):
    """Compose the affine maps h -> decay * h + value, left one first (associative, not commutative)."""
    return decay_left * decay_right, decay_right * value_left + value_right


@triton.jit
def _softplus(x):
    """log(1 + exp(x)) as torch computes it (identity above 20), with Kahan's log1p for tiny exp(x)."""
    e = tl.exp(tl.minimum(x, SOFTPLUS_THRESHOLD))
    w = 1.0 + e
    log1p_e = tl.where(w == 1.0, e, tl.log(w) * (e / (w - 1.0)))
    return tl.where(x > SOFTPLUS_THRESHOLD, x, log1p_e)


@triton.jit
def _softplus_grad(x):
    """d softplus / dx = sigmoid(x), exactly 1 above the threshold (torch's softplus_backward)."""
    return tl.where(x > SOFTPLUS_THRESHOLD, 1.0, tl.sigmoid(x))


@triton.jit
def _load_tile(ptr, offs_d, offs_t, stride_d, stride_l, mask):
    """(BLOCK_D, CHUNK) float32 tile of a (D, L) slice given by its strides; 0 outside ``mask``."""
    return tl.load(ptr + offs_d[:, None] * stride_d + offs_t[None, :] * stride_l, mask=mask, other=0.0).to(tl.float32)


@triton.jit
def _load_dt(delta_ptr, bias_ptr, offs_d, offs_t, stride_d, stride_l, mask, d_mask, HAS_BIAS, SOFTPLUS):
    """(pre-activation delta + bias, processed dt), both (BLOCK_D, CHUNK) float32; dt is 0 outside ``mask``."""
    pre = _load_tile(delta_ptr, offs_d, offs_t, stride_d, stride_l, mask)
    if HAS_BIAS:
        pre += tl.load(bias_ptr + offs_d, mask=d_mask, other=0.0).to(tl.float32)[:, None]
    if SOFTPLUS:
        dt = _softplus(pre)
    else:
        dt = pre
    return pre, tl.where(mask, dt, 0.0)


@triton.jit
def _gate_grad(z):
    """(silu(z), d silu / dz) for a float32 tile."""
    sig = tl.sigmoid(z)
    return z * sig, sig * (1.0 + z * (1.0 - sig))


@triton.jit
def _load_vec(ptr, offs, stride, mask):
    """float32 ``ptr[offs * stride]``, 0 outside ``mask``: a row of A, B or C, or one token of a (D, L) slice."""
    return tl.load(ptr + offs * stride, mask=mask, other=0.0).to(tl.float32)


@triton.jit
def _channel_block(D, num_dblocks, BLOCK_D: tl.constexpr):
    """(pid_b, pid_c, offs_d, d_mask) of a program on the grid (num_dblocks * chunks, batch), channel block fastest."""
    pid = tl.program_id(0)
    pid_b = tl.program_id(1).to(tl.int64)
    pid_d = pid % num_dblocks
    pid_c = pid // num_dblocks
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    return pid_b, pid_c, offs_d, offs_d < D


@triton.jit
def _tile_program(D, L, num_dblocks, BLOCK_D: tl.constexpr, CHUNK: tl.constexpr):
    """This program's tile in the tiled kernels: (pid_b, pid_c, offs_d, offs_t, d_mask, t_mask, mask), ``mask``
    being the (BLOCK_D, CHUNK) tile's."""
    pid_b, pid_c, offs_d, d_mask = _channel_block(D, num_dblocks, BLOCK_D)
    offs_t = pid_c * CHUNK + tl.arange(0, CHUNK)
    t_mask = offs_t < L
    return pid_b, pid_c, offs_d, offs_t, d_mask, t_mask, d_mask[:, None] & t_mask[None, :]


@triton.jit
def fwd_chunk_summary_kernel(
    u_ptr, delta_ptr, bias_ptr, A_ptr, B_ptr,  # inputs
    dtsum_ptr, hsum_ptr,  # outputs: (batch, chunks, D) and (batch, chunks, N, D)
    D, L, N, num_chunks, num_dblocks,
    su_b, su_d, su_l, sdl_b, sdl_d, sdl_l, sA_d, sA_n, sB_b, sB_n, sB_l,
    BLOCK_D: tl.constexpr, CHUNK: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
):  # fmt: skip
    """Pass 1 of the forward: each chunk's summary, the state it produces from a zero entry state.

    hsum[b, c, n, d] = sum_t exp(A[d, n] * sum_{s > t} dt_s) * dt_t * u_t * B[b, n, t]   (closed form, no scan:
    every exponent is <= 0 for dt >= 0, A < 0), dtsum[b, c, d] = sum_t dt_t (the chunk's decay is exp(A * dtsum)).
    """
    pid_b, pid_c, offs_d, offs_t, d_mask, t_mask, mask = _tile_program(D, L, num_dblocks, BLOCK_D, CHUNK)

    u = _load_tile(u_ptr + pid_b * su_b, offs_d, offs_t, su_d, su_l, mask)
    delta_b = delta_ptr + pid_b * sdl_b
    _, dt = _load_dt(delta_b, bias_ptr, offs_d, offs_t, sdl_d, sdl_l, mask, d_mask, HAS_BIAS, SOFTPLUS)
    x = dt * u
    later = tl.cumsum(dt, axis=1, reverse=True) - dt  # sum over the chunk's tokens after t
    chunk_row = pid_b * num_chunks + pid_c
    tl.store(dtsum_ptr + chunk_row * D + offs_d, tl.sum(dt, axis=1), mask=d_mask)
    for n in range(N):
        a_n = _load_vec(A_ptr + offs_d * sA_d, n, sA_n, d_mask)
        b_n = _load_vec(B_ptr + pid_b * sB_b + n * sB_n, offs_t, sB_l, t_mask)
        contrib = tl.exp(a_n[:, None] * later) * x * b_n[None, :]
        tl.store(hsum_ptr + (chunk_row * N + n) * D + offs_d, tl.sum(contrib, axis=1), mask=d_mask)


@triton.jit
def chunk_carry_kernel(
    dtsum_ptr, A_ptr, inp_ptr, init_ptr,  # (batch, chunks, D), (D, N), (batch, chunks, N, D), (batch, N, D)
    entry_ptr, final_ptr,  # outputs: (batch, chunks, N, D), (batch, N, D)
    D, N, num_chunks, sA_d, sA_n,
    BLOCK_S: tl.constexpr, CHUNK_BLOCK: tl.constexpr, REVERSE: tl.constexpr, HAS_INIT: tl.constexpr,
):  # fmt: skip
    """Pass 2: the sequential dependency between chunks, solved as a scan over the chunk axis.

    With chunks taken in processing order p (c = p forward, c = chunks - 1 - p with ``REVERSE``), the state
    before chunk p+1 is ``exp(A * dtsum[p]) * state_before[p] + inp[p]``; ``entry`` receives the state before
    each chunk, ``final`` the state after the last one, ``init`` (or 0) is the state before the first.
    Forward: inp = chunk summaries, entry = chunk entry states, final = last state. Backward (``REVERSE``):
    inp = adjoint summaries, entry = adjoint arriving at each chunk's end, init = gradient of the last state.

    Row r of a tile holds the element of processing index start + r - 1, so the inclusive scan of the tile
    directly gives the entry state of chunk start + r (an exclusive scan without shifting registers).
    """
    pid_s = tl.program_id(0)
    pid_b = tl.program_id(1).to(tl.int64)
    offs_s = pid_s * BLOCK_S + tl.arange(0, BLOCK_S)  # flattened (n, d), d fastest
    s_mask = offs_s < N * D
    d_idx = offs_s % D
    n_idx = offs_s // D
    a_s = tl.load(A_ptr + d_idx * sA_d + n_idx * sA_n, mask=s_mask, other=0.0).to(tl.float32)
    if HAS_INIT:
        carry = tl.load(init_ptr + pid_b * N * D + offs_s, mask=s_mask, other=0.0).to(tl.float32)
    else:
        carry = tl.zeros([BLOCK_S], dtype=tl.float32)
    rows = tl.arange(0, CHUNK_BLOCK)
    for start in range(0, num_chunks + 1, CHUNK_BLOCK):
        # The element of processing index p = start + r - 1 (identity where p is outside [0, chunks)).
        p_in = start + rows - 1
        in_mask = (p_in >= 0) & (p_in < num_chunks)
        if REVERSE:
            c_in = num_chunks - 1 - p_in
        else:
            c_in = p_in
        row_in = pid_b * num_chunks + c_in.to(tl.int64)
        m_in = in_mask[:, None] & s_mask[None, :]
        dts = tl.load(dtsum_ptr + row_in[:, None] * D + d_idx[None, :], mask=m_in, other=0.0)
        inp = tl.load(inp_ptr + row_in[:, None] * (N * D) + offs_s[None, :], mask=m_in, other=0.0)
        decay = tl.exp(dts * a_s[None, :])
        decay_prod, acc = tl.associative_scan((decay, inp), axis=0, combine_fn=_linear_combine)
        states = acc + decay_prod * carry[None, :]  # state before processing index start + r
        p_out = start + rows
        if REVERSE:
            c_out = num_chunks - 1 - p_out
        else:
            c_out = p_out
        row_out = pid_b * num_chunks + c_out.to(tl.int64)
        out_mask = (p_out < num_chunks)[:, None] & s_mask[None, :]
        tl.store(entry_ptr + row_out[:, None] * (N * D) + offs_s[None, :], states, mask=out_mask)
        # Rows past the last chunk hold identities, so the last row is the state after everything so far.
        carry = tl.sum(tl.where((rows == CHUNK_BLOCK - 1)[:, None], states, 0.0), axis=0)
    tl.store(final_ptr + pid_b * N * D + offs_s, carry, mask=s_mask)


@triton.jit
def fwd_output_kernel(
    u_ptr, delta_ptr, bias_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, entry_ptr,  # inputs
    out_ptr,  # output (batch, D, L) in u's dtype
    D, L, N, num_chunks, num_dblocks,
    su_b, su_d, su_l, sdl_b, sdl_d, sdl_l, sA_d, sA_n, sB_b, sB_n, sB_l, sC_b, sC_n, sC_l,
    sz_b, sz_d, sz_l, so_b, so_d, so_l,
    BLOCK_D: tl.constexpr, CHUNK: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr,
):  # fmt: skip
    """Pass 3 of the forward: the in-chunk scan from the chunk's entry state, output, D skip and gate.

    Per state n: h = scan of (a_t, x_t * B[n, t]) along the chunk + (running decay) * entry[n];
    y += C[n, t] * h. out = (y + D * u) * silu(z).
    """
    pid_b, pid_c, offs_d, offs_t, d_mask, t_mask, mask = _tile_program(D, L, num_dblocks, BLOCK_D, CHUNK)

    u = _load_tile(u_ptr + pid_b * su_b, offs_d, offs_t, su_d, su_l, mask)
    delta_b = delta_ptr + pid_b * sdl_b
    _, dt = _load_dt(delta_b, bias_ptr, offs_d, offs_t, sdl_d, sdl_l, mask, d_mask, HAS_BIAS, SOFTPLUS)
    x = dt * u
    chunk_row = pid_b * num_chunks + pid_c
    y = tl.zeros([BLOCK_D, CHUNK], dtype=tl.float32)
    for n in range(N):
        a_n = _load_vec(A_ptr + offs_d * sA_d, n, sA_n, d_mask)
        b_n = _load_vec(B_ptr + pid_b * sB_b + n * sB_n, offs_t, sB_l, t_mask)
        c_n = _load_vec(C_ptr + pid_b * sC_b + n * sC_n, offs_t, sC_l, t_mask)
        h_in = tl.load(entry_ptr + (chunk_row * N + n) * D + offs_d, mask=d_mask, other=0.0)
        decay = tl.exp(dt * a_n[:, None])
        decay_prod, h = tl.associative_scan((decay, x * b_n[None, :]), axis=1, combine_fn=_linear_combine)
        h += decay_prod * h_in[:, None]
        y += h * c_n[None, :]
    if HAS_D:
        y += u * tl.load(D_ptr + offs_d, mask=d_mask, other=0.0).to(tl.float32)[:, None]
    if HAS_Z:
        z = _load_tile(z_ptr + pid_b * sz_b, offs_d, offs_t, sz_d, sz_l, mask)
        y *= z * tl.sigmoid(z)
    out_ptrs = out_ptr + pid_b * so_b + offs_d[:, None] * so_d + offs_t[None, :] * so_l
    tl.store(out_ptrs, y.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def bwd_chunk_summary_kernel(
    delta_ptr, bias_ptr, A_ptr, C_ptr, z_ptr, dout_ptr,  # inputs
    dtsum_ptr, gsum_ptr,  # outputs: (batch, chunks, D) and (batch, chunks, N, D)
    D, L, N, num_chunks, num_dblocks,
    sdl_b, sdl_d, sdl_l, sA_d, sA_n, sC_b, sC_n, sC_l, sz_b, sz_d, sz_l, sg_b, sg_d, sg_l,
    BLOCK_D: tl.constexpr, CHUNK: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    HAS_Z: tl.constexpr,
):  # fmt: skip
    """Pass 1 of the backward: what each chunk adds to the adjoint flowing to the previous chunk.

    With dy = dout * silu(z), the adjoint of the state just before the chunk, times nothing from later chunks,
    is gsum[b, c, n, d] = sum_t exp(A[d, n] * sum_{s <= t} dt_s) * C[b, n, t] * dy_t (all exponents <= 0).
    """
    pid_b, pid_c, offs_d, offs_t, d_mask, t_mask, mask = _tile_program(D, L, num_dblocks, BLOCK_D, CHUNK)

    delta_b = delta_ptr + pid_b * sdl_b
    _, dt = _load_dt(delta_b, bias_ptr, offs_d, offs_t, sdl_d, sdl_l, mask, d_mask, HAS_BIAS, SOFTPLUS)
    dy = _load_tile(dout_ptr + pid_b * sg_b, offs_d, offs_t, sg_d, sg_l, mask)
    if HAS_Z:
        z = _load_tile(z_ptr + pid_b * sz_b, offs_d, offs_t, sz_d, sz_l, mask)
        dy *= z * tl.sigmoid(z)
    so_far = tl.cumsum(dt, axis=1)
    chunk_row = pid_b * num_chunks + pid_c
    tl.store(dtsum_ptr + chunk_row * D + offs_d, tl.sum(dt, axis=1), mask=d_mask)
    for n in range(N):
        a_n = _load_vec(A_ptr + offs_d * sA_d, n, sA_n, d_mask)
        c_n = _load_vec(C_ptr + pid_b * sC_b + n * sC_n, offs_t, sC_l, t_mask)
        contrib = tl.exp(a_n[:, None] * so_far) * dy * c_n[None, :]
        tl.store(gsum_ptr + (chunk_row * N + n) * D + offs_d, tl.sum(contrib, axis=1), mask=d_mask)


@triton.jit
def bwd_scan_kernel(
    u_ptr, delta_ptr, bias_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, dout_ptr, entry_ptr, adj_ptr,  # inputs
    du_ptr, ddelta_ptr, dz_ptr,  # outputs shaped like u (their own dtypes and strides)
    dB_ptr, dC_ptr,  # float32 (batch, N, L), accumulated with atomics over channel blocks
    dA_part_ptr, dD_part_ptr, dbias_part_ptr,  # float32 per-program partials: (B, chunks, N, D), (B, chunks, D) x2
    D, L, N, num_chunks, num_dblocks,
    su_b, su_d, su_l, sdl_b, sdl_d, sdl_l, sA_d, sA_n, sB_b, sB_n, sB_l, sC_b, sC_n, sC_l,
    sz_b, sz_d, sz_l, sg_b, sg_d, sg_l, sdu_b, sdu_d, sdu_l, sdd_b, sdd_d, sdd_l, sdz_b, sdz_d, sdz_l,
    BLOCK_D: tl.constexpr, CHUNK: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr,
):  # fmt: skip
    """Pass 3 of the backward: recompute the chunk's states from its entry state, scan the adjoint backwards
    from the adjoint arriving at the chunk's end, and form every gradient.

    Per state n, with h_t the state and g_t = dLoss/dh_t (adjoint):
      h = forward scan of (a_t, x_t B_t) + running decay * entry;  a_t h_{t-1} = h_t - x_t B_t (no shift needed)
      g = reverse scan of (a_{t+1}, C_t dy_t) + running decay * adj   (a_{t+1} from a second, shifted dt load;
          1 at the chunk's last token, where ``adj`` = a_{next} g_{next} carries the later chunks)
      du += g dt B;  d dt += g (B u + A a_t h_{t-1});  dA[d, n] += sum_t g dt a_t h_{t-1}
      dB[n, t] += sum_d g dt u;  dC[n, t] += sum_d dy h;  y += C h (recomputed for dz)
    """
    pid_b, pid_c, offs_d, offs_t, d_mask, t_mask, mask = _tile_program(D, L, num_dblocks, BLOCK_D, CHUNK)
    # The next token inside the same chunk (the chunk's last token has no successor here: decay 1).
    next_mask = d_mask[:, None] & ((tl.arange(0, CHUNK) < CHUNK - 1) & (offs_t + 1 < L))[None, :]

    delta_b = delta_ptr + pid_b * sdl_b
    u = _load_tile(u_ptr + pid_b * su_b, offs_d, offs_t, su_d, su_l, mask)
    pre, dt = _load_dt(delta_b, bias_ptr, offs_d, offs_t, sdl_d, sdl_l, mask, d_mask, HAS_BIAS, SOFTPLUS)
    _, dt_next = _load_dt(delta_b, bias_ptr, offs_d, offs_t + 1, sdl_d, sdl_l, next_mask, d_mask, HAS_BIAS, SOFTPLUS)
    dout = _load_tile(dout_ptr + pid_b * sg_b, offs_d, offs_t, sg_d, sg_l, mask)
    if HAS_Z:
        z = _load_tile(z_ptr + pid_b * sz_b, offs_d, offs_t, sz_d, sz_l, mask)
        gate, gate_grad = _gate_grad(z)
        dy = dout * gate
    else:
        dy = dout
    x = dt * u
    chunk_row = pid_b * num_chunks + pid_c
    y = tl.zeros([BLOCK_D, CHUNK], dtype=tl.float32)
    du = tl.zeros([BLOCK_D, CHUNK], dtype=tl.float32)
    ddt = tl.zeros([BLOCK_D, CHUNK], dtype=tl.float32)
    for n in range(N):
        a_n = _load_vec(A_ptr + offs_d * sA_d, n, sA_n, d_mask)
        b_n = _load_vec(B_ptr + pid_b * sB_b + n * sB_n, offs_t, sB_l, t_mask)
        c_n = _load_vec(C_ptr + pid_b * sC_b + n * sC_n, offs_t, sC_l, t_mask)
        state_row = (chunk_row * N + n) * D + offs_d
        h_in = tl.load(entry_ptr + state_row, mask=d_mask, other=0.0)
        g_out = tl.load(adj_ptr + state_row, mask=d_mask, other=0.0)
        a_col = a_n[:, None]
        a2_col = a_col * LOG2E  # exp(dt * A) as exp2: one multiply less per element
        inp = x * b_n[None, :]
        decay_prod, h = tl.associative_scan((tl.exp2(dt * a2_col), inp), axis=1, combine_fn=_linear_combine)
        h += decay_prod * h_in[:, None]
        adj_prod, g = tl.associative_scan(
            (tl.exp2(dt_next * a2_col), c_n[None, :] * dy), axis=1, combine_fn=_linear_combine, reverse=True
        )
        g += adj_prod * g_out[:, None]
        decayed_prev = h - inp  # a_t * h_{t-1}
        g_dt = g * dt
        du += g_dt * b_n[None, :]
        ddt += g * (b_n[None, :] * u + a_col * decayed_prev)
        y += h * c_n[None, :]
        tl.store(dA_part_ptr + state_row, tl.sum(g_dt * decayed_prev, axis=1), mask=d_mask)
        tl.atomic_add(dB_ptr + (pid_b * N + n) * L + offs_t, tl.sum(g_dt * u, axis=0), mask=t_mask, sem="relaxed")
        tl.atomic_add(dC_ptr + (pid_b * N + n) * L + offs_t, tl.sum(dy * h, axis=0), mask=t_mask, sem="relaxed")
    if HAS_D:
        d_skip = tl.load(D_ptr + offs_d, mask=d_mask, other=0.0).to(tl.float32)
        y += u * d_skip[:, None]
        du += dy * d_skip[:, None]
        tl.store(dD_part_ptr + chunk_row * D + offs_d, tl.sum(dy * u, axis=1), mask=d_mask)
    if HAS_Z:
        dz = dout * y * gate_grad
        dz_ptrs = dz_ptr + pid_b * sdz_b + offs_d[:, None] * sdz_d + offs_t[None, :] * sdz_l
        tl.store(dz_ptrs, dz.to(dz_ptr.dtype.element_ty), mask=mask)
    if SOFTPLUS:
        ddt *= _softplus_grad(pre)
    ddt = tl.where(mask, ddt, 0.0)
    if HAS_BIAS:
        tl.store(dbias_part_ptr + chunk_row * D + offs_d, tl.sum(ddt, axis=1), mask=d_mask)
    du_ptrs = du_ptr + pid_b * sdu_b + offs_d[:, None] * sdu_d + offs_t[None, :] * sdu_l
    tl.store(du_ptrs, du.to(du_ptr.dtype.element_ty), mask=mask)
    dd_ptrs = ddelta_ptr + pid_b * sdd_b + offs_d[:, None] * sdd_d + offs_t[None, :] * sdd_l
    tl.store(dd_ptrs, ddt.to(ddelta_ptr.dtype.element_ty), mask=mask)


# ---------------------------------------------------------------------------------------------------------
# Token-sequential kernels: the N states of a channel live in registers, channels across lanes and warps.
#
# A program walks its chunk one token at a time; per token and channel it loads u, delta (and z), and the
# N-vectors B[:, t] and C[:, t] (the same for every lane: broadcast loads), updates all N states with one
# exp2 and one FMA each and reduces y = sum_n C h inside the thread. No scan network, no shuffles between
# lanes for the recurrence: about a third of the instructions of the tiled associative scan per (d, n, t).
# Activation strides are left unspecialised so that the compiler does not vectorise along L, which would
# spread the channels of one token over fewer lanes.
# ---------------------------------------------------------------------------------------------------------

_FWD_SEQ_NO_SPECIALIZE = ["su_d", "su_l", "sdl_d", "sdl_l", "sz_d", "sz_l", "so_d", "so_l"]
_BWD_SEQ_NO_SPECIALIZE = ["sdl_d", "sdl_l", "sz_d", "sz_l", "sg_d", "sg_l"]


@triton.jit
def _seq_program(A_ptr, bias_ptr, D, num_dblocks, sA_d, sA_n, N, N_PAD: tl.constexpr, BLOCK_D: tl.constexpr,
                 HAS_BIAS: tl.constexpr):  # fmt: skip
    """This program's channels and states in the token-sequential kernels, with the parameters they hold:
    (pid_b, pid_c, offs_d, d_mask, offs_n, n_mask, nd_mask, A2, bias).

    A2 = A * log2(e) as an (N_PAD, BLOCK_D) tile (exp(dt * A) = exp2(dt * A2)); bias (BLOCK_D,), 0 without HAS_BIAS.
    """
    pid_b, pid_c, offs_d, d_mask = _channel_block(D, num_dblocks, BLOCK_D)
    offs_n = tl.arange(0, N_PAD)
    n_mask = offs_n < N
    nd_mask = n_mask[:, None] & d_mask[None, :]
    A2 = tl.load(A_ptr + offs_n[:, None] * sA_n + offs_d[None, :] * sA_d, mask=nd_mask, other=0.0).to(tl.float32)
    A2 = A2 * LOG2E
    bias = tl.zeros([BLOCK_D], dtype=tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs_d, mask=d_mask, other=0.0).to(tl.float32)
    return pid_b, pid_c, offs_d, d_mask, offs_n, n_mask, nd_mask, A2, bias


@triton.jit
def _token_dt(delta_ptr, t, stride_l, bias, d_mask, HAS_BIAS, SOFTPLUS):
    """Processed time step of token t for a block of channels: (BLOCK_D,) float32."""
    dt = _load_vec(delta_ptr, t, stride_l, d_mask)
    if HAS_BIAS:
        dt += bias
    if SOFTPLUS:
        dt = _softplus(dt)
    return dt


@triton.jit(do_not_specialize=_FWD_SEQ_NO_SPECIALIZE)
def fwd_seq_kernel(
    u_ptr, delta_ptr, bias_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, entry_ptr,  # inputs
    out_ptr, dtsum_ptr, hsum_ptr,  # outputs (out for the output pass, dtsum / hsum for the summary pass)
    D, L, num_chunks, num_dblocks,
    su_b, su_d, su_l, sdl_b, sdl_d, sdl_l, sA_d, sA_n, sB_b, sB_n, sB_l, sC_b, sC_n, sC_l,
    sz_b, sz_d, sz_l, so_b, so_d, so_l,
    N: tl.constexpr, N_PAD: tl.constexpr, BLOCK_D: tl.constexpr, CHUNK: tl.constexpr,
    HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr,
    SUMMARY: tl.constexpr,
):  # fmt: skip
    """Forward pass 1 (``SUMMARY``) or 3 over one chunk, token by token, states (N_PAD, BLOCK_D) in registers.

    SUMMARY: from a zero state, store the state at the chunk's end (hsum (batch, chunks, N, D)) and the
    chunk's total time step (dtsum (batch, chunks, D)). Otherwise: from the chunk's entry state, write
    out[b, d, t] = (sum_n C[n, t] h_t[n] + D u_t) * silu(z_t).
    """
    pid_b, pid_c, offs_d, d_mask, offs_n, n_mask, nd_mask, A2, bias = _seq_program(
        A_ptr, bias_ptr, D, num_dblocks, sA_d, sA_n, N, N_PAD, BLOCK_D, HAS_BIAS
    )
    chunk_row = pid_b * num_chunks + pid_c
    state_ptrs = (chunk_row * N + offs_n[:, None]) * D + offs_d[None, :]
    if SUMMARY:
        h = tl.zeros([N_PAD, BLOCK_D], dtype=tl.float32)
        dt_total = tl.zeros([BLOCK_D], dtype=tl.float32)
    else:
        h = tl.load(entry_ptr + state_ptrs, mask=nd_mask, other=0.0)
    d_skip = tl.zeros([BLOCK_D], dtype=tl.float32)
    if HAS_D:
        d_skip = tl.load(D_ptr + offs_d, mask=d_mask, other=0.0).to(tl.float32)
    u_row = u_ptr + pid_b * su_b + offs_d * su_d
    delta_row = delta_ptr + pid_b * sdl_b + offs_d * sdl_d
    z_row = z_ptr + pid_b * sz_b + offs_d * sz_d
    out_row = out_ptr + pid_b * so_b + offs_d * so_d
    b_col = B_ptr + pid_b * sB_b + offs_n * sB_n
    c_col = C_ptr + pid_b * sC_b + offs_n * sC_n
    start = pid_c * CHUNK
    for t in range(start, tl.minimum(start + CHUNK, L)):
        u = _load_vec(u_row, t, su_l, d_mask)
        dt = _token_dt(delta_row, t, sdl_l, bias, d_mask, HAS_BIAS, SOFTPLUS)
        b_t = _load_vec(b_col, t, sB_l, n_mask)
        h = tl.exp2(dt[None, :] * A2) * h + (dt * u)[None, :] * b_t[:, None]
        if SUMMARY:
            dt_total += dt
        else:
            c_t = _load_vec(c_col, t, sC_l, n_mask)
            y = tl.sum(h * c_t[:, None], axis=0)
            if HAS_D:
                y += d_skip * u
            if HAS_Z:
                z = _load_vec(z_row, t, sz_l, d_mask)
                y *= z * tl.sigmoid(z)
            tl.store(out_row + t * so_l, y.to(out_ptr.dtype.element_ty), mask=d_mask)
    if SUMMARY:
        tl.store(hsum_ptr + state_ptrs, h, mask=nd_mask)
        tl.store(dtsum_ptr + chunk_row * D + offs_d, dt_total, mask=d_mask)


@triton.jit(do_not_specialize=_BWD_SEQ_NO_SPECIALIZE)
def bwd_seq_summary_kernel(
    delta_ptr, bias_ptr, A_ptr, C_ptr, z_ptr, dout_ptr,  # inputs
    dtsum_ptr, gsum_ptr,  # outputs: (batch, chunks, D) and (batch, chunks, N, D)
    D, L, num_chunks, num_dblocks,
    sdl_b, sdl_d, sdl_l, sA_d, sA_n, sC_b, sC_n, sC_l, sz_b, sz_d, sz_l, sg_b, sg_d, sg_l,
    N: tl.constexpr, N_PAD: tl.constexpr, BLOCK_D: tl.constexpr, CHUNK: tl.constexpr,
    HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, HAS_Z: tl.constexpr,
):  # fmt: skip
    """Backward pass 1, token by token: gsum = sum_t exp(A * sum_{s <= t} dt_s) * C[n, t] * dy_t, dtsum = sum dt."""
    pid_b, pid_c, offs_d, d_mask, offs_n, n_mask, nd_mask, A2, bias = _seq_program(
        A_ptr, bias_ptr, D, num_dblocks, sA_d, sA_n, N, N_PAD, BLOCK_D, HAS_BIAS
    )
    delta_row = delta_ptr + pid_b * sdl_b + offs_d * sdl_d
    z_row = z_ptr + pid_b * sz_b + offs_d * sz_d
    dout_row = dout_ptr + pid_b * sg_b + offs_d * sg_d
    c_col = C_ptr + pid_b * sC_b + offs_n * sC_n
    so_far = tl.zeros([BLOCK_D], dtype=tl.float32)
    g = tl.zeros([N_PAD, BLOCK_D], dtype=tl.float32)
    start = pid_c * CHUNK
    for t in range(start, tl.minimum(start + CHUNK, L)):
        so_far += _token_dt(delta_row, t, sdl_l, bias, d_mask, HAS_BIAS, SOFTPLUS)
        dy = _load_vec(dout_row, t, sg_l, d_mask)
        if HAS_Z:
            z = _load_vec(z_row, t, sz_l, d_mask)
            dy *= z * tl.sigmoid(z)
        c_t = _load_vec(c_col, t, sC_l, n_mask)
        g += tl.exp2(so_far[None, :] * A2) * (c_t[:, None] * dy[None, :])
    chunk_row = pid_b * num_chunks + pid_c
    tl.store(gsum_ptr + (chunk_row * N + offs_n[:, None]) * D + offs_d[None, :], g, mask=nd_mask)
    tl.store(dtsum_ptr + chunk_row * D + offs_d, so_far, mask=d_mask)

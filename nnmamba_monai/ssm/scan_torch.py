"""Pure-PyTorch selective scan: the exact reference backend.

The Mamba-1 recurrence for every (batch b, channel d, state n) is::

    h_t = exp(delta_t * A) * h_{t-1} + delta_t * B_t * u_t
    y_t = sum_n C_t[n] * h_t[n]

Walking it one token at a time costs one Python step per token. Here the sequence is cut into short
chunks of ``T`` tokens; inside a chunk the recurrence is solved in closed form with cumulative sums,

    h_t = E_t * (E_0 * h_in + cumsum_{s<=t}(w_s / E_s)),   E_t = exp(A * (Delta_t - Delta_0)),

where ``Delta`` is the running sum of ``delta`` within the chunk and ``w_s = delta_s * B_s * u_s``.
``1 / E_s`` grows as the state decays, so a chunk is only used when its decay range stays below
``_MAX_LOG_RANGE`` (``exp(60)`` ~ 1e26 leaves room below the float32 limit, gradients included);
otherwise the chunk is halved, down to a single token, which is exact by construction. Only the carry
between chunks is sequential, on (B, D, N)-sized tensors.

The state is accumulated in float32 (float64 when the inputs are float64) whatever the input dtype.
Memory stays bounded: chunks are processed in blocks of about ``_BLOCK_ELEMENTS`` state elements, and
the backward pass recomputes each block from its saved entry state instead of storing every state.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

__all__ = ["selective_scan_torch", "scan_core"]

_CHUNK_LEN = 32  # tokens solved in closed form at once (power of two)
_BLOCK_ELEMENTS = 1 << 20  # state elements (B * D * tokens * N) handled per block
_MAX_LOG_RANGE = 60.0  # largest |A| * (Delta_t - Delta_0) allowed inside a chunk (exp(60) ~ 1e26)


def _compute_dtype(*tensors: torch.Tensor) -> torch.dtype:
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def _chunk_len_for_block(
    delta: torch.Tensor, a_absmax: torch.Tensor, chunk_len: int, max_log_range: float = _MAX_LOG_RANGE
) -> int:
    """Largest power-of-two chunk length (<= chunk_len) whose in-chunk decay range stays safe.

    delta: (B, D, Lb) with Lb a multiple of chunk_len; a_absmax: (D,) = max_n |A[d, n]|.
    """
    batch, channels, length = delta.shape[0], delta.shape[1], delta.shape[2]
    while chunk_len > 1:
        within = delta.reshape(batch, channels, length // chunk_len, chunk_len)[..., 1:].sum(-1)
        if float((within * a_absmax[:, None]).max()) <= max_log_range:
            break
        chunk_len = chunk_len // 2
    return chunk_len


def _scan_block(
    u: torch.Tensor,
    delta: torch.Tensor,
    B_g: torch.Tensor,
    C_g: torch.Tensor,
    A: torch.Tensor,
    h_in: torch.Tensor,
    workspace: dict[str, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scan one block of G chunks of T tokens.

    Args:
        u, delta: (B, D, G, T).
        B_g, C_g: (B, G, N, T).
        A: (D, N).
        h_in: (B, D, N) state entering the block.
        workspace: reusable buffers for the large intermediates (forward without autograd only);
            writing into warm memory instead of fresh allocations is about 2x faster on the CPU.
    Returns:
        y: (B, D, G, T) without the D skip; h_out: (B, D, N) state leaving the block.
    """
    batch, channels, num_chunks, chunk_len = u.shape[0], u.shape[1], u.shape[2], u.shape[3]
    big = [batch, channels, num_chunks, A.shape[1], chunk_len]  # (B, D, G, N, T)
    running = delta.cumsum(-1)
    # A * (Delta_t - Delta_0): log-decay since the chunk's first token.
    rel_running = (running - running[..., :1]).unsqueeze(3)
    first_decay = torch.exp(delta[..., 0].unsqueeze(-1) * A[:, None, :])  # (B, D, G, N)
    drive = (delta * u).unsqueeze(3)
    ones_upper = torch.ones(chunk_len, chunk_len, dtype=u.dtype, device=u.device).triu_()
    if workspace is None:
        log_rel = rel_running * A[:, None, :, None]
        rel_decay = torch.exp(log_rel)
        # exp(-x) rather than 1 / exp(x): the gradient of a division squares the (tiny) denominator.
        inputs = drive * B_g.unsqueeze(1) * torch.exp(-log_rel)
        # In-chunk cumsum as one GEMM with an upper-triangular ones matrix (faster than cumsum on CPU).
        partial = torch.matmul(inputs, ones_upper)
    else:
        rel_decay = torch.mul(rel_running, A[:, None, :, None], out=_buffer(workspace, "decay", big, u)).exp_()
        inputs = torch.mul(drive, B_g.unsqueeze(1), out=_buffer(workspace, "inputs", big, u)).div_(rel_decay)
        partial = torch.matmul(inputs, ones_upper, out=_buffer(workspace, "partial", big, u))
    # Carry between chunks: h_out[g] = decay_g * h_out[g-1] + input_g, sequential over G only, one
    # fused op per chunk on contiguous (B, D, N) slices.
    chunk_decay = (rel_decay[..., -1] * first_decay).movedim(2, 0).contiguous()  # (G, B, D, N)
    chunk_input = (rel_decay[..., -1] * partial[..., -1]).movedim(2, 0).contiguous()
    exits = [h_in]
    for g in range(num_chunks):
        exits.append(torch.addcmul(chunk_input[g], chunk_decay[g], exits[-1]))
    h_out = exits[-1]
    entry = (first_decay * torch.stack(exits[:-1], dim=2)).unsqueeze(-1)  # (B, D, G, N, 1)
    C_b = C_g.unsqueeze(1)
    if workspace is None:
        weighted = (partial + entry) * rel_decay * C_b
    else:
        weighted = partial.add_(entry).mul_(rel_decay).mul_(C_b)
    return weighted.sum(3), h_out


def _buffer(workspace: dict[str, torch.Tensor], name: str, shape: list[int], like: torch.Tensor) -> torch.Tensor:
    """A scratch tensor of ``shape`` kept in ``workspace`` between blocks of the same shape."""
    buf = workspace.get(name)
    if buf is None or list(buf.shape) != shape:
        buf = like.new_empty(shape)
        workspace[name] = buf
    return buf


def _block_bounds(
    batch: int, channels: int, length: int, d_state: int, chunk_len: int, block_elements: int = _BLOCK_ELEMENTS
) -> list[tuple[int, int]]:
    per_token = max(batch * channels * d_state, 1)
    block_len = max(chunk_len, (block_elements // per_token) // chunk_len * chunk_len)
    return [(start, min(start + block_len, length)) for start in range(0, length, block_len)]


def _pad_length(length: int, chunk_len: int) -> int:
    return (length + chunk_len - 1) // chunk_len * chunk_len


def _to_chunks(t: torch.Tensor, chunk_len: int) -> torch.Tensor:
    """(B, X, L) -> (B, X, G, T) view with T = chunk_len."""
    return t.reshape(t.shape[0], t.shape[1], t.shape[2] // chunk_len, chunk_len)


def _state_major(t: torch.Tensor, chunk_len: int) -> torch.Tensor:
    """(B, N, L) -> contiguous (B, G, N, T), the layout the block scan broadcasts over D."""
    return _to_chunks(t, chunk_len).transpose(1, 2).contiguous()


def _scan_forward(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    use_workspace: bool,
    max_chunk_len: int = _CHUNK_LEN,
) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor], list[tuple[int, int]], list[int]]:
    """The chunked forward over the whole sequence (also compiled by TorchScript for export, see :func:`scan_core`).

    Args:
        u, delta: (B, D, L); A: (D, N); B, C: (B, N, L), all in the compute dtype.
        use_workspace: reuse scratch buffers between blocks (only without autograd).
    Returns:
        y (B, D, L); the last state (B, D, N); the state entering each block; the blocks' [start, stop)
        bounds on the padded token axis; the chunk length used in each block.
    """
    batch, channels, length = u.shape[0], u.shape[1], u.shape[2]
    d_state = A.shape[1]
    padded = _pad_length(length, max_chunk_len)
    if padded != length:  # delta = 0 and u = 0 leave the state untouched
        pad = [0, padded - length]
        u, delta, B, C = F.pad(u, pad), F.pad(delta, pad), F.pad(B, pad), F.pad(C, pad)
    a_absmax = A.abs().amax(dim=1)
    bounds = _block_bounds(batch, channels, padded, d_state, max_chunk_len)
    y = u.new_empty([batch, channels, padded])
    h = u.new_zeros([batch, channels, d_state])
    entries: list[torch.Tensor] = []
    chunk_lens: list[int] = []
    workspace: dict[str, torch.Tensor] = {}
    for bound in bounds:
        start, stop = bound[0], bound[1]
        chunk_len = _chunk_len_for_block(delta[:, :, start:stop], a_absmax, max_chunk_len)
        entries.append(h)
        chunk_lens.append(chunk_len)
        u_g, delta_g, B_g, C_g = _block_inputs(u, delta, B, C, start, stop, chunk_len)
        y_blk, h = _scan_block(u_g, delta_g, B_g, C_g, A, h, workspace if use_workspace else None)
        y[:, :, start:stop] = y_blk.reshape(batch, channels, stop - start)
    return y[:, :, :length], h, entries, bounds, chunk_lens


class _ChunkedScan(torch.autograd.Function):
    """y, h_last = scan(u, delta, A, B, C) over (B, D, L) with recompute-in-backward."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C):  # noqa: D102 - documented on the class
        length = u.shape[-1]
        padded = _pad_length(length, _CHUNK_LEN)
        if padded != length:  # padded once here: the backward recomputes from the same padded inputs
            u, delta, B, C = (F.pad(t, (0, padded - length)) for t in (u, delta, B, C))
        y, h, entries, bounds, chunk_lens = _scan_forward(u, delta, A, B, C, use_workspace=True)
        ctx.save_for_backward(u, delta, A, B, C, *entries)
        ctx.bounds, ctx.chunk_lens, ctx.length = bounds, chunk_lens, length
        return y[..., :length], h

    @staticmethod
    def backward(ctx, grad_y, grad_h):  # noqa: D102
        u, delta, A, B, C, *entries = ctx.saved_tensors
        length, padded = ctx.length, u.shape[-1]
        batch, channels = u.shape[:2]
        if grad_y is None:
            grad_y = u.new_zeros((batch, channels, length))
        grad_y = F.pad(grad_y, (0, padded - length)) if padded != length else grad_y
        grad_h = torch.zeros_like(entries[0]) if grad_h is None else grad_h
        grads_out = [torch.empty_like(t) for t in (u, delta, B, C)]
        grad_A = torch.zeros_like(A)
        for (start, stop), chunk_len, h_in in zip(reversed(ctx.bounds), reversed(ctx.chunk_lens), reversed(entries)):
            with torch.enable_grad():
                block = [t.detach().requires_grad_() for t in (u[..., start:stop], delta[..., start:stop], A, h_in)]
                u_blk, delta_blk, A_leaf, h_leaf = block
                bc = [t.detach().requires_grad_() for t in (B[..., start:stop], C[..., start:stop])]
                args = _block_inputs(u_blk, delta_blk, bc[0], bc[1], 0, stop - start, chunk_len)
                y_blk, h_out = _scan_block(*args, A=A_leaf, h_in=h_leaf)
                grads = torch.autograd.grad(
                    (y_blk, h_out),
                    (u_blk, delta_blk, bc[0], bc[1], A_leaf, h_leaf),
                    (_to_chunks(grad_y[..., start:stop], chunk_len), grad_h),
                )
            for out, g in zip(grads_out, grads[:4]):
                out[..., start:stop] = g
            grad_A += grads[4]
            grad_h = grads[5]
        g_u, g_delta, g_B, g_C = (g[..., :length] for g in grads_out)
        return g_u, g_delta, grad_A, g_B, g_C


def _block_inputs(
    u: torch.Tensor, delta: torch.Tensor, B: torch.Tensor, C: torch.Tensor, start: int, stop: int, chunk_len: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Slice [start, stop) of the token axis and lay it out for _scan_block (u, delta, B_g, C_g)."""
    return (
        _to_chunks(u[:, :, start:stop], chunk_len),
        _to_chunks(delta[:, :, start:stop], chunk_len),
        _state_major(B[:, :, start:stop], chunk_len),
        _state_major(C[:, :, start:stop], chunk_len),
    )


def scan_core(
    u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The bare recurrence: y (B, D, L) and the last state (B, D, N), same dtype as the inputs.

    ``delta`` is used as given (no bias, no softplus); there is no D skip and no gating.
    Under ``torch.jit.trace`` (e.g. ``monai.bundle ckpt_export``) the scan is recorded as a call to the
    TorchScript-compiled forward, which keeps its loops and its data-dependent chunk length, so the exported
    network is exact for any sequence length, not only the traced one.
    """
    if torch.jit.is_tracing():
        return _scripted_scan()(u, delta, A, B, C)
    return _ChunkedScan.apply(u, delta, A, B, C)


def _scan_outputs(
    u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """y (B, D, L) and the last state (B, D, N) of :func:`_scan_forward`: the tensors a trace can record."""
    y, h, _, _, _ = _scan_forward(u, delta, A, B, C, False)
    return y, h


@functools.cache
def _scripted_scan() -> torch.jit.ScriptFunction:
    """:func:`_scan_outputs` compiled by TorchScript once, on first use (export only)."""
    return torch.jit.script(_scan_outputs)


def selective_scan_torch(
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
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Selective scan in pure PyTorch, with mamba_ssm's ``selective_scan_fn`` signature.

    Args:
        u, delta: (B, D_inner, L).
        A: (D_inner, N), real (negative for a stable scan).
        B, C: (B, N, L), input-dependent.
        D: (D_inner,) skip weight, optional.
        z: (B, D_inner, L) gate, optional; the output is multiplied by SiLU(z).
        delta_bias: (D_inner,), added to delta before the optional softplus.
        delta_softplus: apply softplus to delta (+ bias).
        return_last_state: also return the final state (B, D_inner, N) in the compute dtype.
    Returns:
        out: (B, D_inner, L) in u's dtype (and the last state when asked).
    """
    compute = _compute_dtype(u, delta, A, B, C)
    out_dtype = u.dtype
    u_c, delta_c, B_c, C_c, A_c = (t.to(compute) for t in (u, delta, B, C, A))
    if delta_bias is not None:
        delta_c = delta_c + delta_bias.to(compute)[:, None]
    if delta_softplus:
        delta_c = F.softplus(delta_c)
    y, last_state = scan_core(u_c, delta_c, A_c, B_c, C_c)
    if D is not None:
        y = torch.addcmul(y, u_c, D.to(compute)[:, None])
    if z is not None:
        gate = F.silu(z.to(compute))
        # in place when nothing needs y for a backward pass (inference): one pass fewer over (B, D_inner, L)
        y = y.mul_(gate) if not (torch.is_grad_enabled() and (y.requires_grad or gate.requires_grad)) else y * gate
    out = y.to(out_dtype)
    return (out, last_state) if return_last_state else out

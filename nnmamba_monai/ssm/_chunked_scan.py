"""The chunked selective scan, block by block: forward states and hand-written gradients.

Used by :mod:`nnmamba_monai.ssm.scan_torch` (the autograd function and the public call). A block is a range
of tokens holding about ``BLOCK_ELEMENTS`` state elements; inside it the sequence is cut into chunks of
``T <= CHUNK_LEN`` tokens solved in closed form (see that module's docstring for the equations).

Layout: the large per-block tensors are (B, D, N, P), P the block's tokens, so that every broadcast is over
a leading axis and each reduction is over a whole axis; per-chunk quantities are (G, B, D, N), so that the
carry loop over the G chunks walks contiguous slices. Bias, softplus, D skip and the SiLU(z) gate are applied
per block too, so no sequence-length temporary is made besides the output. Everything here is TorchScript-
compatible (:func:`scan_blocks` is compiled for export).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nnmamba_monai.ssm.precision import compute_dtype
from nnmamba_monai.ssm.scan_inputs import ScanInputs

CHUNK_LEN = 16  # tokens solved in closed form at once (power of two; 16 timed fastest on CPU)
BLOCK_ELEMENTS = 1 << 20  # state elements (B * D * tokens * N) handled per block
MAX_LOG_RANGE = 60.0  # largest |A| * (Delta_t - Delta_0) allowed inside a chunk (exp(60) ~ 1e26)


def chunk_len_for_block(
    delta: torch.Tensor, a_absmax: torch.Tensor, chunk_len: int, max_log_range: float = MAX_LOG_RANGE
) -> int:
    """Largest power-of-two chunk length (<= chunk_len) whose in-chunk decay range stays safe.

    delta: (B, D, L) with L a multiple of chunk_len; a_absmax: (D,) = max_n |A[d, n]|.
    """
    length = delta.shape[2]
    while chunk_len > 1:
        within = delta.reshape(delta.shape[0], delta.shape[1], length // chunk_len, chunk_len)[..., 1:].sum(-1)
        if float((within * a_absmax[:, None]).max()) <= max_log_range:
            break
        chunk_len = chunk_len // 2
    return chunk_len


def block_bounds(
    batch: int, channels: int, length: int, d_state: int, block_elements: int, chunk_len: int = CHUNK_LEN
) -> list[tuple[int, int]]:
    """[start, stop) token ranges of about ``block_elements`` state elements each (starts multiples of chunk_len)."""
    per_token = max(batch * channels * d_state, 1)
    block_len = max(chunk_len, (block_elements // per_token) // chunk_len * chunk_len)
    return [(start, min(start + block_len, length)) for start in range(0, length, block_len)]


def _pad_length(length: int, chunk_len: int) -> int:
    return (length + chunk_len - 1) // chunk_len * chunk_len


def _buffer(workspace: dict[str, torch.Tensor], name: str, shape: list[int], like: torch.Tensor) -> torch.Tensor:
    """A scratch tensor of ``shape``, kept in ``workspace`` for the next block of the same shape."""
    if name in workspace:
        buf = workspace[name]
        if list(buf.shape) == shape:
            return buf
    buf = like.new_empty(shape)
    workspace[name] = buf
    return buf


def _triangle(chunk_len: int, like: torch.Tensor, upper: bool) -> torch.Tensor:
    """(T, T) ones on and above (``upper``) or below the diagonal: x @ it is a (reverse) cumsum over T."""
    ones = torch.ones(chunk_len, chunk_len, dtype=like.dtype, device=like.device)
    return ones.triu_() if upper else ones.tril_()


def _pad_tokens(t: torch.Tensor, padded: int) -> torch.Tensor:
    """Zero-pad the last (token) axis to ``padded``."""
    return t if t.shape[-1] == padded else F.pad(t, [0, padded - t.shape[-1]])


def _block_inputs(
    u: torch.Tensor,
    delta: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    delta_bias: torch.Tensor | None,
    delta_softplus: bool,
    compute: torch.dtype,
    max_chunk_len: int = CHUNK_LEN,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One block of the inputs in the compute dtype, padded to a multiple of the chunk length.

    Args:
        u, delta: (B, D, n) slices; B, C: (B, N, n) slices; delta_bias: (D,) in the compute dtype.
    Returns:
        u and delta after bias/softplus: (B, D, P); delta before softplus (bias added): (B, D, n); B, C:
        (B, N, P), with P = n rounded up to a multiple of max_chunk_len. The padding has delta = u = B = C = 0,
        which leaves the state untouched.
    """
    length = u.shape[2]
    padded = _pad_length(length, max_chunk_len)
    pre = delta.to(compute)
    if delta_bias is not None:
        pre = pre + delta_bias[:, None]
    delta_c = F.softplus(pre) if delta_softplus else pre
    return (
        _pad_tokens(u.to(compute), padded),
        _pad_tokens(delta_c, padded).contiguous(),
        pre,
        _pad_tokens(B.to(compute), padded),
        _pad_tokens(C.to(compute), padded),
    )


def _block_states(
    drive: torch.Tensor,
    delta: torch.Tensor,
    B: torch.Tensor,
    A: torch.Tensor,
    h_in: torch.Tensor,
    chunk_len: int,
    workspace: dict[str, torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every state of one block, in closed form per chunk.

    Args:
        drive: delta * u, (B, D, P); delta: (B, D, P); B: (B, N, P); A: (D, N); h_in: (B, D, N) entering
            state; P = G * T, G chunks of T = chunk_len tokens.
        workspace: scratch buffers reused between blocks.
    Returns:
        states h: (B, D, N, P); rel_decay E = exp(A * (Delta_t - Delta_0)): (B, D, N, P); first-token decay
        F: (G, B, D, N); the chunk decay F * E_{T-1}: (G, B, D, N); the last token's E_{T-1}:
        (G, B, D, N); the leaving state: (B, D, N). All but the last live in the workspace (overwritten by the
        next block).
    """
    batch, channels, tokens = delta.shape[0], delta.shape[1], delta.shape[2]
    d_state = A.shape[1]
    num_chunks = tokens // chunk_len
    big = [batch, channels, d_state, tokens]
    chunked = [batch, channels, d_state, num_chunks, chunk_len]
    per_chunk = [num_chunks, batch, channels, d_state]
    delta4 = delta.view(batch, channels, num_chunks, chunk_len)
    running = delta4.cumsum(-1)
    rel_running = (running - running[..., :1]).view(batch, channels, 1, tokens)
    rel_decay = torch.mul(rel_running, A[:, :, None], out=_buffer(workspace, "decay", big, delta)).exp_()
    inputs = torch.mul(drive[:, :, None], B[:, None], out=_buffer(workspace, "inputs", big, delta)).div_(rel_decay)
    # Per-chunk quantities in (G, B, D, N), so that the carry loop walks contiguous slices.
    first_decay = _chunk_exp(delta4[..., 0], A, _buffer(workspace, "first", per_chunk, delta))
    last_decay = _chunk_exp(running[..., -1] - running[..., 0], A, _buffer(workspace, "last_decay", per_chunk, delta))
    chunk_decay = torch.mul(first_decay, last_decay, out=_buffer(workspace, "chunk_decay", per_chunk, delta))
    totals = _buffer(workspace, "totals", [batch * channels * d_state * num_chunks, 1], delta)
    torch.mm(inputs.view(-1, chunk_len), _ones_column(chunk_len, delta), out=totals)
    carry_input = torch.mul(
        last_decay,
        totals.view(batch, channels, d_state, num_chunks).permute(3, 0, 1, 2),
        out=_buffer(workspace, "carry_input", per_chunk, delta),
    )
    exits = _buffer(workspace, "exits", [num_chunks + 1, batch, channels, d_state], delta)
    exits[0] = h_in
    for g in range(num_chunks):
        torch.addcmul(carry_input[g], chunk_decay[g], exits[g], out=exits[g + 1])
    # The state entering each chunk joins the cumsum as part of the chunk's first input.
    inputs.view(chunked)[..., 0].addcmul_(first_decay.permute(1, 2, 3, 0), exits[:num_chunks].permute(1, 2, 3, 0))
    partial = _buffer(workspace, "partial", big, delta)
    torch.mm(inputs.view(-1, chunk_len), _triangle(chunk_len, delta, True), out=partial.view(-1, chunk_len))
    states = partial.mul_(rel_decay)
    return states, rel_decay, first_decay, chunk_decay, last_decay, exits[num_chunks].clone()


def _chunk_exp(per_chunk: torch.Tensor, A: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """exp(A * x) for x: (B, D, G) into out: (G, B, D, N)."""
    return torch.mul(per_chunk.permute(2, 0, 1).unsqueeze(-1), A, out=out).exp_()


def _ones_column(chunk_len: int, like: torch.Tensor) -> torch.Tensor:
    """(T, 1) ones: x @ it sums x over its T columns."""
    return torch.ones(chunk_len, 1, dtype=like.dtype, device=like.device)


def _ungated_output(
    states: torch.Tensor, C: torch.Tensor, u: torch.Tensor, D: torch.Tensor | None, length: int, out: torch.Tensor
) -> torch.Tensor:
    """y = sum_n C * h (+ D * u) before the gate, (B, D, length), from states (B, D, N, P), C (B, N, P) and
    u (B, D, P); ``out`` (shaped like states) receives C * h and may be ``states`` itself."""
    y = torch.mul(states, C[:, None], out=out).sum(2)[:, :, :length]
    if D is not None:
        y.addcmul_(u[:, :, :length], D[:, None])
    return y


def scan_blocks(
    inputs: ScanInputs, block_elements: int = BLOCK_ELEMENTS, max_chunk_len: int = CHUNK_LEN
) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor], list[int]]:
    """The whole forward, block by block (also compiled by TorchScript for export, see :func:`scan_core`).

    Args:
        inputs: the scan's inputs, in the native form (see :class:`~nnmamba_monai.ssm.scan_inputs.ScanInputs`).
    Returns:
        out (B, D, L) in u's dtype; the last state (B, D, N); the state entering each block (B, D, N);
        the chunk length used in each block.
    """
    u, delta, A, B, C, D, z, delta_bias, delta_softplus = inputs
    compute = compute_dtype(u, delta, A, B, C)
    A = A.to(compute)
    D = None if D is None else D.to(compute)
    delta_bias = None if delta_bias is None else delta_bias.to(compute)
    batch, channels, length = u.shape[0], u.shape[1], u.shape[2]
    a_absmax = A.abs().amax(dim=1)
    out = torch.empty([batch, channels, length], dtype=u.dtype, device=u.device)
    h = torch.zeros([batch, channels, A.shape[1]], dtype=compute, device=u.device)
    entries: list[torch.Tensor] = []
    chunk_lens: list[int] = []
    workspace: dict[str, torch.Tensor] = {}
    for bound in block_bounds(batch, channels, length, A.shape[1], block_elements, max_chunk_len):
        start, stop = bound[0], bound[1]
        u_c, delta_c, _, B_c, C_c = _block_inputs(
            u[:, :, start:stop],
            delta[:, :, start:stop],
            B[:, :, start:stop],
            C[:, :, start:stop],
            delta_bias,
            delta_softplus,
            compute,
            max_chunk_len,
        )
        chunk_len = chunk_len_for_block(delta_c, a_absmax, max_chunk_len)
        entries.append(h)
        chunk_lens.append(chunk_len)
        states, _, _, _, _, h = _block_states(delta_c * u_c, delta_c, B_c, A, h, chunk_len, workspace)
        y = _ungated_output(states, C_c, u_c, D, stop - start, states)
        if z is not None:
            y.mul_(F.silu(z[:, :, start:stop].to(compute)))
        out[:, :, start:stop] = y
    return out, h, entries, chunk_lens


def block_backward(
    grad_out: torch.Tensor,
    grad_h: torch.Tensor,
    block: ScanInputs,
    h_in: torch.Tensor,
    chunk_len: int,
    workspace: dict[str, torch.Tensor],
) -> dict[str, torch.Tensor]:
    """Gradients of one block, recomputed from its entering state.

    Args:
        grad_out: (B, D, n) gradient of the block's output; grad_h: (B, D, N) gradient of its leaving state;
        block: the scan's inputs sliced to the block, with A, D and delta_bias in the compute dtype;
        h_in: (B, D, N) its entering state; chunk_len and workspace as in the forward.
    Returns:
        "u", "delta", "z": (B, D, n); "B", "C": (B, N, n); "A": (D, N); "D", "delta_bias": (D,); "h_in":
        (B, D, N), in the compute dtype; entries for absent inputs are left out.
    """
    u, delta, A, B, C, D, z, delta_bias, delta_softplus = block
    compute = A.dtype
    length = u.shape[2]
    u_c, delta_c, pre, B_c, C_c = _block_inputs(u, delta, B, C, delta_bias, delta_softplus, compute)
    drive = delta_c * u_c
    states, rel_decay, first_decay, chunk_decay, last_decay, _ = _block_states(
        drive, delta_c, B_c, A, h_in, chunk_len, workspace
    )
    big = list(states.shape)
    chunked = big[:3] + [big[3] // chunk_len, chunk_len]
    scratch = _buffer(workspace, "scratch", big, states)
    grads: dict[str, torch.Tensor] = {}

    # Through the gate and the skip: out = (y + D * u) * silu(z).
    if z is not None:
        z_c = z.to(compute)
        gate_sigmoid = torch.sigmoid(z_c)
        y = _ungated_output(states, C_c, u_c, D, length, scratch)
        grads["z"] = grad_out * y * (gate_sigmoid * (1.0 + z_c * (1.0 - gate_sigmoid)))
        grad_y = _pad_tokens(grad_out * (z_c * gate_sigmoid), big[3])
    else:
        grad_y = _pad_tokens(grad_out.to(compute), big[3])
    if D is not None:
        grads["D"] = (grad_y * u_c).sum((0, 2))
    grad_y4 = grad_y[:, :, None]

    # dL/dC = sum_d h * g.
    grads["C"] = torch.mul(states, grad_y4, out=scratch).sum(1)[:, :, :length]
    # The adjoint lambda, chunk by chunk: lambda_t * E_t = reverse-cumsum(E_s * C_s * g_s) + E_{T-1} * mu, where
    # mu is the adjoint reaching the chunk's last token from the chunks after it.
    scaled = torch.mul(rel_decay, C_c[:, None], out=_buffer(workspace, "adjoint_in", big, states)).mul_(grad_y4)
    num_chunks = chunked[3]
    totals = torch.mm(scaled.view(-1, chunk_len), _ones_column(chunk_len, states))
    first_totals = first_decay * totals.view(chunked[:4]).permute(3, 0, 1, 2)  # (G, B, D, N)
    arriving = torch.empty([num_chunks + 1] + big[:3], dtype=compute, device=states.device)
    arriving[num_chunks] = grad_h
    for g in range(num_chunks - 1, -1, -1):
        torch.addcmul(first_totals[g], chunk_decay[g], arriving[g + 1], out=arriving[g])
    grads["h_in"] = arriving[0].clone()
    scaled.view(chunked)[..., chunk_len - 1].addcmul_(last_decay.permute(1, 2, 3, 0), arriving[1:].permute(1, 2, 3, 0))
    adjoint = _buffer(workspace, "adjoint", big, states)
    torch.mm(scaled.view(-1, chunk_len), _triangle(chunk_len, states, False), out=adjoint.view(-1, chunk_len))
    adjoint.div_(rel_decay)

    # dL/dw with w = drive * B: dB = sum_d lambda * drive, d(drive) = sum_n lambda * B.
    drive4, B4 = drive[:, :, None], B_c[:, None]
    grads["B"] = torch.mul(adjoint, drive4, out=scratch).sum(1)[:, :, :length]
    grad_drive = torch.mul(adjoint, B4, out=scratch).sum(2)
    # Decay: dL/d(exp(delta_t A)) = lambda_t * h_{t-1}, and exp(delta_t A) * h_{t-1} = h_t - w_t.
    # w is rounded exactly as in the forward (a fused multiply-subtract would leave its rounding error, e.g. a
    # non-zero gradient for A where the state before the token is exactly zero).
    decayed = states.sub_(torch.mul(drive4, B4, out=scratch)).mul_(adjoint)
    grads["A"] = torch.matmul(decayed, delta_c[:, :, :, None]).sum(0).squeeze(-1)
    grad_delta = torch.matmul(A[:, None, :], decayed).squeeze(2).addcmul_(grad_drive, u_c)[:, :, :length]
    grad_u = (grad_drive * delta_c)[:, :, :length]
    if D is not None:
        grad_u.addcmul_(grad_y[:, :, :length], D[:, None])
    if delta_softplus:
        grad_delta = grad_delta * torch.sigmoid(pre)
    if delta_bias is not None:
        grads["delta_bias"] = grad_delta.sum((0, 2))
    grads["delta"] = grad_delta
    grads["u"] = grad_u
    return grads

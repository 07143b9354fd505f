"""The Triton scan against the torch backend, run by Triton's interpreter on the CPU.

Not collected by the normal test run (the name does not start with ``test_``): ``tests/test_scan_triton.py``
runs this file in a subprocess with ``TRITON_INTERPRET=1`` set before Triton is imported. Shapes are tiny
because the interpreter executes every program in Python; small ``chunk_len`` / ``block_d`` values make them
span several chunks and channel blocks all the same.
"""

from __future__ import annotations

import os

import pytest
import torch

if os.environ.get("TRITON_INTERPRET") != "1":  # pragma: no cover - guarded by the launcher
    raise RuntimeError("run through tests/test_scan_triton.py: TRITON_INTERPRET=1 must be set before importing triton")

from nnmamba_monai.ssm import Mamba, selective_scan, selective_scan_torch, selective_scan_triton  # noqa: E402
from nnmamba_monai.ssm.scan_triton import ScanConfig, is_available, scan_with_config  # noqa: E402
from tests.helpers import random_scan_inputs, step_by_step_scan  # noqa: E402

NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")
SMALL = ScanConfig(chunk_len=16, block_d=4, block_d_bwd=4)  # several chunks and channel blocks at tiny sizes
TILED = ScanConfig(chunk_len=16, block_d=4, block_d_bwd=4, seq_max_states=0)  # the tiled forward kernels


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def _kwargs(tensors: dict, flags: str) -> dict:
    """Optional arguments selected by the letters of ``flags``: D, z, bias, softplus."""
    return {
        "D": tensors["D"] if "D" in flags else None,
        "z": tensors["z"] if "z" in flags else None,
        "delta_bias": tensors["delta_bias"] if "b" in flags else None,
        "delta_softplus": "s" in flags,
    }


def _run_both(shape, flags, dtype=torch.float32, config=SMALL, seed=0, last_weight=True):
    """Forward + backward through both backends with the same random upstream gradients.

    Returns (triton leaves, torch leaves, (out, last) triton, (out, last) torch).
    """
    inp = random_scan_inputs(*shape, dtype=torch.float32, seed=seed)
    if "s" not in flags:
        inp["delta"] = inp["delta"].abs()  # without softplus a stable scan needs delta >= 0
    inp = {k: v.to(dtype) for k, v in inp.items()}
    used = [k for k in NAMES if k in ("u", "delta", "A", "B", "C") or _kwargs(inp, flags)[k] is not None]
    gen = torch.Generator().manual_seed(seed + 1)
    w_out = torch.randn(shape[0], shape[1], shape[2], generator=gen)
    w_last = torch.randn(shape[0], shape[1], shape[3], generator=gen) if last_weight else None
    results = []
    for fn in (scan_with_config(config), selective_scan_torch):
        leaves = {k: inp[k].clone().requires_grad_(k in used) for k in NAMES}
        out, last = fn(
            leaves["u"], leaves["delta"], leaves["A"], leaves["B"], leaves["C"],
            return_last_state=True, **_kwargs(leaves, flags),
        )  # fmt: skip
        loss = (out.float() * w_out).sum()
        if w_last is not None:
            loss = loss + (last.float() * w_last).sum()
        loss.backward()
        results.append((leaves, (out, last)))
    (tri_leaves, tri_out), (ref_leaves, ref_out) = results
    return tri_leaves, ref_leaves, tri_out, ref_out, used


def test_interpreter_is_active():
    assert is_available()
    assert torch.cuda.is_available() is False  # really the CPU interpreter


@pytest.mark.parametrize(
    "shape, flags, config",
    [
        ((2, 5, 50, 4), "Dzbs", SMALL),  # L = 50: 4 chunks of 16, the last one partial; 2 channel blocks of 4
        ((2, 5, 50, 4), "Dzbs", TILED),  # same through the tiled forward kernels (used for large d_state)
        ((2, 5, 50, 4), "", SMALL),  # bare recurrence
        ((1, 4, 32, 3), "zs", SMALL),  # L a multiple of the chunk; odd d_state
        ((1, 4, 32, 3), "zs", TILED),
        ((1, 3, 7, 2), "Db", SMALL),  # a single partial chunk
        ((1, 8, 1, 4), "Dzbs", SMALL),  # one token
        ((1, 40, 24, 4), "Dzbs", ScanConfig(chunk_len=8, seq_warps=1)),  # 2 channel blocks of 32, 3 chunks
    ],
    ids=[
        "multi_chunk",
        "multi_chunk_tiled",
        "bare",
        "exact_chunks",
        "exact_chunks_tiled",
        "one_chunk",
        "one_token",
        "wide",
    ],
)
def test_forward_and_all_gradients_fp32(shape, flags, config):
    tri, ref, (out, last), (ref_out, ref_last), used = _run_both(shape, flags, config=config)
    assert out.dtype == torch.float32 and out.shape == ref_out.shape
    assert last.dtype == torch.float32 and last.shape == (shape[0], shape[1], shape[3])
    assert rel_err(out, ref_out) <= 1e-4
    assert rel_err(last, ref_last) <= 1e-4
    for k in used:
        assert tri[k].grad is not None and tri[k].grad.dtype == tri[k].dtype, k
        assert rel_err(tri[k].grad, ref[k].grad) <= 1e-4, (k, rel_err(tri[k].grad, ref[k].grad))
    for k in set(NAMES) - set(used):
        assert tri[k].grad is None, k


def test_forward_matches_step_by_step_oracle_and_default_config():
    """Against the plain recurrence too (not only the torch backend), with the default launch config."""
    inp = {k: v.double() for k, v in random_scan_inputs(2, 6, 40, 8).items()}
    kwargs = {"D": inp["D"], "z": inp["z"], "delta_bias": inp["delta_bias"], "delta_softplus": True}
    ref, ref_last = step_by_step_scan(inp["u"], inp["delta"], inp["A"], inp["B"], inp["C"], **kwargs)
    f32 = {k: v.float() for k, v in inp.items()}
    out, last = selective_scan_triton(
        f32["u"], f32["delta"], f32["A"], f32["B"], f32["C"], D=f32["D"], z=f32["z"],
        delta_bias=f32["delta_bias"], delta_softplus=True, return_last_state=True,
    )  # fmt: skip
    assert rel_err(out, ref) <= 1e-5
    assert rel_err(last, ref_last) <= 1e-5


def test_gradient_through_last_state_only():
    inp = random_scan_inputs(1, 4, 40, 4)
    leaves = {k: inp[k].clone().requires_grad_() for k in ("u", "delta", "A", "B", "C")}
    ref = {k: inp[k].clone().requires_grad_() for k in ("u", "delta", "A", "B", "C")}
    _, last = scan_with_config(SMALL)(*leaves.values(), delta_softplus=True, return_last_state=True)
    _, ref_last = selective_scan_torch(*ref.values(), delta_softplus=True, return_last_state=True)
    last.sum().backward()
    ref_last.sum().backward()
    for k in ("u", "delta", "A", "B"):
        assert rel_err(leaves[k].grad, ref[k].grad) <= 1e-4, k
    assert not leaves["C"].grad.any()  # C only reads the state


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_inputs_fp32_state(dtype):
    tri, ref, (out, last), (ref_out, ref_last), used = _run_both((2, 5, 50, 4), "Dzbs", dtype=dtype)
    assert out.dtype == dtype and last.dtype == torch.float32
    # Both backends keep the state in float32; what differs is rounding of the half-precision results.
    assert rel_err(out, ref_out) <= 1e-2
    assert rel_err(last, ref_last) <= 1e-3
    for k in used:
        assert tri[k].grad.dtype == dtype, k
        assert rel_err(tri[k].grad, ref[k].grad) <= 2e-2, (k, rel_err(tri[k].grad, ref[k].grad))


def test_mixed_dtypes_as_under_autocast_and_strided_views():
    """bf16 activations with fp32 A / D / bias (what autocast hands the scan), delta and z channel-contiguous
    views as the Mamba layer produces them: read through their strides, never copied."""
    inp = random_scan_inputs(2, 6, 45, 4)
    low = {k: inp[k].to(torch.bfloat16) for k in ("u", "delta", "B", "C", "z")}
    delta_t = low["delta"].transpose(1, 2).contiguous().transpose(1, 2)  # (B, D, L) view, stride(1) == 1
    z_t = low["z"].transpose(1, 2).contiguous().transpose(1, 2)
    assert delta_t.stride(1) == 1 and z_t.stride(1) == 1
    args = (low["u"], delta_t, inp["A"], low["B"], low["C"])
    kwargs = {"D": inp["D"], "z": z_t, "delta_bias": inp["delta_bias"], "delta_softplus": True}
    out = scan_with_config(SMALL)(*args, **kwargs)
    ref = selective_scan_torch(*args, **kwargs)
    assert out.dtype == torch.bfloat16
    assert rel_err(out, ref) <= 1e-2


def test_strong_decay_stays_finite():
    """delta * |A| up to ~1000 per token: the closed-form chunk summaries have only non-positive exponents."""
    inp = random_scan_inputs(1, 4, 40, 4)
    delta = inp["delta"].abs() * 50.0
    out, last = scan_with_config(SMALL)(inp["u"], delta, inp["A"], inp["B"], inp["C"], return_last_state=True)
    ref, ref_last = step_by_step_scan(
        inp["u"].double(), delta.double(), inp["A"].double(), inp["B"].double(), inp["C"].double()
    )
    assert torch.isfinite(out).all() and torch.isfinite(last).all()
    assert rel_err(out, ref) <= 1e-5
    assert rel_err(last, ref_last) <= 1e-5


def test_dispatch_and_mamba_layer_under_autocast():
    """selective_scan(backend="triton") and a Mamba layer on the triton backend inside torch.autocast."""
    inp = random_scan_inputs(1, 4, 20, 4)
    args = (inp["u"], inp["delta"].abs(), inp["A"], inp["B"], inp["C"])
    torch.testing.assert_close(
        selective_scan(*args, backend="triton"), selective_scan_torch(*args), rtol=1e-5, atol=1e-6
    )

    torch.manual_seed(0)
    layer_tri = Mamba(d_model=4, d_state=4, backend="triton")
    layer_ref = Mamba(d_model=4, d_state=4, backend="torch")
    layer_ref.load_state_dict(layer_tri.state_dict())
    x = torch.randn(2, 24, 4)
    outs = []
    for layer in (layer_tri, layer_ref):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = layer(x)
        out.float().square().mean().backward()
        outs.append(out)
    assert outs[0].dtype == outs[1].dtype == torch.bfloat16
    assert rel_err(outs[0], outs[1]) <= 2e-2
    for (name, p_tri), p_ref in zip(layer_tri.named_parameters(), layer_ref.parameters()):
        assert p_tri.grad is not None and torch.isfinite(p_tri.grad).all(), name
        assert rel_err(p_tri.grad, p_ref.grad) <= 5e-2, (name, rel_err(p_tri.grad, p_ref.grad))


def test_torch_compile_traces_the_custom_op():
    """fullgraph=True: the registered triton_op is traced, no graph break and no error; values unchanged."""
    inp = random_scan_inputs(1, 4, 20, 4)
    names = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")

    def fn(u, delta, A, B, C, D, z, delta_bias):
        return scan_with_config(SMALL)(u, delta, A, B, C, D, z, delta_bias, delta_softplus=True).sum()

    compiled = torch.compile(fn, backend="aot_eager", fullgraph=True)
    leaves = [inp[k].clone().requires_grad_() for k in names]
    ref_leaves = [inp[k].clone().requires_grad_() for k in names]
    value = compiled(*leaves)
    ref = fn(*ref_leaves)
    value.backward()
    ref.backward()
    assert rel_err(value, ref) <= 1e-6
    for k, a, b in zip(names, leaves, ref_leaves):
        assert rel_err(a.grad, b.grad) <= 1e-6, k


def test_mamba_layer_compiles_without_graph_break():
    """The dispatcher and the Mamba layer on the triton backend trace as one graph (fullgraph=True)."""
    torch.manual_seed(0)
    layer = Mamba(d_model=4, d_state=4, backend="triton")
    x = torch.randn(2, 24, 4)
    eager = layer(x)
    compiled = torch.compile(layer, backend="aot_eager", fullgraph=True)(x)
    assert rel_err(compiled, eager) <= 1e-6
    compiled.square().sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in layer.parameters())

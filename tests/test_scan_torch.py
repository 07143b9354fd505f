"""The pure-PyTorch selective scan against a plain step-by-step recurrence."""

from __future__ import annotations

import pytest
import torch

from nnmamba_monai.ssm import scan_torch, selective_scan, selective_scan_torch
from tests.helpers import random_scan_inputs, step_by_step_scan

SHAPES = [  # (batch, d_inner, length, d_state); lengths that are not multiples of the 32-token chunk
    (1, 3, 1, 4),
    (2, 4, 31, 16),
    (2, 5, 33, 8),
    (1, 8, 100, 16),
    (2, 16, 257, 16),
    (1, 4, 1500, 4),  # several blocks
]


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("full", [False, True], ids=["bare", "D_z_bias_softplus"])
def test_forward_matches_recurrence_fp32(shape, full):
    inp = random_scan_inputs(*shape, dtype=torch.float32)
    kwargs = {"D": inp["D"], "z": inp["z"], "delta_bias": inp["delta_bias"], "delta_softplus": True} if full else {}
    if not full:
        inp["delta"] = inp["delta"].abs()
    out, last = selective_scan_torch(
        inp["u"], inp["delta"], inp["A"], inp["B"], inp["C"], return_last_state=True, **kwargs
    )
    ref64 = {k: v.double() for k, v in inp.items()}
    ref_kwargs = {k: (v.double() if torch.is_tensor(v) else v) for k, v in kwargs.items()}
    ref_out, ref_last = step_by_step_scan(ref64["u"], ref64["delta"], ref64["A"], ref64["B"], ref64["C"], **ref_kwargs)
    assert out.dtype == torch.float32 and out.shape == inp["u"].shape
    assert last.shape == (shape[0], shape[1], shape[3])
    assert rel_err(out, ref_out) <= 1e-5
    assert rel_err(last, ref_last) <= 1e-5


def test_forward_exact_in_float64():
    inp = random_scan_inputs(2, 6, 77, 16, dtype=torch.float64)
    args = (inp["u"], inp["delta"].abs(), inp["A"], inp["B"], inp["C"])
    out = selective_scan_torch(*args)
    ref, _ = step_by_step_scan(*args)
    assert out.dtype == torch.float64
    assert rel_err(out, ref) <= 1e-12


def test_strong_decay_halves_chunks_and_stays_finite():
    """Large delta * |A| (decay of e^-100 within a chunk) must not overflow the closed form."""
    inp = random_scan_inputs(2, 4, 96, 16, dtype=torch.float32)
    delta = inp["delta"].abs() * 20.0  # up to ~60 per token with |A| up to ~20
    a_absmax = inp["A"].abs().amax(1)
    assert scan_torch._chunk_len_for_block(delta, a_absmax, 32) < 32  # the safe path is exercised
    out = selective_scan_torch(inp["u"], delta, inp["A"], inp["B"], inp["C"])
    ref, _ = step_by_step_scan(
        inp["u"].double(), delta.double(), inp["A"].double(), inp["B"].double(), inp["C"].double()
    )
    assert torch.isfinite(out).all()
    assert rel_err(out, ref) <= 1e-5


@pytest.mark.parametrize("shape", [(2, 4, 45, 8), (1, 6, 130, 16)])
def test_gradients_match_recurrence(shape):
    inp = random_scan_inputs(*shape, dtype=torch.float32)
    names = ["u", "delta", "A", "B", "C", "D", "z", "delta_bias"]
    ours = {k: inp[k].clone().requires_grad_() for k in names}
    ref = {k: inp[k].double().clone().requires_grad_() for k in names}
    weights = torch.randn(shape[0], shape[1], shape[2], generator=torch.Generator().manual_seed(1))

    def call(fn, t):
        out = fn(
            t["u"],
            t["delta"],
            t["A"],
            t["B"],
            t["C"],
            D=t["D"],
            z=t["z"],
            delta_bias=t["delta_bias"],
            delta_softplus=True,
        )
        out = out[0] if isinstance(out, tuple) else out
        return (out * weights.to(out.dtype)).sum()

    call(selective_scan_torch, ours).backward()
    call(step_by_step_scan, ref).backward()
    for k in names:
        assert ours[k].grad is not None, k
        assert rel_err(ours[k].grad, ref[k].grad) <= 1e-4, k


def test_gradient_of_last_state():
    inp = random_scan_inputs(1, 3, 70, 4, dtype=torch.float64)
    leaves = {k: inp[k].clone().requires_grad_() for k in ("u", "delta", "A", "B", "C")}
    leaves_ref = {k: inp[k].clone().requires_grad_() for k in ("u", "delta", "A", "B", "C")}
    _, last = selective_scan_torch(*leaves.values(), delta_softplus=True, return_last_state=True)
    _, last_ref = step_by_step_scan(*leaves_ref.values(), delta_softplus=True)
    last.sum().backward()
    last_ref.sum().backward()
    for k in ("u", "delta", "A", "B"):
        assert rel_err(leaves[k].grad, leaves_ref[k].grad) <= 1e-10, k
    assert leaves_ref["C"].grad is None and not leaves["C"].grad.any()  # C only reads the state


def test_gradcheck_float64_tiny():
    inp = random_scan_inputs(1, 2, 37, 3, dtype=torch.float64)
    names = ["u", "delta", "A", "B", "C", "D", "z", "delta_bias"]
    leaves = [inp[k].clone().requires_grad_() for k in names]

    def fn(u, delta, A, B, C, D, z, delta_bias):
        return selective_scan_torch(u, delta, A, B, C, D, z, delta_bias, delta_softplus=True)

    assert torch.autograd.gradcheck(fn, leaves, eps=1e-6, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_inputs_accumulate_in_fp32(dtype):
    inp = random_scan_inputs(2, 8, 200, 16, dtype=torch.float32)
    low = {k: v.to(dtype) for k, v in inp.items()}
    out = selective_scan_torch(
        low["u"], low["delta"], low["A"], low["B"], low["C"], D=low["D"], z=low["z"], delta_softplus=True
    )
    ref, _ = step_by_step_scan(
        *(low[k].double() for k in ("u", "delta", "A", "B", "C")),
        D=low["D"].double(),
        z=low["z"].double(),
        delta_softplus=True,
    )
    assert out.dtype == dtype
    # Only the final rounding to the half type remains: well below a half-precision step.
    assert rel_err(out, ref) <= 1e-2


def test_dispatch_routes_to_torch_on_cpu():
    inp = random_scan_inputs(1, 4, 40, 8)
    args = (inp["u"], inp["delta"], inp["A"], inp["B"], inp["C"])
    torch.testing.assert_close(selective_scan(*args), selective_scan_torch(*args), rtol=0, atol=0)

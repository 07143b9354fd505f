"""The ``cpp`` backend (C++ forward for CPU inference, built on first use): the torch backend's values, its
precision policy, and the torch backend wherever the kernel does not run (gradients, float64, other state sizes,
tracing)."""

from __future__ import annotations

import pytest
import torch

from nnmamba_monai import nnMambaSeg
from nnmamba_monai.networks import FusedInference, fuse_for_inference
from nnmamba_monai.ssm import Mamba, resolve_backend, scan_cpp, selective_scan, selective_scan_torch
from tests.helpers import random_scan_inputs

NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")
CPU = torch.device("cpu")
pytestmark = pytest.mark.skipif(
    scan_cpp.unavailable(CPU) is not None, reason=f"the cpp backend cannot be built here: {scan_cpp.unavailable(CPU)}"
)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


def inputs_for(batch: int, channels: int, length: int, d_state: int, flags: str, dtype=torch.float32) -> dict:
    """Random inputs; the optional ones (D, z, bias) selected by the letters of ``flags`` ("D", "z", "b")."""
    generated = random_scan_inputs(batch, channels, length, d_state)  # float64
    # the parameters (A, D, bias) stay float32, as a Mamba layer keeps them under autocast
    inp = {k: v.float() if k in ("A", "D", "delta_bias") else v.to(dtype) for k, v in generated.items()}
    for key, letter in (("D", "D"), ("z", "z"), ("delta_bias", "b")):
        if letter not in flags:
            inp[key] = None
    return inp


@pytest.mark.parametrize("d_state", [8, 16])
@pytest.mark.parametrize("flags", ["", "D", "Dzb"])
@pytest.mark.parametrize("softplus", [False, True])
def test_forward_matches_the_torch_backend(d_state, flags, softplus):
    """Lengths across tile boundaries (the kernel takes 64 tokens at a time); output and last state."""
    inp = inputs_for(2, 3, 150, d_state, flags)
    if not softplus:
        inp["delta"] = inp["delta"].abs()  # a stable scan without softplus needs delta >= 0
    args = [inp[k] for k in NAMES]
    out, last = selective_scan(*args, delta_softplus=softplus, return_last_state=True, backend="cpp")
    ref, ref_last = selective_scan_torch(*args, delta_softplus=softplus, return_last_state=True)
    assert out.shape == (2, 3, 150) and last.shape == (2, 3, d_state)
    assert rel_err(out, ref) <= 1e-5 and rel_err(last, ref_last) <= 1e-5


def test_half_precision_inputs_keep_a_float32_state():
    inp = inputs_for(1, 4, 70, 16, "Dzb", dtype=torch.bfloat16)
    args = [inp[k] for k in NAMES]
    out, last = selective_scan(*args, delta_softplus=True, return_last_state=True, backend="cpp")
    ref, ref_last = selective_scan_torch(*args, delta_softplus=True, return_last_state=True)
    assert out.dtype == torch.bfloat16 and last.dtype == torch.float32
    assert rel_err(out, ref) <= 1e-2 and rel_err(last, ref_last) <= 1e-5


@pytest.mark.parametrize(
    "case", ["gradients", "float64", "d_state 3"], ids=["needs-gradients", "float64", "unbuilt-state-size"]
)
def test_calls_outside_the_kernel_run_on_the_torch_backend(case, monkeypatch):
    """Same values as the torch backend to the bit, and the kernel is never entered."""
    inp = inputs_for(1, 2, 40, 3 if case == "d_state 3" else 8, "Dzb")
    if case == "float64":
        inp = {k: None if v is None else v.double() for k, v in inp.items()}
    leaves = {k: None if v is None else v.clone().requires_grad_(case == "gradients") for k, v in inp.items()}
    monkeypatch.setattr(scan_cpp, "load_extension", lambda: pytest.fail("the kernel ran"))
    out = selective_scan(*[leaves[k] for k in NAMES], delta_softplus=True, backend="cpp")
    ref = selective_scan_torch(*[inp[k] for k in NAMES], delta_softplus=True)
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    if case == "gradients":
        out.sum().backward()
        assert all(leaves[k].grad is not None and torch.isfinite(leaves[k].grad).all() for k in NAMES)


def test_only_chosen_by_name(monkeypatch):
    monkeypatch.delenv("NNMAMBA_SSM_BACKEND", raising=False)
    assert resolve_backend("auto", CPU) == "torch"
    assert resolve_backend("cpp", CPU) == "cpp"
    with pytest.raises(RuntimeError, match="backend 'cpp' runs on CPU tensors only"):
        resolve_backend("cpp", torch.device("meta"))


def test_without_a_compiler_asking_for_it_says_why(monkeypatch):
    monkeypatch.setenv("CXX", "no-such-compiler-here")
    with pytest.raises(RuntimeError, match=r"backend 'cpp' needs a C\+\+ compiler \(no-such-compiler-here"):
        resolve_backend("cpp", CPU)


def test_network_inference_preset_uses_it_with_the_same_output():
    """fuse_for_inference(scan_backend="cpp"): the copy's Mamba layers switch, the network's do not; outputs
    within float32 rounding of the eval network on the torch backend."""
    torch.manual_seed(0)
    net = nnMambaSeg(3, 1, 2, channels=8, d_state=8, out_relu=False).eval()
    fused = fuse_for_inference(net, scan_backend="cpp")
    assert {m.backend for m in fused.modules() if isinstance(m, Mamba)} == {"cpp"}
    assert {m.backend for m in net.modules() if isinstance(m, Mamba)} == {"auto"}
    x = torch.randn(1, 1, 32, 32, 32)
    with torch.no_grad():
        expected = net(x)
        assert float((fused(x) - expected).abs().max() / expected.abs().max()) <= 1e-5
        wrapper = FusedInference(net, scan_backend="cpp").eval()
        torch.testing.assert_close(wrapper(x), fused(x), rtol=0, atol=0)

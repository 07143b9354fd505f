"""Every call form of mamba_ssm's ``selective_scan_fn`` on the torch backend, against a float64 recurrence.

The grid is mamba_ssm's own ``tests/ops/test_selective_scan.py`` at small sizes: variable or time-invariant B
and C, 1 or 2 groups, real or complex A, input dtype float32/float16/bfloat16, with and without D, z, delta
bias, softplus and the last state, several lengths (one token, shorter than a chunk, several chunks). The
reference runs in float64 on the very (rounded) inputs the scan got, so the tolerances measure the scan's own
error: float32 state arithmetic and the rounding of the output (and gradients) to the input dtype.
"""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys

import pytest
import torch

from nnmamba_monai.ssm import dispatch, selective_scan
from nnmamba_monai.ssm.dispatch import ScanBackend
from nnmamba_monai.ssm.scan_torch import torch_scan
from tests.conftest import REPO_ROOT
from tests.helpers import reference_scan_any_form

BATCH, D_INNER, D_STATE = 2, 4, 8  # mamba_ssm's test sizes, apart from the lengths
LENGTHS = (1, 7, 40)
# Largest |error| / max(|reference|, 1): the output (or gradient) is rounded to the input dtype at the end.
OUT_TOL = {torch.float32: 2e-5, torch.float16: 2e-3, torch.bfloat16: 1e-2}
GRAD_TOL = {torch.float32: 1e-4, torch.float16: 4e-3, torch.bfloat16: 3e-2}
ITYPES = (torch.float32, torch.float16, torch.bfloat16)
WTYPES = (torch.float32, torch.complex64)
# mamba_ssm skips groups > 1 unless both B and C are variable.
GRID = [
    pytest.param(
        itype, wtype, groups, var_b, var_c, id=f"{str(itype)[6:]}-{str(wtype)[6:]}-g{groups}-B{var_b:d}C{var_c:d}"
    )
    for itype, wtype, groups, var_b, var_c in itertools.product(ITYPES, WTYPES, (1, 2), (True, False), (True, False))
    if groups == 1 or (var_b and var_c)
]


def upstream_inputs(itype, wtype, groups, var_b, var_c, length, seed=0) -> dict:
    """Inputs drawn as mamba_ssm's test draws them (u, delta, z in itype; A, D, delta_bias in float32 / wtype)."""
    gen = torch.Generator().manual_seed(seed)
    complex_a = wtype.is_complex

    def draw(*shape, dtype, scale=1.0, uniform=False):
        if dtype.is_complex:
            real = draw(*shape, 2, dtype=torch.float32, scale=scale, uniform=uniform)
            return torch.view_as_complex(real)
        x = torch.rand(*shape, generator=gen) if uniform else torch.randn(*shape, generator=gen)
        return (x * scale).to(dtype)

    def projection(variable):
        if not variable:
            return draw(D_INNER, D_STATE, dtype=wtype)
        time_len = 2 * length if complex_a else length
        shape = (BATCH, groups, D_STATE, time_len) if groups > 1 else (BATCH, D_STATE, time_len)
        return draw(*shape, dtype=itype)

    return {
        "u": draw(BATCH, D_INNER, length, dtype=itype),
        "delta": draw(BATCH, D_INNER, length, dtype=itype, scale=0.5, uniform=True),
        "A": draw(D_INNER, D_STATE, dtype=wtype, scale=-0.5, uniform=True),
        "B": projection(var_b),
        "C": projection(var_c),
        "D": draw(D_INNER, dtype=torch.float32),
        "z": draw(BATCH, D_INNER, length, dtype=itype),
        "delta_bias": draw(D_INNER, dtype=torch.float32, scale=0.5, uniform=True),
    }


def scaled_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """max |actual - expected| / max(max |expected|, 1), in float64 (complex compared as complex)."""
    wide = torch.complex128 if expected.is_complex() else torch.float64
    actual, expected = actual.detach().to(wide), expected.detach().to(wide)
    return float((actual - expected).abs().max() / expected.abs().max().clamp_min(1.0))


def optional_args(inputs: dict, has_d: bool, has_z: bool, has_bias: bool, softplus: bool) -> dict:
    return {
        "D": inputs["D"] if has_d else None,
        "z": inputs["z"] if has_z else None,
        "delta_bias": inputs["delta_bias"] if has_bias else None,
        "delta_softplus": softplus,
    }


@pytest.mark.parametrize("itype, wtype, groups, var_b, var_c", GRID)
def test_forward_on_the_upstream_grid(itype, wtype, groups, var_b, var_c):
    """All 32 combinations of D, z, delta bias, softplus and last state, over the lengths in turn."""
    for index, (has_d, has_z, has_bias, softplus, last) in enumerate(itertools.product((False, True), repeat=5)):
        length = LENGTHS[index % len(LENGTHS)]
        inputs = upstream_inputs(itype, wtype, groups, var_b, var_c, length, seed=index)
        options = optional_args(inputs, has_d, has_z, has_bias, softplus)
        scan_args = [inputs[name] for name in ("u", "delta", "A", "B", "C")]
        result = selective_scan(*scan_args, **options, return_last_state=last, backend="torch")
        expected, expected_state = reference_scan_any_form(*scan_args, **options)
        out, state = result if last else (result, None)
        case = f"D={has_d} z={has_z} bias={has_bias} softplus={softplus} L={length}"
        assert out.dtype == itype and out.shape == (BATCH, D_INNER, length), case
        assert scaled_error(out, expected) <= OUT_TOL[itype], case
        if last:
            assert state.shape == (BATCH, D_INNER, D_STATE) and state.is_complex() == wtype.is_complex, case
            assert scaled_error(state, expected_state) <= OUT_TOL[torch.float32], case


@pytest.mark.parametrize("itype, wtype, groups, var_b, var_c", GRID)
def test_gradients_on_the_upstream_grid(itype, wtype, groups, var_b, var_c):
    """Gradients of every input, with D, z, delta bias and softplus, against float64 autograd of the reference."""
    inputs = upstream_inputs(itype, wtype, groups, var_b, var_c, length=23, seed=1)
    leaves = {name: t.detach().clone().requires_grad_() for name, t in inputs.items()}
    wide = {name: t.detach().to(torch.complex128 if t.is_complex() else torch.float64).requires_grad_()
            for name, t in inputs.items()}  # fmt: skip
    names = ("u", "delta", "A", "B", "C")
    out = selective_scan(*[leaves[n] for n in names], **optional_args(leaves, True, True, True, True), backend="torch")
    expected, _ = reference_scan_any_form(*[wide[n] for n in names], **optional_args(wide, True, True, True, True))
    weight = torch.randn(out.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    (out.double() * weight).sum().backward()
    (expected * weight).sum().backward()
    for name in inputs:
        grad = leaves[name].grad
        assert grad is not None and grad.dtype == inputs[name].dtype, name
        # every gradient, float32 parameters' too, descends from the output's gradient, which is in itype
        assert scaled_error(grad, wide[name].grad) <= GRAD_TOL[itype], name


def test_native_form_still_goes_straight_to_the_backend(monkeypatch):
    """(batch, N, L) B/C with a real A reach the backend's own function unchanged; so does a (batch, 1, N, L) call
    once squeezed (one group): the per-group path calls the backend once."""
    calls = []

    def recording(inputs, return_last_state):
        calls.append(inputs)
        return torch_scan(inputs, return_last_state)

    monkeypatch.setitem(dispatch.REGISTRY, "torch", ScanBackend("torch", recording, 0, lambda device: None))
    inputs = upstream_inputs(torch.float32, torch.float32, 1, True, True, length=5)
    selective_scan(*[inputs[n] for n in ("u", "delta", "A", "B", "C")], backend="torch")
    assert len(calls) == 1 and calls[0].B is inputs["B"]
    selective_scan(
        inputs["u"], inputs["delta"], inputs["A"], inputs["B"][:, None], inputs["C"][:, None], backend="torch"
    )
    assert len(calls) == 2 and calls[1].B.shape == inputs["B"].shape


def test_grouped_scan_runs_one_backend_call_per_group(monkeypatch):
    calls = []

    def recording(inputs, return_last_state):
        calls.append(inputs)
        return torch_scan(inputs, return_last_state)

    monkeypatch.setitem(dispatch.REGISTRY, "torch", ScanBackend("torch", recording, 0, lambda device: None))
    inputs = upstream_inputs(torch.float32, torch.float32, 2, True, True, length=5)
    out = selective_scan(*[inputs[n] for n in ("u", "delta", "A", "B", "C")], backend="torch")
    assert len(calls) == 2 and [c.u.shape[1] for c in calls] == [2, 2]
    expected, _ = reference_scan_any_form(*[inputs[n] for n in ("u", "delta", "A", "B", "C")])
    assert scaled_error(out, expected) <= OUT_TOL[torch.float32]


def test_a_backend_taking_all_forms_gets_them_unchanged(monkeypatch):
    """mamba_ssm's entry (all_forms=True) receives grouped, time-invariant and complex calls as given."""
    received = []

    def fake(inputs, return_last_state):
        received.append(inputs)
        return inputs.u

    monkeypatch.setitem(dispatch.REGISTRY, "fake", ScanBackend("fake", fake, -1, lambda device: None, all_forms=True))
    for wtype, groups, var_b, var_c in ((torch.float32, 2, True, True), (torch.complex64, 1, False, True)):
        inputs = upstream_inputs(torch.float32, wtype, groups, var_b, var_c, length=3)
        selective_scan(*[inputs[n] for n in ("u", "delta", "A", "B", "C")], backend="fake")
        assert received[-1].B is inputs["B"] and received[-1].A is inputs["A"]


@pytest.mark.parametrize(
    "shape, message",
    [
        ((BATCH, 3, D_STATE, 6), "groups dividing d_inner=4"),  # 3 groups do not divide 4 channels
        ((D_INNER, D_STATE + 1), "time-invariant"),
        ((BATCH, D_STATE, 6), r"2\*length"),  # complex A: variable B has 2L columns
    ],
)
def test_malformed_forms_are_refused(shape, message):
    inputs = upstream_inputs(torch.float32, torch.complex64 if "2" in message else torch.float32, 1, True, True, 6)
    with pytest.raises(ValueError, match=message):
        selective_scan(inputs["u"], inputs["delta"], inputs["A"], torch.zeros(shape), inputs["C"], backend="torch")


def test_forms_on_triton_backend_in_interpreter():
    """A handful of grouped, complex and time-invariant calls with backend="triton" (see the cases file)."""
    pytest.importorskip("triton")
    cases = REPO_ROOT / "tests" / "scan_forms_triton_cases.py"
    env = dict(os.environ, TRITON_INTERPRET="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(cases)]
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    summary = output.strip().splitlines()[-1]
    assert re.search(r"\b4 passed", summary) and not re.search(r"skipped|failed|error", summary), summary


@pytest.mark.parametrize(
    "wtype, groups, var_b", [(torch.complex64, 1, True), (torch.float32, 2, True), (torch.float32, 1, False)]
)
def test_other_forms_follow_the_precision_policy_under_autocast(wtype, groups, var_b):
    """Same numbers inside and outside a bfloat16 autocast region, output in u's dtype (precision.py)."""
    inputs = upstream_inputs(torch.bfloat16, wtype, groups, var_b, True, length=9)
    args = [inputs[n] for n in ("u", "delta", "A", "B", "C")]
    options = optional_args(inputs, True, True, True, True)
    outside = selective_scan(*args, **options, backend="torch")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = selective_scan(*args, **options, backend="torch")
    assert inside.dtype == torch.bfloat16 and torch.equal(inside, outside)

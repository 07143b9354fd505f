"""Backend choice: argument, environment variable, automatic; clear errors."""

from __future__ import annotations

import pytest
import torch

from nnmamba_monai.ssm import (
    ENV_VAR,
    ScanBackend,
    available_backends,
    dispatch,
    resolve_backend,
    selective_scan,
    selective_scan_torch,
)
from nnmamba_monai.ssm.scan_torch import torch_scan
from tests.helpers import random_scan_inputs

CPU = torch.device("cpu")


def test_auto_on_cpu_is_torch(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert resolve_backend("auto", CPU) == "torch"
    assert "torch" in available_backends()


def test_env_var_selects_backend(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "torch")
    assert resolve_backend("auto", CPU) == "torch"
    monkeypatch.setenv(ENV_VAR, "nonsense")
    with pytest.raises(ValueError, match=ENV_VAR):
        resolve_backend("auto", CPU)


def test_argument_overrides_env_var(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "nonsense")
    assert resolve_backend("torch", CPU) == "torch"


def test_unknown_backend_argument():
    with pytest.raises(ValueError, match="unknown selective-scan backend 'cuda_magic'"):
        resolve_backend("cuda_magic", CPU)


def test_mamba_ssm_missing_or_wrong_device(monkeypatch):
    monkeypatch.setattr(dispatch.scan_mamba_ssm, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="not installed"):
        resolve_backend("mamba_ssm", CPU)
    monkeypatch.setattr(dispatch.scan_mamba_ssm, "is_available", lambda: True)
    with pytest.raises(RuntimeError, match="CUDA tensors only"):
        resolve_backend("mamba_ssm", CPU)


def test_auto_prefers_triton_then_mamba_ssm_on_cuda(monkeypatch):
    cuda = torch.device("cuda")
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setattr(dispatch, "_triton_available", lambda: True)
    monkeypatch.setattr(dispatch.scan_mamba_ssm, "is_available", lambda: True)
    assert resolve_backend("auto", cuda) == "triton"
    monkeypatch.setattr(dispatch, "_triton_available", lambda: False)
    assert resolve_backend("auto", cuda) == "mamba_ssm"
    monkeypatch.setattr(dispatch.scan_mamba_ssm, "is_available", lambda: False)
    assert resolve_backend("auto", cuda) == "torch"


@pytest.fixture
def scratch_registry(monkeypatch):
    """A copy of the backend registry that a test may extend; the real one is restored afterwards."""
    monkeypatch.setattr(dispatch, "REGISTRY", dict(dispatch.REGISTRY))
    monkeypatch.setattr(dispatch, "_BY_PRIORITY", list(dispatch._BY_PRIORITY))
    monkeypatch.delenv(ENV_VAR, raising=False)
    return dispatch.REGISTRY


def test_builtin_registry_matches_the_documented_order():
    names = [entry.name for entry in dispatch._BY_PRIORITY]
    assert names == ["triton", "mamba_ssm", "cpp", "torch"]
    assert dispatch.BACKENDS == ("auto", "torch", "triton", "mamba_ssm", "cpp")


def test_a_new_backend_is_one_entry(scratch_registry):
    """One register_backend call: selectable by name and by the env var, chosen by auto by priority and device."""
    calls = []

    def doubling_scan(inputs, return_last_state):
        calls.append((type(inputs).__name__, return_last_state))
        return torch_scan(inputs, return_last_state) * 2

    dispatch.register_backend(
        ScanBackend("doubling", doubling_scan, priority=5, unavailable=lambda device: None, auto_devices=("cpu",))
    )
    inp = random_scan_inputs(1, 2, 5, 3)
    args = (inp["u"], inp["delta"], inp["A"], inp["B"], inp["C"])
    torch.testing.assert_close(selective_scan(*args, backend="doubling"), 2 * selective_scan_torch(*args))
    assert calls == [("ScanInputs", False)]  # one record of the scan's inputs, and return_last_state
    assert resolve_backend("auto", CPU) == "doubling"  # priority 5 beats torch's 0 on CPU
    assert resolve_backend("auto", torch.device("meta")) == "torch"  # not offered automatically there
    assert "doubling" in available_backends()
    with pytest.raises(ValueError, match="'doubling'"):
        resolve_backend("nonsense", CPU)  # the error lists every registered name


def test_explicit_request_of_an_unavailable_backend_says_why(scratch_registry, monkeypatch):
    dispatch.register_backend(
        ScanBackend("far_away", torch_scan, priority=99, unavailable=lambda device: "needs a quantum GPU")
    )
    assert resolve_backend("auto", CPU) == "torch"
    assert "far_away" not in available_backends()
    monkeypatch.setenv(ENV_VAR, "far_away")
    with pytest.raises(RuntimeError, match="backend 'far_away' needs a quantum GPU"):
        resolve_backend("auto", CPU)
    with pytest.raises(ValueError, match="reserved|automatic choice"):
        dispatch.register_backend(ScanBackend("auto", torch_scan, 0, lambda device: None))


@pytest.mark.parametrize(
    "key, bad_shape, message",
    [
        ("delta", (2, 4, 9), "delta must have u's shape"),
        ("A", (5, 8), "A must be"),
        ("B", (2, 8, 9), "B must be"),
        ("C", (2, 7, 10), "C must be"),
        ("D", (3,), "D must be"),
        ("z", (2, 4, 11), "z must have"),
    ],
)
def test_shape_errors_name_the_argument(key, bad_shape, message):
    inp = random_scan_inputs(2, 4, 10, 8)
    inp[key] = torch.zeros(bad_shape)
    with pytest.raises(ValueError, match=message):
        selective_scan(inp["u"], inp["delta"], inp["A"], inp["B"], inp["C"], D=inp["D"], z=inp["z"])

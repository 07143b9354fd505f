"""Backend choice: argument, environment variable, automatic; clear errors."""

from __future__ import annotations

import pytest
import torch

from nnmamba_monai.ssm import ENV_VAR, available_backends, dispatch, resolve_backend, selective_scan
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

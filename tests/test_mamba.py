"""The Mamba layer: mamba_ssm's parameter names, shapes and initialisation; forward against the recurrence."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from nnmamba_monai.ssm import Mamba
from tests.helpers import step_by_step_scan


def test_parameter_names_and_shapes():
    layer = Mamba(d_model=64, d_state=16)
    shapes = {k: tuple(v.shape) for k, v in layer.state_dict().items()}
    assert shapes == {
        "A_log": (128, 16),
        "D": (128,),
        "in_proj.weight": (256, 64),
        "conv1d.weight": (128, 1, 4),
        "conv1d.bias": (128,),
        "x_proj.weight": (4 + 32, 128),
        "dt_proj.weight": (128, 4),
        "dt_proj.bias": (128,),
        "out_proj.weight": (64, 128),
    }


def test_initialisation_as_mamba_ssm():
    torch.manual_seed(0)
    layer = Mamba(d_model=32, d_state=8, dt_min=1e-3, dt_max=1e-1)
    expected_a = torch.log(torch.arange(1, 9, dtype=torch.float32)).expand(64, 8)
    torch.testing.assert_close(layer.A_log.detach(), expected_a)
    torch.testing.assert_close(layer.D.detach(), torch.ones(64))
    dt = F.softplus(layer.dt_proj.bias.detach())
    assert dt.min() >= 1e-3 * (1 - 1e-4) and dt.max() <= 1e-1 * (1 + 1e-4)
    bound = layer.dt_rank**-0.5
    assert layer.dt_proj.weight.abs().max() <= bound
    assert layer.dt_rank == math.ceil(32 / 16)
    assert getattr(layer.A_log, "_no_weight_decay", False) and getattr(layer.D, "_no_weight_decay", False)


def test_forward_matches_hand_written_reference():
    torch.manual_seed(0)
    layer = Mamba(d_model=8, d_state=4).double()
    x = torch.randn(2, 37, 8, dtype=torch.float64)
    out = layer(x)
    # The Mamba-1 forward spelled out, with the step-by-step scan.
    xz = layer.in_proj(x).transpose(1, 2)
    xi, z = xz.chunk(2, dim=1)
    xi = F.silu(F.conv1d(xi, layer.conv1d.weight, layer.conv1d.bias, padding=3, groups=16)[..., :37])
    dt, B, C = torch.split(layer.x_proj(xi.transpose(1, 2)), [layer.dt_rank, 4, 4], dim=-1)
    delta = (dt @ layer.dt_proj.weight.T).transpose(1, 2)
    y, _ = step_by_step_scan(
        xi,
        delta,
        -torch.exp(layer.A_log),
        B.transpose(1, 2),
        C.transpose(1, 2),
        layer.D,
        z,
        layer.dt_proj.bias,
        delta_softplus=True,
    )
    torch.testing.assert_close(out, layer.out_proj(y.transpose(1, 2)), rtol=1e-9, atol=1e-10)


def test_causal_in_length():
    """Token t of the output depends only on tokens <= t."""
    torch.manual_seed(0)
    layer = Mamba(d_model=8, d_state=4).double()
    x = torch.randn(1, 20, 8, dtype=torch.float64)
    x2 = x.clone()
    x2[:, 12:] += 1.0
    torch.testing.assert_close(layer(x)[:, :12], layer(x2)[:, :12])
    assert not torch.allclose(layer(x)[:, 12:], layer(x2)[:, 12:])


def test_bad_input_shape():
    with pytest.raises(ValueError, match="d_model=8"):
        Mamba(d_model=8)(torch.randn(1, 10, 9))
    with pytest.raises(ValueError, match="dt_init"):
        Mamba(d_model=8, dt_init="zeros")

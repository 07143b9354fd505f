"""The Mamba layer as a drop-in for ``mamba_ssm.Mamba``: keyword arguments, step-wise inference, mamba_inner_fn."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from nnmamba_monai.ssm import Mamba
from nnmamba_monai.ssm.inner import causal_conv1d, causal_conv1d_step, mamba_inner_fn
from tests.helpers import reference_scan_any_form


def test_constructor_takes_mamba_ssm_keyword_arguments():
    layer = Mamba(d_model=8, d_state=4, expand=1.5, layer_idx=3, use_fast_path=False, device="cpu", dtype=torch.float64)
    assert layer.d_inner == 12 and layer.layer_idx == 3 and layer.use_fast_path is False
    assert layer.in_proj.weight.shape == (24, 8) and layer.conv1d.weight.dtype == torch.float64
    assert layer.A_log.dtype == torch.float32 and layer.D.dtype == torch.float32  # as in mamba_ssm
    assert layer(torch.randn(2, 5, 8, dtype=torch.float64)).shape == (2, 5, 8)


def test_new_arguments_leave_the_initialisation_unchanged():
    torch.manual_seed(0)
    plain = Mamba(d_model=16, d_state=8).state_dict()
    torch.manual_seed(0)
    explicit = Mamba(d_model=16, d_state=8, layer_idx=0, use_fast_path=True, device="cpu", dtype=torch.float32)
    for name, tensor in explicit.state_dict().items():
        assert torch.equal(tensor, plain[name]), name


@pytest.mark.parametrize("prompt_len", [1, 2, 6])
def test_prompt_then_steps_match_the_whole_sequence(prompt_len):
    """mamba_ssm's generation protocol: one call for the prompt, then one token per call with seqlen_offset > 0."""
    torch.manual_seed(0)
    layer = Mamba(d_model=8, d_state=4, d_conv=4, layer_idx=0).double()
    x = torch.randn(2, 9, 8, dtype=torch.float64)
    whole = layer(x)
    params = SimpleNamespace(key_value_memory_dict={}, seqlen_offset=0)
    outs = [layer(x[:, :prompt_len], inference_params=params)]
    for t in range(prompt_len, x.shape[1]):
        params.seqlen_offset = t
        outs.append(layer(x[:, t : t + 1], inference_params=params))
    torch.testing.assert_close(torch.cat(outs, dim=1), whole, rtol=1e-9, atol=1e-10)
    conv_state, ssm_state = params.key_value_memory_dict[0]
    assert conv_state.shape == (2, 16, 4) and ssm_state.shape == (2, 16, 4)


def test_step_and_allocate_inference_cache():
    torch.manual_seed(0)
    layer = Mamba(d_model=8, d_state=4).double()
    conv_state, ssm_state = layer.allocate_inference_cache(batch_size=3, max_seqlen=10)
    assert conv_state.shape == (3, 16, 4) and ssm_state.shape == (3, 16, 4) and ssm_state.dtype == torch.float64
    assert layer.allocate_inference_cache(1, 1, dtype=torch.float32)[0].dtype == torch.float32
    x = torch.randn(3, 4, 8, dtype=torch.float64)
    steps = [layer.step(x[:, t : t + 1], conv_state, ssm_state)[0] for t in range(4)]
    torch.testing.assert_close(torch.cat(steps, dim=1), layer(x), rtol=1e-9, atol=1e-10)
    with pytest.raises(ValueError, match="one token"):
        layer.step(x, conv_state, ssm_state)
    with pytest.raises(ValueError, match="layer_idx"):
        layer(x, inference_params=SimpleNamespace(key_value_memory_dict={}, seqlen_offset=0))


def _inner_args(layer: Mamba, x: torch.Tensor) -> tuple:
    xz = layer.in_proj(x).transpose(1, 2)
    return (xz, layer.conv1d.weight, layer.conv1d.bias, layer.x_proj.weight, layer.dt_proj.weight,
            layer.out_proj.weight, layer.out_proj.bias, -torch.exp(layer.A_log.float()))  # fmt: skip


def test_mamba_inner_fn_is_the_layer():
    torch.manual_seed(0)
    layer = Mamba(d_model=8, d_state=4, bias=True).double()
    x = torch.randn(2, 11, 8, dtype=torch.float64)
    out = mamba_inner_fn(*_inner_args(layer, x), D=layer.D.float(), delta_bias=layer.dt_proj.bias.float())
    torch.testing.assert_close(out, layer(x), rtol=1e-9, atol=1e-10)


def test_mamba_inner_fn_projection_biases_and_rms_weights():
    torch.manual_seed(0)
    layer = Mamba(d_model=8, d_state=4).double()
    x = torch.randn(2, 6, 8, dtype=torch.float64)
    args = _inner_args(layer, x)
    b_bias, c_bias, b_rms, c_rms = (torch.rand(4, dtype=torch.float64) + 0.5 for _ in range(4))
    dt_rms = torch.rand(16, dtype=torch.float64) + 0.5
    out = mamba_inner_fn(*args, D=layer.D.float(), delta_bias=layer.dt_proj.bias.float(), B_proj_bias=b_bias,
                         C_proj_bias=c_bias, b_rms_weight=b_rms, c_rms_weight=c_rms, dt_rms_weight=dt_rms,
                         b_c_dt_rms_eps=1e-6)  # fmt: skip

    def rms(t, weight):
        return t * torch.rsqrt(t.square().mean(-1, keepdim=True) + 1e-6) * weight

    xz, conv_w, conv_b, x_proj_w, dt_w, out_w = args[:6]
    xi, z = xz.chunk(2, dim=1)
    xi = F.silu(F.conv1d(xi, conv_w, conv_b, padding=3, groups=16)[..., :6])
    dt, B, C = torch.split(xi.transpose(1, 2) @ x_proj_w.T, [layer.dt_rank, 4, 4], dim=-1)
    delta = rms(dt @ dt_w.T, dt_rms).transpose(1, 2)
    B, C = rms(B + b_bias, b_rms).transpose(1, 2), rms(C + c_bias, c_rms).transpose(1, 2)
    y, _ = reference_scan_any_form(xi, delta, args[7], B, C, layer.D, z, layer.dt_proj.bias, delta_softplus=True)
    torch.testing.assert_close(out, y.transpose(1, 2) @ out_w.T, rtol=1e-9, atol=1e-10)


def test_mamba_inner_fn_complex_a():
    """A complex A reads 2N projected columns each for B and C, as (real, imaginary) pairs."""
    gen = torch.Generator().manual_seed(0)
    d_inner, d_state, dt_rank, length = 6, 3, 2, 5
    xz = torch.randn(2, 2 * d_inner, length, generator=gen, dtype=torch.float64)
    conv_w, conv_b = torch.randn(d_inner, 1, 4, generator=gen, dtype=torch.float64), None
    x_proj_w = torch.randn(dt_rank + 4 * d_state, d_inner, generator=gen, dtype=torch.float64) * 0.3
    dt_w = torch.randn(d_inner, dt_rank, generator=gen, dtype=torch.float64) * 0.3
    out_w = torch.randn(4, d_inner, generator=gen, dtype=torch.float64)
    A = torch.complex(-torch.rand(d_inner, d_state, generator=gen), torch.randn(d_inner, d_state, generator=gen))
    out = mamba_inner_fn(xz, conv_w, conv_b, x_proj_w, dt_w, out_w, None, A)
    xi, z = xz.chunk(2, dim=1)
    xi = F.silu(F.conv1d(xi, conv_w, padding=3, groups=d_inner)[..., :length])
    x_dbl = xi.transpose(1, 2) @ x_proj_w.T  # (batch, L, dt_rank + 4N)
    dt, B, C = torch.split(x_dbl, [dt_rank, 2 * d_state, 2 * d_state], dim=-1)
    # (batch, L, (N two)) -> (batch, N, (L two))
    B, C = (t.unflatten(-1, (d_state, 2)).permute(0, 2, 1, 3).flatten(2) for t in (B, C))
    y, _ = reference_scan_any_form(xi, (dt @ dt_w.T).transpose(1, 2), A, B, C, z=z, delta_softplus=True)
    torch.testing.assert_close(out, y.transpose(1, 2) @ out_w.T, rtol=1e-5, atol=1e-6)  # complex64 A


def test_causal_conv1d_and_its_step():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 7, generator=gen, dtype=torch.float64)
    weight, bias = torch.randn(3, 4, generator=gen, dtype=torch.float64), torch.randn(3, generator=gen)
    out = causal_conv1d(x, weight, bias, activation="silu")
    expected = F.silu(F.conv1d(F.pad(x, (3, 0)), weight[:, None], bias.double(), groups=3))
    torch.testing.assert_close(out, expected)
    state = torch.zeros(2, 3, 4, dtype=torch.float64)
    first = causal_conv1d_step(x[:, :, :3], state, weight, bias, activation="silu")  # several tokens at once
    rest = [causal_conv1d_step(x[:, :, t], state, weight, bias, activation="silu") for t in range(3, 7)]
    torch.testing.assert_close(torch.cat([first, torch.stack(rest, dim=-1)], dim=-1), expected)
    torch.testing.assert_close(state, x[:, :, 3:])

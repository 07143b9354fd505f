"""Checked convolutions: the stock result whenever kernels behave, float32 gradients where a reduced-precision CPU
kernel returns non-finite ones from finite inputs (the oneDNN bf16 fault, docs/bf16_cpu_conv_nan.md)."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn as nn

from nnmamba_monai import nnMambaSeg
from nnmamba_monai.blocks import checked_conv
from nnmamba_monai.blocks.checked_conv import use_checked_convs

STOCK = torch.ops.aten.convolution_backward


def faulty_kernel(fault_every: int = 1, weight_shape: tuple[int, ...] | None = None):
    """A ``convolution_backward`` that writes NaN into every ``fault_every``-th reduced-precision weight gradient
    (of weights of ``weight_shape`` only, if given), as the faulty oneDNN kernel does; float32 calls are exact."""
    calls = {"low": 0, "fp32": 0, "faults": 0}
    matching = [0]

    def kernel(grad_output, x, weight, *args):
        grads = STOCK(grad_output, x, weight, *args)
        if x.dtype == torch.float32:
            calls["fp32"] += 1
            return grads
        calls["low"] += 1
        if weight_shape is not None and tuple(weight.shape) != weight_shape:
            return grads
        matching[0] += 1
        if matching[0] % fault_every == 0:
            calls["faults"] += 1
            grad_weight = grads[1].clone()
            grad_weight.view(-1)[::7] = float("nan")
            return grads[0], grad_weight, grads[2]
        return grads

    return kernel, calls


def conv_pair(kind: type[nn.Module], **kwargs) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    stock = kind(**kwargs)
    checked = kind(**kwargs)
    checked.load_state_dict(stock.state_dict())
    return stock, use_checked_convs(nn.Sequential(checked))[0]


CASES = [
    (nn.Conv3d, dict(in_channels=12, out_channels=8, kernel_size=3, padding=1), (2, 12, 4, 4, 4)),
    (nn.Conv3d, dict(in_channels=4, out_channels=6, kernel_size=3, stride=2, padding=1, bias=False), (2, 4, 6, 6, 6)),
    (nn.Conv2d, dict(in_channels=3, out_channels=5, kernel_size=3, padding=1), (2, 3, 8, 8)),
    (nn.ConvTranspose3d, dict(in_channels=8, out_channels=4, kernel_size=2, stride=2), (2, 8, 3, 3, 3)),
    (nn.ConvTranspose2d, dict(in_channels=6, out_channels=3, kernel_size=3, stride=2, output_padding=1), (1, 6, 5, 5)),
]


def grads_of(module: nn.Module, x: torch.Tensor, dtype: torch.dtype | None) -> tuple[torch.Tensor, ...]:
    module.zero_grad()
    x = x.clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
        out = module(x)
    (out.float() * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
    grads = [x.grad, module.weight.grad] + ([module.bias.grad] if module.bias is not None else [])
    return (out.detach(), *grads)


@pytest.mark.parametrize("kind, kwargs, shape", CASES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, None])
def test_checked_conv_equals_the_stock_module_bit_for_bit(kind, kwargs, shape, dtype):
    stock, checked = conv_pair(kind, **kwargs)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    for expected, got in zip(grads_of(stock, x, dtype), grads_of(checked, x, dtype), strict=True):
        assert got.dtype == expected.dtype
        torch.testing.assert_close(got, expected, rtol=0, atol=0)


@pytest.mark.parametrize("kind, kwargs, shape", CASES)
def test_a_faulty_reduced_precision_kernel_is_recomputed_in_float32(kind, kwargs, shape, monkeypatch):
    stock, checked = conv_pair(kind, **kwargs)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(2))
    kernel, calls = faulty_kernel()
    monkeypatch.setattr(checked_conv, "convolution_backward", kernel)
    monkeypatch.setattr(checked_conv, "_warned", False)
    with pytest.warns(RuntimeWarning, match="recomputed in float32"):
        faulted = grads_of(checked, x, torch.bfloat16)
    assert calls == {"low": 1, "fp32": 1, "faults": 1}
    expected = grads_of(stock, x, torch.bfloat16)
    for got, want in zip(faulted, expected, strict=True):
        assert torch.isfinite(got).all()
        assert got.dtype == want.dtype
        # float32 gradients of the same bf16 tensors, rounded once: within bf16 rounding of the stock ones
        torch.testing.assert_close(got, want, rtol=2e-2, atol=2e-2)


def test_non_finite_inputs_pass_through_unchanged(monkeypatch):
    _, checked = conv_pair(nn.Conv3d, in_channels=2, out_channels=3, kernel_size=3, padding=1)
    kernel, calls = faulty_kernel()
    monkeypatch.setattr(checked_conv, "convolution_backward", kernel)
    x = torch.randn(1, 2, 4, 4, 4)
    x[0, 0, 1, 1, 1] = float("nan")  # a real divergence: the trainer's guard must see it
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = checked(x.requires_grad_(True))
    out.float().sum().backward()
    assert calls["fp32"] == 0, "non-finite inputs must not be recomputed"
    assert not torch.isfinite(checked.weight.grad).all()


@pytest.mark.parametrize("autocast, grad", [(False, True), (True, False)])
def test_float32_and_no_grad_take_the_stock_path(autocast, grad, monkeypatch):
    _, checked = conv_pair(nn.Conv3d, in_channels=2, out_channels=3, kernel_size=3, padding=1)
    monkeypatch.setattr(checked_conv, "_CheckedConvolution", None)  # any use of the checked path would fail
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast), torch.set_grad_enabled(grad):
        out = checked(torch.randn(1, 2, 4, 4, 4))
    assert out.shape == (1, 3, 4, 4, 4)


def test_use_checked_convs_keeps_state_dict_and_parameters():
    torch.manual_seed(0)
    network = nnMambaSeg(3, 1, 2, channels=8, blocks=1, d_state=8)
    convs = [m for m in network.modules() if isinstance(m, nn.Conv3d)]
    assert convs and all(type(m).__name__ == "CheckedConv3d" for m in convs), "networks use checked convolutions"
    plain = nnMambaSeg(3, 1, 2, channels=8, blocks=1, d_state=8)
    for module in plain.modules():
        if type(module).__name__ == "CheckedConv3d":
            module.__class__ = nn.Conv3d
    plain.load_state_dict(network.state_dict())
    parameters = [id(p) for p in plain.parameters()]
    assert list(use_checked_convs(plain).state_dict()) == list(network.state_dict())
    assert [id(p) for p in plain.parameters()] == parameters
    x = torch.randn(1, 1, 16, 16, 16)
    network.eval(), plain.eval()
    torch.testing.assert_close(network(x), plain(x), rtol=0, atol=0)


def test_bf16_training_survives_the_faulty_kernel(monkeypatch, one_thread):
    """The reporter's failure, injected: every third backward of the coarsest decoder convolution (96 -> 32
    channels on the 2 x 2 x 2 grid) writes NaN into its weight gradient; training stays finite and learns as
    the fault-free run does (the recomputed gradients differ from the bf16 ones by rounding only)."""
    from tests.test_amp_training import train

    clean = train("cpu", torch.bfloat16, steps=60)
    kernel, calls = faulty_kernel(fault_every=3, weight_shape=(32, 96, 3, 3, 3))
    monkeypatch.setattr(checked_conv, "convolution_backward", kernel)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        faulted = train("cpu", torch.bfloat16, steps=60)
    assert calls["faults"] == 20 and calls["fp32"] == 20
    first, last = sum(faulted[:10]) / 10, sum(faulted[-10:]) / 10
    assert last < 0.85 * first, f"loss did not decrease: {first:.4f} -> {last:.4f}"
    assert abs(last - sum(clean[-10:]) / 10) < 0.05 * last, (faulted[-10:], clean[-10:])

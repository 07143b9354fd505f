"""Inference rewrites (BatchNorm folded into convolutions, oneDNN 3D convolutions at batch 1): same outputs up to
float32 rounding, the original network untouched."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from nnmamba_monai import nnMambaCls, nnMambaSeg
from nnmamba_monai.blocks.onednn_conv import OneDnnConv3d, use_onednn_convs
from nnmamba_monai.networks import FusedInference, fuse_for_inference

TOLERANCE = 1e-5  # relative to the output's largest magnitude (float32 rounding over ~40 layers)


def with_trained_statistics(net: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm non-trivial running statistics and affine weights, so that folding is exercised."""
    gen = torch.Generator().manual_seed(seed)
    for module in net.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            n = module.num_features
            module.running_mean.copy_(torch.rand(n, generator=gen) - 0.5)
            module.running_var.copy_(torch.rand(n, generator=gen) * 1.5 + 0.5)
            module.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            module.bias.data.copy_(torch.rand(n, generator=gen) * 0.4 - 0.2)
    return net


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / a.abs().max())


NETS = [
    (lambda: nnMambaSeg(3, 4, 3, channels=8, out_relu=False), (2, 4, 32, 32, 32)),
    (lambda: nnMambaSeg(3, 1, 6, channels=8, generation="mic"), (1, 1, 32, 32, 16)),
    (lambda: nnMambaCls(3, 1, 1, channels=8), (2, 1, 32, 32, 32)),
]


@pytest.mark.parametrize("make, shape", NETS)
def test_fused_copy_matches_eval_network(one_thread, make, shape):
    torch.manual_seed(0)
    net = with_trained_statistics(make()).eval()
    x = torch.randn(shape)
    with torch.no_grad():
        expected = net(x)
        fused = fuse_for_inference(net)
        got = fused(x)
        got_one = fused(x[:1])  # batch 1: the case oneDNN would otherwise not take
    assert relative_error(expected, got) < TOLERANCE
    assert relative_error(expected[:1], got_one) < TOLERANCE
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in fused.modules())
    assert all(type(m) is OneDnnConv3d for m in fused.modules() if isinstance(m, nn.Conv3d))
    assert not fused.training and not any(p.requires_grad for p in fused.parameters())


def test_original_network_is_untouched():
    net = with_trained_statistics(nnMambaSeg(3, 1, 2, channels=8)).train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    classes = [type(m) for m in net.modules()]
    fused = fuse_for_inference(net)
    after = net.state_dict()
    assert list(after) == list(before)
    assert all(torch.equal(after[k], before[k]) for k in before)
    assert [type(m) for m in net.modules()] == classes and net.training
    # nnMamba shares one SSM layer per stage: it stays one module in the copy
    stage = fused.layer1
    assert stage[1].mamba_layer is stage[2].mamba_layer


def test_onednn_conv_matches_stock_and_keeps_gradients():
    torch.manual_seed(0)
    conv = nn.Conv3d(64, 64, 3, padding=1)
    x = torch.randn(1, 64, 8, 8, 8)  # batch 1, N*C*H*W <= 20480: the stock heuristic's native kernel
    expected = F.conv3d(x, conv.weight, conv.bias, padding=1).detach()
    use_onednn_convs(conv)
    assert type(conv) is OneDnnConv3d and set(conv.state_dict()) == {"weight", "bias"}
    with torch.no_grad():
        assert relative_error(expected, conv(x)) < TOLERANCE
    conv(x).sum().backward()  # with gradients the stock path runs and autograd works
    assert conv.weight.grad is not None and conv.weight.grad.shape == conv.weight.shape


def test_fused_inference_wrapper_follows_mode_and_weights():
    torch.manual_seed(0)
    net = nnMambaSeg(3, 1, 2, channels=8, out_relu=False)
    wrapper = FusedInference(net)
    assert list(wrapper.state_dict()) == list(net.state_dict())
    x = torch.randn(2, 1, 32, 32, 32)
    wrapper.train()
    assert wrapper(x).requires_grad  # training: the network itself
    assert net.layer1[0].bn1.num_batches_tracked == 1
    new_weights = with_trained_statistics(nnMambaSeg(3, 1, 2, channels=8, out_relu=False), seed=1).state_dict()
    wrapper.eval()
    with torch.no_grad():
        first = wrapper(x)
        assert relative_error(net(x), first) < TOLERANCE
        wrapper.load_state_dict(new_weights)  # e.g. a CheckpointLoader after the config built the wrapper
        second = wrapper(x)
        assert relative_error(net(x), second) < TOLERANCE
    assert not torch.allclose(first, second)

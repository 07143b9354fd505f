"""Network forward shapes, options and input errors (CPU, small sizes)."""

from __future__ import annotations

import pytest
import torch

from nnmamba_monai import nnMambaCls, nnMambaSeg
from nnmamba_monai.blocks import MICCSSLayer, to_sequence, to_volume

SEG_CASES = [  # (kwargs, input shape, output shape)
    ({"in_channels": 1, "out_channels": 3, "channels": 8}, (2, 1, 32, 32, 32), (2, 3, 32, 32, 32)),
    ({"in_channels": 4, "out_channels": 3, "channels": 8, "out_relu": False}, (1, 4, 16, 32, 48), (1, 3, 16, 32, 48)),
    (
        {"in_channels": 1, "out_channels": 6, "channels": 8, "blocks": 2, "generation": "mic"},
        (1, 1, 32, 16, 16),
        (1, 6, 32, 16, 16),
    ),
    ({"in_channels": 1, "out_channels": 2, "channels": 8, "blocks": 1}, (1, 1, 16, 16, 16), (1, 2, 16, 16, 16)),
    ({"spatial_dims": 2, "in_channels": 3, "out_channels": 2, "channels": 8}, (2, 3, 64, 32), (2, 2, 64, 32)),
]


@pytest.mark.parametrize("kwargs, in_shape, out_shape", SEG_CASES)
def test_seg_shapes_eval(kwargs, in_shape, out_shape):
    net = nnMambaSeg(**kwargs).eval()
    with torch.no_grad():
        out = net(torch.randn(in_shape))
    assert out.shape == out_shape


def test_published_logits_are_non_negative_and_option_drops_relu():
    torch.manual_seed(0)
    x = torch.randn(1, 1, 16, 16, 16)
    assert (nnMambaSeg(in_channels=1, out_channels=2, channels=8).eval()(x) >= 0).all()
    assert (nnMambaSeg(in_channels=1, out_channels=2, channels=8, out_relu=False).eval()(x) < 0).any()


def test_landmark_heatmaps_default_width():
    """Landmark detection: 6 heatmaps (TCD, HDV, ADV pairs) from the default-width network."""
    net = nnMambaSeg(in_channels=1, out_channels=6, out_relu=False).eval()
    with torch.no_grad():
        out = net(torch.randn(1, 1, 32, 32, 32))
    assert out.shape == (1, 6, 32, 32, 32)
    assert torch.isfinite(out).all()


def test_deep_supervision_outputs():
    net = nnMambaSeg(in_channels=4, out_channels=4, channels=8, generation="mic")
    assert net.deep_supervision
    outs = net.train()(torch.randn(2, 4, 32, 32, 32))
    assert [tuple(o.shape) for o in outs] == [(2, 4, 32, 32, 32), (2, 4, 16, 16, 16), (2, 4, 8, 8, 8), (2, 4, 4, 4, 4)]
    with torch.no_grad():
        assert net.eval()(torch.randn(1, 4, 32, 32, 32)).shape == (1, 4, 32, 32, 32)
    assert not nnMambaSeg(channels=8, generation="mic", deep_supervision=False).deep_supervision
    assert nnMambaSeg(channels=8, deep_supervision=True).deep_supervision


def test_not_divisible_by_16_is_a_clear_error():
    net = nnMambaSeg(in_channels=1, out_channels=2, channels=8).eval()
    with pytest.raises(ValueError, match=r"multiple of 16.*got \(20, 32, 33\).*\(32, 32, 48\).*pad_input=True"):
        net(torch.randn(1, 1, 20, 32, 33))


def test_pad_input_crops_back():
    net = nnMambaSeg(in_channels=1, out_channels=2, channels=8, pad_input=True).eval()
    x = torch.randn(1, 1, 20, 30, 17)
    with torch.no_grad():
        out = net(x)
    assert out.shape == (1, 2, 20, 30, 17)


def test_wrong_rank_and_arguments():
    net = nnMambaSeg(channels=8).eval()
    with pytest.raises(ValueError, match="expects"):
        net(torch.randn(1, 32, 32, 32))
    with pytest.raises(ValueError, match="generation"):
        nnMambaSeg(generation="v3")
    with pytest.raises(ValueError, match="spatial_dims"):
        nnMambaSeg(spatial_dims=1)
    with pytest.raises(ValueError, match="positive"):
        nnMambaCls(out_channels=0)


def test_one_ssm_module_shared_per_stage():
    net = nnMambaSeg(channels=8, blocks=3)
    for stage in (net.layer1, net.layer2, net.layer3):
        assert stage[0].mamba_layer is None
        assert stage[1].mamba_layer is stage[2].mamba_layer is not None


def test_miccss_equals_four_separate_flipped_passes():
    torch.manual_seed(0)
    layer = MICCSSLayer(3, 8, d_state=4).double().eval()
    x = torch.randn(2, 8, 4, 4, 4, dtype=torch.float64)
    a = layer.relu(layer.norm(layer.nin(x)))
    seq = to_sequence(a)
    m = layer.mamba
    passes = [m(seq), m(seq.flip(1)).flip(1), m(seq.flip(2)).flip(2), m(seq.flip(1, 2)).flip(1, 2)]
    mixed = to_volume(sum(passes) / 4, a.shape[2:]) + a
    expected = layer.relu2(layer.norm2(layer.nin2(mixed)))
    torch.testing.assert_close(layer(x), expected)


def test_sequence_order_is_row_major():
    x = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(1, 1, 2, 3, 4)
    seq = to_sequence(x)
    assert seq.shape == (1, 24, 1)
    assert seq[0, :, 0].tolist() == list(range(24))  # D fastest, then W, then H
    torch.testing.assert_close(to_volume(seq, x.shape[2:]), x)


@pytest.mark.parametrize("hierarchical", [False, True])
def test_cls_shapes(hierarchical):
    net = nnMambaCls(in_channels=1, out_channels=2, channels=8, hierarchical_ssm=hierarchical).eval()
    with torch.no_grad():
        out = net(torch.randn(2, 1, 28, 34, 28))  # any size, e.g. the ADNI 112x136x112 grid / 4
    assert out.shape == (2, 2)


def test_cls_default_width_on_adni_grid_downscaled():
    net = nnMambaCls().eval()  # 12.88 M parameters, one logit
    assert sum(p.numel() for p in net.parameters()) == 12876321
    with torch.no_grad():
        out = net(torch.randn(1, 1, 56, 68, 56))
    assert out.shape == (1, 1)


def test_training_step_reduces_loss():
    """A few optimiser steps on one batch lower a Dice+CE loss; gradients reach every SSM parameter.

    (32^3 input so the deepest stage still has a sequence of 8 voxels: at length 1, A has no effect.)"""
    from monai.losses import DiceCELoss

    torch.manual_seed(0)
    net = nnMambaSeg(in_channels=1, out_channels=2, channels=8, out_relu=False)
    x = torch.randn(2, 1, 32, 32, 32)
    y = (x > 0.5).long()
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    losses = []
    for _ in range(6):
        opt.zero_grad()
        loss = loss_fn(net(x), y)
        loss.backward()
        if not losses:
            missing = [
                n for n, p in net.named_parameters() if "mamba" in n and (p.grad is None or not p.grad.abs().sum() > 0)
            ]
            assert missing == []
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] * 0.9

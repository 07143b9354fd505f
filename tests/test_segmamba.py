"""Taming-Mambas family: voxel Mamba layers (uni, bi, multi) and the four U-Nets (CPU, small sizes)."""

from __future__ import annotations

import pytest
import torch
from monai.bundle import ConfigParser

from nnmamba_monai import BiSegMamba, MultiSegMamba, SegMamba, SegMambaSkip
from nnmamba_monai.blocks import (
    PAPER_AXIS_ORDERS,
    BiVoxelMambaLayer,
    MambaTransBlock,
    MultiVoxelMambaLayer,
    VoxelMambaLayer,
    to_sequence,
    to_volume,
)
from nnmamba_monai.ssm import Mamba

NETS = [SegMamba, BiSegMamba, MultiSegMamba, SegMambaSkip]
SMALL = {"filters": (4, 8, 16, 32), "strides": (1, 2, 2, 2)}

SHAPE_CASES = [  # (net, kwargs, input shape, output shape)
    *[(net, {"in_channels": 1, "out_channels": 3, **SMALL}, (1, 1, 32, 32, 32), (1, 3, 32, 32, 32)) for net in NETS],
    (
        BiSegMamba,
        {"in_channels": 4, "out_channels": 3, **SMALL, "res_block": False},
        (2, 4, 32, 16, 24),
        (2, 3, 32, 16, 24),
    ),
    (
        SegMamba,
        {"in_channels": 1, "out_channels": 2, "filters": (4, 8), "strides": (1, (2, 2, 1))},
        (1, 1, 8, 8, 3),
        (1, 2, 8, 8, 3),
    ),
    (SegMambaSkip, {"spatial_dims": 2, "in_channels": 3, "out_channels": 2, **SMALL}, (2, 3, 32, 16), (2, 2, 32, 16)),
]


def _mamba_params(module: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    return {
        f"{name}.{pname}": p
        for name, sub in module.named_modules()
        if isinstance(sub, Mamba)
        for pname, p in sub.named_parameters()
    }


def _trans_block_by_hand(block: MambaTransBlock, seq: torch.Tensor) -> torch.Tensor:
    seq = seq + block.mamba(block.norm1(seq))
    return seq + block.head(block.norm2(seq))


@pytest.mark.parametrize("net_cls, kwargs, in_shape, out_shape", SHAPE_CASES)
def test_shapes_eval(net_cls, kwargs, in_shape, out_shape):
    net = net_cls(**kwargs).eval()
    with torch.no_grad():
        out = net(torch.randn(in_shape))
    assert out.shape == out_shape
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("net_cls", NETS)
def test_deep_supervision_list_in_training(net_cls):
    net = net_cls(in_channels=1, out_channels=2, deep_supervision=True, deep_supr_num=2, **SMALL)
    outs = net.train()(torch.randn(2, 1, 16, 16, 16))
    assert [tuple(o.shape) for o in outs] == [(2, 2, 16, 16, 16), (2, 2, 8, 8, 8), (2, 2, 4, 4, 4)]
    with torch.no_grad():
        assert net.eval()(torch.randn(1, 1, 16, 16, 16)).shape == (1, 2, 16, 16, 16)


def test_mamba_count_and_default_state_sizes():
    """Layers per level (bottleneck included); 1, 2 and 8 Mamba blocks per layer; d_state = min(C, cap)."""
    filters = (32, 96, 320)
    expected = {  # net: (Mamba blocks per level, d_state per level)
        SegMamba: (1, (32, 64, 64)),
        BiSegMamba: (2, (32, 96, 256)),
        MultiSegMamba: (8, (32, 64, 64)),
        SegMambaSkip: (2, (32, 96, 256)),
    }
    for net_cls, (per_level, states) in expected.items():
        net = net_cls(filters=filters, strides=(1, 2, 2))
        for layer, state in zip(net.mamba_layers, states):
            mambas = [m for m in layer.modules() if isinstance(m, Mamba)]
            assert len(mambas) == per_level
            assert {m.d_state for m in mambas} == {state}
            assert {(m.d_conv, m.expand) for m in mambas} == {(4, 2)}
    assert {
        m.d_state for m in SegMamba(filters=filters, strides=(1, 2, 2), d_state=8).modules() if isinstance(m, Mamba)
    } == {8}


def test_unidirectional_layer_is_one_forward_pass():
    torch.manual_seed(0)
    layer = VoxelMambaLayer(6).double()
    x = torch.randn(2, 6, 3, 4, 5, dtype=torch.float64)
    seq = layer.norm(to_sequence(x))
    expected = to_volume(_trans_block_by_hand(layer.block, seq), x.shape[2:])
    torch.testing.assert_close(layer(x), expected, rtol=1e-10, atol=1e-10)


def test_bidirectional_layer_is_forward_plus_flipped_backward():
    """LayerNorm(fwd(s) + flip(bwd(flip(s)))) with the layer's two Mamba blocks, built by hand."""
    torch.manual_seed(0)
    layer = BiVoxelMambaLayer(6).double()
    x = torch.randn(2, 6, 3, 4, 5, dtype=torch.float64)
    seq = layer.norm(to_sequence(x))  # (B, L, C), voxels in (H, W, D) row-major order
    forward_pass = _trans_block_by_hand(layer.mixer.fwd, seq)
    backward_pass = _trans_block_by_hand(layer.mixer.bwd, seq.flip(1)).flip(1)
    expected = to_volume(layer.mixer.norm(forward_pass + backward_pass), x.shape[2:])
    torch.testing.assert_close(layer(x), expected, rtol=1e-10, atol=1e-10)
    assert layer.mixer.fwd.mamba is not layer.mixer.bwd.mamba
    # the flips matter: reading the sequence forward with both blocks gives something else
    unflipped = to_volume(layer.mixer.norm(forward_pass + _trans_block_by_hand(layer.mixer.bwd, seq)), x.shape[2:])
    assert (layer(x) - unflipped).abs().max() > 1e-3


def _swap_directions(layer: MultiVoxelMambaLayer, mapping: dict[int, int]) -> MultiVoxelMambaLayer:
    """A copy whose direction k carries the weights of direction mapping[k]."""
    copy = MultiVoxelMambaLayer(layer.channels, d_state=layer.d_state).to(next(layer.parameters()).dtype)
    for k, source in mapping.items():
        copy.directions[k].load_state_dict(layer.directions[source].state_dict())
    return copy


def _swap_fwd_bwd(layer: MultiVoxelMambaLayer) -> MultiVoxelMambaLayer:
    copy = _swap_directions(layer, {k: k for k in range(len(layer.directions))})
    for mixer in copy.directions:
        fwd_state = {k: v.clone() for k, v in mixer.fwd.state_dict().items()}  # state_dict() aliases the weights
        bwd_state = {k: v.clone() for k, v in mixer.bwd.state_dict().items()}
        mixer.fwd.load_state_dict(bwd_state)
        mixer.bwd.load_state_dict(fwd_state)
    return copy


def test_multidirectional_orders_are_the_papers():
    layer = MultiVoxelMambaLayer(4)
    names = ["".join("HWD"[a] for a in order) for order in layer.axis_orders]
    assert names == ["HWD", "HDW", "WHD", "DHW"]
    assert layer.axis_orders == PAPER_AXIS_ORDERS
    assert len(layer.directions) == 4 and len({id(d) for d in layer.directions}) == 4


def test_multidirectional_layer_transposing_w_and_d_relabels_the_directions():
    """layer(x^T) == layer'(x)^T for T = swap of W and D, layer' = directions HWD<->HDW and WHD<->DHW exchanged.

    T maps the paper's set of axis orders onto itself, so scanning x^T in order k is scanning x in order
    pi(k); the multi-directional layer is equivariant to T up to this relabelling of its weights (and
    exactly equivariant when all directions share weights).
    """
    torch.manual_seed(0)
    layer = MultiVoxelMambaLayer(4).double()
    x = torch.randn(1, 4, 3, 4, 5, dtype=torch.float64)
    transpose = (0, 1, 2, 4, 3)
    relabelled = _swap_directions(layer, {0: 1, 1: 0, 2: 3, 3: 2})
    out = layer(x.permute(transpose))
    assert out.shape == (1, 4, 3, 5, 4)
    torch.testing.assert_close(out, relabelled(x).permute(transpose), rtol=1e-10, atol=1e-10)
    # without the relabelling (own weights per direction) there is no invariance
    assert (out - layer(x).permute(transpose)).abs().max() > 1e-3


def test_multidirectional_layer_with_shared_weights_is_equivariant():
    """All four directions and both scan senses sharing one weight set: transposing W/D or flipping all axes
    of the input does the same to the output."""
    torch.manual_seed(0)
    layer = MultiVoxelMambaLayer(4).double()
    layer = _swap_directions(layer, {k: 0 for k in range(4)})
    for mixer in layer.directions:
        mixer.bwd.load_state_dict(mixer.fwd.state_dict())
    x = torch.randn(1, 4, 3, 4, 5, dtype=torch.float64)
    torch.testing.assert_close(layer(x.transpose(3, 4)), layer(x).transpose(3, 4), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(layer(x.flip(2, 3, 4)), layer(x).flip(2, 3, 4), rtol=1e-10, atol=1e-10)
    # H is not paired by the paper's orders: transposing H and W is not an equivariance
    assert (layer(x[:, :, :, :3].transpose(2, 3)) - layer(x[:, :, :, :3]).transpose(2, 3)).abs().max() > 1e-3


def test_multidirectional_layer_full_flip_swaps_scan_senses():
    """Flipping H, W and D reverses the sequence in every order: layer(flip x) == flip(layer'(x)), layer' with
    fwd and bwd blocks exchanged in every direction."""
    torch.manual_seed(0)
    layer = MultiVoxelMambaLayer(4).double()
    x = torch.randn(1, 4, 3, 4, 5, dtype=torch.float64)
    expected = _swap_fwd_bwd(layer)(x).flip(2, 3, 4)
    torch.testing.assert_close(layer(x.flip(2, 3, 4)), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("net_cls", NETS)
def test_gradients_reach_every_mamba_parameter(net_cls):
    torch.manual_seed(0)
    net = net_cls(in_channels=1, out_channels=2, filters=(4, 8, 16), strides=(1, 2, 2)).train()
    out = net(torch.randn(2, 1, 8, 8, 8))
    (out * torch.randn_like(out)).sum().backward()
    params = _mamba_params(net)
    assert len(params) == 9 * sum(1 for m in net.modules() if isinstance(m, Mamba))
    missing = [name for name, p in params.items() if p.grad is None or not torch.isfinite(p.grad).all()]
    zero = [name for name, p in params.items() if p.grad is not None and p.grad.abs().max() == 0]
    assert not missing and not zero, (missing, zero)


@pytest.mark.parametrize("layer_cls", [VoxelMambaLayer, BiVoxelMambaLayer, MultiVoxelMambaLayer])
def test_voxel_layers_follow_autocast_like_any_layer(layer_cls):
    """No autocast override in the layer: its Mamba projections run in bfloat16 under autocast (the scan keeps a
    float32 state by the engine's policy), and the result stays close to the float32 one."""
    torch.manual_seed(0)
    layer = layer_cls(4)
    projected = set()
    for m in layer.modules():
        if isinstance(m, Mamba):
            m.in_proj.register_forward_hook(lambda module, inputs, output: projected.add(output.dtype))
    x = torch.randn(1, 4, 4, 4, 4)
    reference = layer(x)
    projected.clear()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(x)
    assert projected == {torch.bfloat16}
    assert torch.isfinite(out).all()
    assert float((out.float() - reference).norm() / reference.norm()) < 5e-2


@pytest.mark.parametrize("net_cls", NETS)
def test_invalid_spatial_size_is_a_clear_error(net_cls):
    net = net_cls(in_channels=1, out_channels=2, **SMALL).eval()
    with pytest.raises(ValueError, match=r"multiples of \(8, 8, 8\).*got \(20, 32, 33\).*\(24, 32, 40\)"):
        net(torch.randn(1, 1, 20, 32, 33))
    with pytest.raises(ValueError, match="expects"):
        net(torch.randn(1, 32, 32, 32))


def test_invalid_arguments():
    with pytest.raises(ValueError, match="spatial_dims must be one of \\(3,\\)"):
        MultiSegMamba(spatial_dims=2)
    with pytest.raises(ValueError, match="one entry per level"):
        SegMamba(filters=(8, 16, 32), strides=(1, 2))
    with pytest.raises(ValueError, match="deep_supr_num"):
        BiSegMamba(filters=(8, 16, 32), strides=(1, 2, 2), deep_supervision=True, deep_supr_num=2)
    with pytest.raises(ValueError, match="permutations"):
        MultiVoxelMambaLayer(4, axis_orders=[(0, 1, 1)])
    with pytest.raises(ValueError, match="channels=4"):
        VoxelMambaLayer(4)(torch.randn(1, 3, 2, 2, 2))


@pytest.mark.parametrize("net_cls", NETS)
def test_bundle_swaps_family_by_overriding_network_def_target(net_cls):
    """The docs' one-liner: ``--network_def#_target_ <class>`` on a bundle whose network_def gives
    spatial_dims, in_channels and out_channels."""
    config = {
        "network_def": {"_target_": "nnmamba_monai.nnMambaSeg", "spatial_dims": 3, "in_channels": 4, "out_channels": 3}
    }
    parser = ConfigParser(config)
    parser.update({"network_def#_target_": f"nnmamba_monai.networks.{net_cls.__name__}"})
    net = parser.get_parsed_content("network_def")
    assert type(net) is net_cls
    assert net.encoder[0][0].conv1.conv.in_channels == 4
    assert net.output_block.conv.conv.out_channels == 3

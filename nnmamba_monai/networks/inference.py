"""Inference-time rewrites of a trained network: the same outputs (up to float32 rounding), less CPU time.

:func:`fuse_for_inference` returns an eval-mode copy in which every BatchNorm that directly follows a
convolution is folded into that convolution (``torch.nn.utils.fusion.fuse_conv_bn_eval``: w' = w * g / s,
b' = (b - mean) * g / s + beta, s = sqrt(var + eps)) and replaced by ``nn.Identity``, and every 3D convolution
runs on oneDNN at batch size 1 too (:mod:`~nnmamba_monai.blocks.onednn_conv`). The module it is given is not
touched: its parameters, buffers, state-dict keys and train/eval mode stay as they were (the copy's state
dict has no BatchNorm entries, so checkpoints are always saved from and loaded into the original).

:class:`FusedInference` wraps a network for the bundles' CPU preset: it is the original network in training
mode, and in eval mode runs a fused copy that it rebuilds whenever the original's weights change (e.g. after
a ``CheckpointLoader`` has loaded them), so a config can fuse with one line before the weights exist.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator

import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.utils.fusion import fuse_conv_bn_eval

from nnmamba_monai.blocks.mic import MICCSSLayer, MICLayer
from nnmamba_monai.blocks.onednn_conv import use_onednn_convs
from nnmamba_monai.blocks.residual import ResidualBlock
from nnmamba_monai.ssm.mamba import Mamba

__all__ = ["FusedInference", "fuse_for_inference"]

# (conv, BatchNorm) attribute pairs of the blocks whose forward is conv -> BN with nothing in between.
# nn.Sequential containers (DoubleConv.conv, ResidualBlock.downsample) are folded by adjacency instead.
_PAIRS: dict[type[nn.Module], tuple[tuple[str, str], ...]] = {
    ResidualBlock: (("conv1", "bn1"), ("conv2", "bn2")),
    MICLayer: (("nin", "norm"),),
    MICCSSLayer: (("nin", "norm"), ("nin2", "norm2")),
}
_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _foldable(conv: nn.Module, bn: nn.Module) -> bool:
    return (
        isinstance(conv, _CONVS)
        and isinstance(bn, _BatchNorm)
        and bn.track_running_stats
        and bn.running_mean is not None
        and bn.num_features == conv.out_channels
    )


def _fold_pairs(module: nn.Module) -> Iterator[tuple[nn.Module, str, str]]:
    """(parent, conv attribute, BN attribute) for every foldable pair directly inside ``module``."""
    if isinstance(module, nn.Sequential):
        names = list(module._modules)
        for first, second in zip(names, names[1:]):
            if _foldable(module._modules[first], module._modules[second]):
                yield module, first, second
    for conv_name, bn_name in _PAIRS.get(type(module), ()):
        if _foldable(getattr(module, conv_name), getattr(module, bn_name)):
            yield module, conv_name, bn_name


def fuse_for_inference(network: nn.Module, scan_backend: str | None = None) -> nn.Module:
    """An eval-mode copy of ``network`` with BatchNorm folded into convolutions and oneDNN 3D convolutions.

    Args:
        network: any module; nnMamba's blocks (DoubleConv, ResidualBlock, MIC, MICCSS) are folded completely,
            other conv -> BN pairs inside ``nn.Sequential`` containers too. Shared submodules (nnMamba's
            per-stage SSM layer) stay shared in the copy.
        scan_backend: when given, the selective-scan backend of every Mamba layer of the copy (e.g. ``"cpp"``,
            the C++ CPU forward: :mod:`nnmamba_monai.ssm.scan_cpp`); None keeps each layer's own.
    Returns:
        the copy, in eval mode with ``requires_grad`` off; ``network`` itself is unchanged.
    """
    fused = copy.deepcopy(network).eval()
    for module in list(fused.modules()):  # modules() visits a shared submodule once
        for parent, conv_name, bn_name in list(_fold_pairs(module)):
            conv, bn = getattr(parent, conv_name), getattr(parent, bn_name)
            setattr(parent, conv_name, fuse_conv_bn_eval(conv, bn))
            setattr(parent, bn_name, nn.Identity())
    use_onednn_convs(fused)
    if scan_backend is not None:
        for module in fused.modules():
            if isinstance(module, Mamba):
                module.backend = scan_backend
    for parameter in fused.parameters():
        parameter.requires_grad_(False)
    return fused


def _fingerprint(network: nn.Module) -> tuple:
    """Identity, storage, version, device and dtype of every parameter and buffer: changes when weights do."""
    tensors = list(network.parameters()) + list(network.buffers())
    return tuple((id(t), t.data_ptr(), t._version, t.device, t.dtype) for t in tensors)


class FusedInference(nn.Module):
    """``network`` while it is in training mode; in eval mode its fused copy, rebuilt when the weights change.

    The copy is :func:`fuse_for_inference` of ``network`` (with ``scan_backend``). State-dict calls go to ``network``
    itself (same keys as the unwrapped network), so checkpoints load into and save from either. Input and output
    as ``network``.
    """

    def __init__(self, network: nn.Module, scan_backend: str | None = None) -> None:
        super().__init__()
        self.network = network
        self.scan_backend = scan_backend
        self._fused: nn.Module | None = None
        self._fused_from: tuple | None = None

    def forward(self, *args, **kwargs):
        """As ``network``; eval mode runs the fused copy."""
        if self.network.training:
            return self.network(*args, **kwargs)
        fingerprint = _fingerprint(self.network)
        if self._fused is None or fingerprint != self._fused_from:
            self._fused = fuse_for_inference(self.network, self.scan_backend)
            self._fused_from = fingerprint
        return self._fused(*args, **kwargs)

    def state_dict(self, *args, **kwargs):  # noqa: D102 - the wrapped network's
        return self.network.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):  # noqa: D102
        return self.network.load_state_dict(state_dict, strict=strict, assign=assign)

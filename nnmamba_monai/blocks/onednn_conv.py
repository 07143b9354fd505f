"""A 3D convolution that runs on oneDNN for float32 CPU inference whatever the batch size.

PyTorch picks its CPU convolution kernel with a heuristic written for 2D images: a batch-1 float32 input whose
first four sizes (N * C * H * W, the depth axis left out) multiply to at most 20480 goes to the native
``slow_conv3d_forward`` (an unfold + GEMM) instead of oneDNN. For 3D volumes that sends nnMamba's deeper
convolutions of a sliding-window batch of 1 (64 x 16^3, 128 x 8^3, 256 x 4^3 at a 64^3 window), its first
(4 input channels) and its last (3 -> 3) convolution to the native kernel, measured 2.3x to 5.5x slower than
oneDNN on the same call (2-core AMD EPYC, one thread; ``benchmarks/README.md``). :class:`OneDnnConv3d` calls
``aten.mkldnn_convolution`` directly in that case: the same convolution, rounded differently (float32
rounding only). Anything else (gradients, other dtypes or devices, padding modes, TorchScript) takes the stock
``nn.Conv3d`` path.
"""

from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["OneDnnConv3d", "use_onednn_convs"]


def _onednn_ready(x: torch.Tensor, conv: nn.Conv3d) -> bool:
    """Whether this call is float32 CPU inference that oneDNN can take as is."""
    if x.device.type != "cpu" or x.dtype != torch.float32 or conv.weight.dtype != torch.float32:
        return False
    if conv.padding_mode != "zeros" or isinstance(conv.padding, str) or torch.jit.is_tracing():
        return False
    if torch.is_grad_enabled() and (x.requires_grad or conv.weight.requires_grad):
        return False
    return torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled


class OneDnnConv3d(nn.Conv3d):
    """``nn.Conv3d`` whose float32 CPU inference always runs on oneDNN (module docstring); same parameters."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, in_channels, H, W, D) -> (B, out_channels, H', W', D')."""
        if not torch.jit.is_scripting():
            if _onednn_ready(x, self):
                return torch.ops.aten.mkldnn_convolution(
                    x.contiguous(),
                    self.weight,
                    self.bias,
                    list(self.padding),
                    list(self.stride),
                    list(self.dilation),
                    self.groups,
                )
        return self._conv_forward(x, self.weight, self.bias)


def use_onednn_convs(module: nn.Module) -> nn.Module:
    """Make every ``nn.Conv3d`` inside ``module`` (subclasses included) an :class:`OneDnnConv3d`, in place.

    Only the class changes (no parameter, buffer or attribute is added), so state-dict keys and shapes stay.
    Meant for inference copies (:func:`nnmamba_monai.networks.fuse_for_inference`): the checked reduced-precision
    gradients of :mod:`~nnmamba_monai.blocks.checked_conv` are a training concern. Returns ``module``.
    """
    for layer in module.modules():
        if isinstance(layer, nn.Conv3d) and type(layer) is not OneDnnConv3d:
            layer.__class__ = OneDnnConv3d
    return module

"""Convolutions whose reduced-precision CPU gradients are checked, and recomputed in float32 when a kernel fails.

On some CPUs with native bf16 (AVX512-BF16; seen on an AMD EPYC, torch 2.13.0, oneDNN 3.12), the oneDNN bf16
convolution backward now and then returns NaN in the weight gradient although its inputs (the layer input, the
weights and the output gradient) are all finite: nnMamba's coarsest decoder convolution (96 -> 32 channels on a
2 x 2 x 2 grid in the test network) did so at a different step in each seeded single-threaded run, which points at
the kernel reading memory it never wrote. ``docs/bf16_cpu_conv_nan.md`` and ``benchmarks/bf16_conv_nan_repro.py``
(a stand-alone reproduction to run on such a CPU) say what is known.

Here every convolution of a network is swapped by :func:`use_checked_convs` for a subclass with the same
parameters (state-dict keys, shapes and aliasing unchanged) that, only when it runs on CPU in bf16/fp16 with
gradients enabled, computes its backward itself with ``aten.convolution_backward`` and checks the gradients it
returns: if one is not finite while all its inputs are, that layer's gradients are recomputed from the same
reduced-precision tensors in float32 (oneDNN's fp32 kernels, which train this network cleanly) and cast back,
and a warning says so once per process. A gradient that is not finite because its inputs are not is passed on
unchanged, so true divergence still reaches the trainer's non-finite guard. Float32 runs, GPUs, inference and
TorchScript take the stock ``torch.nn`` path untouched; the only cost in the checked case is one finiteness
reduction over each weight gradient (weight-sized) and one over each input gradient (activation-sized).
"""

from __future__ import annotations

import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "CheckedConv2d",
    "CheckedConv3d",
    "CheckedConvTranspose2d",
    "CheckedConvTranspose3d",
    "use_checked_convs",
]

REDUCED_PRECISION = (torch.bfloat16, torch.float16)
# looked up at call time, so that tests can put a faulty kernel in its place
convolution_backward = torch.ops.aten.convolution_backward
_warned = False


def _all_finite(*tensors: torch.Tensor | None) -> bool:
    return all(t is None or bool(torch.isfinite(t).all()) for t in tensors)


class _CheckedConvolution(torch.autograd.Function):
    """``aten.convolution`` forward; backward by ``aten.convolution_backward`` with a float32 retry on a fault."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation, transposed, output_padding, groups):
        ctx.save_for_backward(x, weight)
        ctx.conv_args = (stride, padding, dilation, transposed, output_padding, groups)
        ctx.bias_sizes = None if bias is None else list(bias.shape)
        return torch.ops.aten.convolution(
            x, weight, bias, stride, padding, dilation, transposed, output_padding, groups
        )

    @staticmethod
    def backward(ctx, grad_output):
        x, weight = ctx.saved_tensors
        mask = [
            ctx.needs_input_grad[0],
            ctx.needs_input_grad[1],
            ctx.bias_sizes is not None and ctx.needs_input_grad[2],
        ]
        grads = convolution_backward(grad_output, x, weight, ctx.bias_sizes, *ctx.conv_args, mask)
        grads = [g if wanted else None for g, wanted in zip(grads, mask)]
        if not _all_finite(*grads) and _all_finite(grad_output, x, weight):
            _warn_once(x, weight)
            grads32 = convolution_backward(
                grad_output.float(), x.float(), weight.float(), ctx.bias_sizes, *ctx.conv_args, mask
            )
            grads = [None if g is None else g32.to(g.dtype) for g, g32 in zip(grads, grads32)]
        return (*grads, None, None, None, None, None, None)


def _warn_once(x: torch.Tensor, weight: torch.Tensor) -> None:
    global _warned
    if not _warned:
        _warned = True
        warnings.warn(
            f"the {x.dtype} CPU convolution backward returned non-finite gradients from finite inputs "
            f"(input {tuple(x.shape)}, weight {tuple(weight.shape)}): this layer's gradients were recomputed in "
            "float32 (a known oneDNN fault on some AVX512-BF16 CPUs, see docs/bf16_cpu_conv_nan.md); warned once",
            RuntimeWarning,
            stacklevel=2,
        )


class _CheckedConvMixin:
    """The checked path of a ``torch.nn`` convolution; everything else is the stock module's."""

    @torch.jit.unused
    def _needs_check(self, x: torch.Tensor) -> bool:
        if x.device.type != "cpu" or not torch.is_grad_enabled() or self.padding_mode != "zeros":
            return False
        if isinstance(self.padding, str) or torch.jit.is_tracing():
            return False
        dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else x.dtype
        return dtype in REDUCED_PRECISION

    @torch.jit.unused
    def _checked(self, x: torch.Tensor, output_padding: list[int]) -> torch.Tensor:
        dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else x.dtype
        bias = None if self.bias is None else self.bias.to(dtype)
        with torch.autocast("cpu", enabled=False):
            return _CheckedConvolution.apply(
                x.to(dtype),
                self.weight.to(dtype),
                bias,
                list(self.stride),
                list(self.padding),
                list(self.dilation),
                self.transposed,
                output_padding,
                self.groups,
            )


class CheckedConv2d(_CheckedConvMixin, nn.Conv2d):
    """``nn.Conv2d`` with checked reduced-precision CPU gradients (module docstring)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, in_channels, H, W) -> (B, out_channels, H', W')."""
        if not torch.jit.is_scripting():
            if self._needs_check(x):
                return self._checked(x, [0, 0])
        return self._conv_forward(x, self.weight, self.bias)


class CheckedConv3d(_CheckedConvMixin, nn.Conv3d):
    """``nn.Conv3d`` with checked reduced-precision CPU gradients (module docstring)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, in_channels, H, W, D) -> (B, out_channels, H', W', D')."""
        if not torch.jit.is_scripting():
            if self._needs_check(x):
                return self._checked(x, [0, 0, 0])
        return self._conv_forward(x, self.weight, self.bias)


class CheckedConvTranspose2d(_CheckedConvMixin, nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` with checked reduced-precision CPU gradients (module docstring)."""

    def forward(self, x: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        """x: (B, in_channels, H, W) -> (B, out_channels, H', W')."""
        padding = self._output_padding(x, output_size, self.stride, self.padding, self.kernel_size, 2, self.dilation)
        if not torch.jit.is_scripting():
            if self._needs_check(x):
                return self._checked(x, padding)
        return F.conv_transpose2d(
            x, self.weight, self.bias, self.stride, self.padding, padding, self.groups, self.dilation
        )


class CheckedConvTranspose3d(_CheckedConvMixin, nn.ConvTranspose3d):
    """``nn.ConvTranspose3d`` with checked reduced-precision CPU gradients (module docstring)."""

    def forward(self, x: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        """x: (B, in_channels, H, W, D) -> (B, out_channels, H', W', D')."""
        padding = self._output_padding(x, output_size, self.stride, self.padding, self.kernel_size, 3, self.dilation)
        if not torch.jit.is_scripting():
            if self._needs_check(x):
                return self._checked(x, padding)
        return F.conv_transpose3d(
            x, self.weight, self.bias, self.stride, self.padding, padding, self.groups, self.dilation
        )


_CHECKED = {
    nn.Conv2d: CheckedConv2d,
    nn.Conv3d: CheckedConv3d,
    nn.ConvTranspose2d: CheckedConvTranspose2d,
    nn.ConvTranspose3d: CheckedConvTranspose3d,
}


def use_checked_convs(module: nn.Module) -> nn.Module:
    """Make every plain ``torch.nn`` (transposed) convolution inside ``module`` its checked subclass, in place.

    The subclasses add no parameter, buffer or attribute, so each module keeps its identity and state: state-dict
    keys, order, shapes and shared (aliased) layers are unchanged. Subclasses of the ``torch.nn`` convolutions
    other than exactly those classes are left alone. Returns ``module``.
    """
    for layer in module.modules():
        if type(layer) in _CHECKED:
            layer.__class__ = _CHECKED[type(layer)]
    return module

"""The selective scan's mixed-precision policy: one rule, for every backend and every network family.

Under ``torch.autocast`` (CPU or CUDA, bfloat16 or float16) the scan is a precision boundary, as a loss is:

- autocast is off inside the scan, in its forward and in its backward, whichever region ``backward()`` is
  called from: no op of the scan is re-typed by autocast;
- the inputs are used in the dtypes they arrive in: the reduced-precision activations a Mamba layer produces
  under autocast (u, delta, z, B, C) are not copied to float32 up front, they are converted block by block
  (torch) or on load (triton, mamba_ssm);
- the state, its sums and the gradient sums are in :func:`compute_dtype` (float32; float64 when an input is
  float64);
- the output is in u's dtype, each gradient in its input's dtype.

Outside autocast the same rule holds, so the scan gives the same numbers for the same input tensors inside and
outside an autocast region. Everything around the scan (the Mamba layer's projections and convolution, the
networks' convolutions and norms) follows autocast like any other PyTorch layer; no network or block switches
autocast off itself.

How each backend meets it:

- ``torch``: the autograd Function's ``forward`` and ``backward`` are wrapped by :func:`autocast_off`, the
  equivalent of ``torch.amp.custom_fwd`` / ``custom_bwd`` for whichever device type the call is on (those
  decorators bind one device type each, and their ``cast_inputs`` would copy the saved activations to
  float32, doubling their memory);
- ``triton``: the registered ``torch.library`` ops have no autocast kernel, so autocast hands them their
  inputs unchanged; the kernels cast on load and accumulate in float32;
- ``mamba_ssm``: its CUDA kernel reads bf16/fp16/fp32 inputs and keeps a float32 state.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch

__all__ = ["autocast_off", "compute_dtype"]


def compute_dtype(
    u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor
) -> torch.dtype:
    """float64 when any of the scan's inputs is float64, else float32: the dtype the state is accumulated in."""
    wide = torch.float64
    if u.dtype == wide or delta.dtype == wide or A.dtype == wide or B.dtype == wide or C.dtype == wide:
        return wide
    return torch.float32


def autocast_off(method: Callable) -> Callable:
    """Decorate an autograd Function's ``forward`` or ``backward`` to run with autocast off.

    The device type is that of the first tensor argument (u in the forward, the output gradient in the
    backward); the call is unchanged when autocast is not enabled for it.
    """

    @functools.wraps(method)
    def run(ctx, *args):
        device_type = next((a.device.type for a in args if isinstance(a, torch.Tensor)), None)
        if device_type is None or not torch.is_autocast_enabled(device_type):
            return method(ctx, *args)
        with torch.autocast(device_type=device_type, enabled=False):
            return method(ctx, *args)

    return run

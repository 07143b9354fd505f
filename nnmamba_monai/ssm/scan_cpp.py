"""The ``cpp`` backend: the selective scan's forward as a C++ kernel for CPU inference, built on first use.

The torch backend walks the sequence in chunks solved in closed form with GEMMs: every pass reads and writes
(batch, D_inner, N, L)-sized temporaries, N times the size of the inputs. This kernel
(``csrc/selective_scan_cpu.cpp``) reads each input once and keeps the N states of a channel in vector registers,
one (batch, channel) row per task of PyTorch's thread pool.

It is compiled with ``torch.utils.cpp_extension.load`` on the first call (about a minute; needs a C++ compiler
and ninja) into PyTorch's extension cache (``TORCH_EXTENSIONS_DIR``, by default ``~/.cache/torch_extensions``),
one build per instruction-set level, so later processes load it in a second. Nothing is compiled at install.

What it runs itself: float32 compute (inputs of any floating dtype below float64 are read as float32; the output
is cast back to u's dtype, the state stays float32, as :mod:`nnmamba_monai.ssm.precision` asks) without
gradients, for a d_state in ``KERNEL_D_STATES`` (1, 2, 4, ..., 64). Everything else is handed to the torch
backend, so a call never fails for being outside that envelope: a call that needs gradients (the torch
backend's backward needs its own forward's block states), float64 inputs, other state sizes, and a call under
``torch.jit.trace`` (the export records the torch backend's compiled scan).

Automatic choice never takes it (a first call would stall for the compile); ask for it by name
(``backend="cpp"``, ``NNMAMBA_SSM_BACKEND=cpp``) or through the bundles' CPU preset
(:func:`nnmamba_monai.networks.fuse_for_inference` with ``scan_backend``).
"""

from __future__ import annotations

import functools
import os
import shutil
from pathlib import Path
from types import ModuleType

import torch

from nnmamba_monai.ssm.scan_inputs import ScanInputs
from nnmamba_monai.ssm.scan_torch import torch_scan

__all__ = ["KERNEL_D_STATES", "SOURCE", "cpp_scan", "load_extension", "preset_backend", "unavailable"]

SOURCE = Path(__file__).with_name("csrc") / "selective_scan_cpu.cpp"
KERNEL_D_STATES = (1, 2, 4, 8, 16, 32, 64)  # the state sizes SOURCE instantiates its row scan for (row_scan_for)
# x86 vector extensions by PyTorch's own CPU capability report; the level is part of the build's name, so a cache
# shared by machines of different generations (a cluster's home folder) holds one build per level.
_ISA_FLAGS = {
    "avx512": ["-mavx512f", "-mavx512dq", "-mavx512bw", "-mavx512vl", "-mavx2", "-mfma"],
    "avx2": ["-mavx2", "-mfma"],
}
# -ffast-math (all of it: glibc declares its vector exp only then) lets GCC vectorise exp with glibc's vector math
# library. It also lets the compiler assume finite inputs: a NaN or infinity in the inputs gives an unspecified
# (not necessarily NaN) output, where the torch backend would propagate it.
_CFLAGS = ["-O3", "-ffast-math", "-fopenmp-simd"]


def _isa_level() -> str:
    level = torch.backends.cpu.get_cpu_capability().lower()
    return level if level in _ISA_FLAGS else "generic"


@functools.cache
def _missing_build_tool(compiler: str) -> str | None:
    """Why the kernel cannot be built with ``compiler``, or None. Cached: the dispatcher asks on every call with
    ``backend="cpp"``, and the ninja check runs a subprocess."""
    if shutil.which(compiler) is None:
        return f"needs a C++ compiler ({compiler}, or set CXX) to build its kernel on first use"
    from torch.utils.cpp_extension import is_ninja_available

    if not is_ninja_available():
        return "needs ninja to build its kernel on first use (pip install ninja)"
    return None


def unavailable(device: torch.device) -> str | None:
    """None when the kernel can be built and run here for tensors on ``device``, else why not."""
    if device.type != "cpu":
        return f"runs on CPU tensors only; got tensors on {device}"
    return _missing_build_tool(os.environ.get("CXX", "c++"))


def preset_backend() -> str | None:
    """The scan backend of the bundles' CPU preset: ``"cpp"`` where its kernel can be built here, else None (each
    Mamba layer keeps its own backend)."""
    return "cpp" if unavailable(torch.device("cpu")) is None else None


@functools.cache
def load_extension() -> ModuleType:
    """The compiled kernel module, built on the first call of the process (or loaded from PyTorch's cache)."""
    reason = unavailable(torch.device("cpu"))
    if reason is not None:
        raise RuntimeError(f"backend 'cpp' {reason}")
    from torch.utils.cpp_extension import load

    level = _isa_level()
    return load(
        name=f"nnmamba_selective_scan_cpu_{level}",
        sources=[str(SOURCE)],
        extra_cflags=[*_CFLAGS, *_ISA_FLAGS.get(level, [])],
        verbose=False,
    )


def _runs_natively(inputs: ScanInputs) -> bool:
    tensors = [t for t in inputs[:8] if t is not None]
    if torch.jit.is_tracing() or any(t.dtype == torch.float64 for t in tensors):
        return False
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return False
    return inputs.A.shape[1] in KERNEL_D_STATES


def _float32(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.to(torch.float32).contiguous()


def cpp_scan(inputs: ScanInputs, return_last_state: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """The ``cpp`` backend on inputs in the native form; the result as :func:`nnmamba_monai.ssm.selective_scan`.

    Calls outside the kernel's envelope (module docstring) run on the torch backend instead.
    """
    if not _runs_natively(inputs):
        return torch_scan(inputs, return_last_state)
    u, delta, A, B, C, D, z, delta_bias, delta_softplus = inputs
    out, last = load_extension().selective_scan_forward(  # a plain C++ call: autocast does not reach it
        _float32(u),
        _float32(delta),
        _float32(A),
        B.to(torch.float32).transpose(1, 2).contiguous(),  # (batch, L, N): a token's N values side by side
        C.to(torch.float32).transpose(1, 2).contiguous(),
        _float32(D),
        _float32(z),
        _float32(delta_bias),
        bool(delta_softplus),
    )
    out = out.to(u.dtype)
    return (out, last) if return_last_state else out

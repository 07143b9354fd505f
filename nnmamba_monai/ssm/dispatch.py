"""One entry point, ``selective_scan``, over a registry of interchangeable backends.

Choice order: the ``backend`` argument when it is not ``"auto"``, else the environment variable
``NNMAMBA_SSM_BACKEND``, else automatic: the highest-priority registered backend that is available for the
input's device. With the built-in entries that is, on CUDA tensors, ``triton`` when Triton imports, then
``mamba_ssm`` when installed, then ``torch``; on any other device ``torch``. ``cpp`` (a C++ forward for CPU
inference, compiled on first use: :mod:`nnmamba_monai.ssm.scan_cpp`) is only taken when asked for by name.

A backend is one :class:`ScanBackend` entry in ``REGISTRY`` (see CONTRIBUTING.md); :func:`register_backend`
adds one at run time.

Every backend accepts every call form of ``mamba_ssm.selective_scan_fn`` (see
:mod:`nnmamba_monai.ssm.scan_forms`). A backend that runs only the native form (real A, (batch, N, L) B/C),
as ``torch`` and ``triton`` do, gets grouped B/C as one call per group of channels; complex A and
time-invariant B/C run on the token-by-token PyTorch path :func:`~nnmamba_monai.ssm.scan_forms.scan_general`
whichever backend was chosen, because neither the chunked closed form nor the Triton kernels carry a
per-channel B/C row or a complex state. ``mamba_ssm`` (``all_forms=True``) gets every form as it is.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass

import torch

from nnmamba_monai.ssm import scan_cpp, scan_mamba_ssm
from nnmamba_monai.ssm.scan_forms import is_native, needs_general, scan_general, scan_per_group
from nnmamba_monai.ssm.scan_inputs import ScanInputs
from nnmamba_monai.ssm.scan_torch import torch_scan

__all__ = [
    "BACKENDS",
    "ENV_VAR",
    "REGISTRY",
    "ScanBackend",
    "available_backends",
    "register_backend",
    "resolve_backend",
    "selective_scan",
    "selective_scan_torch",
    "selective_scan_triton",
]

ENV_VAR = "NNMAMBA_SSM_BACKEND"


@dataclass(frozen=True)
class ScanBackend:
    """One selective-scan implementation, as the dispatcher sees it.

    Args:
        name: the value of ``backend=`` and of ``NNMAMBA_SSM_BACKEND`` that selects it.
        fn: the scan, called as ``fn(inputs, return_last_state)`` with a
            :class:`~nnmamba_monai.ssm.scan_inputs.ScanInputs` (shapes checked by the dispatcher). It imports its
            own dependencies on first call, so that registering costs no import.
        priority: automatic choice takes the available backend with the highest priority.
        unavailable: (device) -> None when the backend can run on tensors of that device here, else why not
            (the error message of an explicit request, after "backend '<name>' ").
        auto_devices: device types on which automatic choice may take it; None for every device type.
        all_forms: ``fn`` runs grouped and time-invariant B/C and complex A itself; when False it gets only
            the native form (real A, (batch, N, L) B/C) and the dispatcher maps the others onto it.
    """

    name: str
    fn: Callable
    priority: int
    unavailable: Callable[[torch.device], str | None]
    auto_devices: tuple[str, ...] | None = None
    all_forms: bool = False

    def picked_automatically(self, device: torch.device) -> bool:
        """Whether automatic choice may take this backend for tensors on ``device``."""
        on_device = self.auto_devices is None or device.type in self.auto_devices
        return on_device and self.unavailable(device) is None


# Looked up once at import (find_spec does not import triton): torch.compile cannot trace importlib calls, and
# the dispatcher runs inside compiled Mamba layers.
_TRITON_FOUND = (
    importlib.util.find_spec("triton") is not None
    and importlib.util.find_spec("nnmamba_monai.ssm.scan_triton") is not None
)


def _triton_available() -> bool:
    return _TRITON_FOUND


def _triton_unavailable(device: torch.device) -> str | None:
    # Any device: on CPU tensors the Triton scan itself explains that it needs TRITON_INTERPRET=1.
    if _triton_available():
        return None
    return "requested but Triton (or nnmamba_monai.ssm.scan_triton) is not importable"


def _triton_scan(inputs: ScanInputs, return_last_state: bool):
    # An import statement (not importlib.import_module) so that torch.compile can trace through the dispatch;
    # importing scan_triton imports triton, hence only here.
    from nnmamba_monai.ssm import scan_triton

    return scan_triton.triton_scan(inputs, return_last_state)


def _mamba_ssm_unavailable(device: torch.device) -> str | None:
    if not scan_mamba_ssm.is_available():
        return "requested but the mamba_ssm package is not installed"
    if device.type != "cuda":
        return f"runs on CUDA tensors only; got tensors on {device}"
    return None


REGISTRY: dict[str, ScanBackend] = {}
_BY_PRIORITY: list[ScanBackend] = []  # REGISTRY's values, highest priority first (kept sorted on registration)


def register_backend(backend: ScanBackend) -> None:
    """Add (or replace, by name) a backend; ``"auto"`` is reserved."""
    if backend.name == "auto":
        raise ValueError("'auto' is the automatic choice, not a backend name")
    REGISTRY[backend.name] = backend
    _BY_PRIORITY[:] = sorted(REGISTRY.values(), key=lambda entry: -entry.priority)


register_backend(ScanBackend("torch", torch_scan, priority=0, unavailable=lambda device: None))
register_backend(
    ScanBackend("triton", _triton_scan, priority=20, unavailable=_triton_unavailable, auto_devices=("cuda",))
)
register_backend(
    ScanBackend(
        "mamba_ssm",
        scan_mamba_ssm.mamba_ssm_scan,
        priority=10,
        unavailable=_mamba_ssm_unavailable,
        auto_devices=("cuda",),
        all_forms=True,
    )
)

# Only by name: its first call compiles the kernel (see scan_cpp), so automatic choice (auto_devices=()) never takes it.
register_backend(ScanBackend("cpp", scan_cpp.cpp_scan, priority=5, unavailable=scan_cpp.unavailable, auto_devices=()))

BACKENDS = ("auto", *REGISTRY)  # the built-in choices: ("auto", "torch", "triton", "mamba_ssm", "cpp")


def available_backends() -> list[str]:
    """Registered backends that can run on this machine (``torch`` always can), in registration order.

    Each is asked about the first device type automatic choice may take it for (CPU when any).
    """
    return [
        name
        for name, entry in REGISTRY.items()
        if entry.unavailable(torch.device(entry.auto_devices[0] if entry.auto_devices else "cpu")) is None
    ]


def resolve_backend(backend: str, device: torch.device) -> str:
    """The concrete backend name for ``backend`` (argument, env var or auto) on ``device``."""
    requested = backend if backend != "auto" else os.environ.get(ENV_VAR, "auto").strip().lower() or "auto"
    if requested == "auto":
        for entry in _BY_PRIORITY:
            if entry.picked_automatically(device):
                return entry.name
        raise RuntimeError(f"no selective-scan backend is available for tensors on {device}")
    if requested not in REGISTRY:
        raise ValueError(
            f"unknown selective-scan backend {requested!r} (from "
            f"{'the backend argument' if backend != 'auto' else ENV_VAR}); choose one of {('auto', *REGISTRY)}"
        )
    reason = REGISTRY[requested].unavailable(device)
    if reason is not None:
        raise RuntimeError(f"backend {requested!r} {reason}")
    return requested


def _check_projection(
    name: str, t: torch.Tensor, batch: int, d_inner: int, d_state: int, length: int, complex_a: bool
) -> None:
    """B or C in one of mamba_ssm's forms: (batch, N, L), (batch, G, N, L) or time-invariant (D_inner, N)."""
    time_len = 2 * length if complex_a else length  # complex: (real, imaginary) interleaved per token
    if t.dim() == 2 and tuple(t.shape) == (d_inner, d_state):
        return
    if t.dim() == 3 and tuple(t.shape) == (batch, d_state, time_len) and not t.is_complex():
        return
    if t.dim() == 4 and not t.is_complex():
        groups = t.shape[1]
        if tuple(t.shape) == (batch, groups, d_state, time_len) and groups > 0 and d_inner % groups == 0:
            return
    length_name = "2*length" if complex_a else "length"
    raise ValueError(
        f"{name} must be (batch, d_state, {length_name}) = {(batch, d_state, time_len)}, (batch, groups, "
        f"d_state, {length_name}) with groups dividing d_inner={d_inner}, or time-invariant (d_inner, d_state) = "
        f"{(d_inner, d_state)}; got {tuple(t.shape)}{' ' + str(t.dtype) if t.is_complex() else ''}"
    )


def _check_shapes(inputs: ScanInputs) -> None:
    u, delta, A, B, C, D, z, delta_bias, _ = inputs
    if u.dim() != 3:
        raise ValueError(f"u must be (batch, d_inner, length); got shape {tuple(u.shape)}")
    batch, d_inner, length = u.shape
    if delta.shape != u.shape:
        raise ValueError(f"delta must have u's shape {tuple(u.shape)}; got {tuple(delta.shape)}")
    if A.dim() != 2 or A.shape[0] != d_inner:
        raise ValueError(f"A must be (d_inner={d_inner}, d_state); got {tuple(A.shape)}")
    d_state = A.shape[1]
    for name, t in (("B", B), ("C", C)):
        _check_projection(name, t, batch, d_inner, d_state, length, A.is_complex())
    for name, t in (("D", D), ("delta_bias", delta_bias)):
        if t is not None and tuple(t.shape) != (d_inner,):
            raise ValueError(f"{name} must be (d_inner,) = ({d_inner},); got {tuple(t.shape)}")
    if z is not None and z.shape != u.shape:
        raise ValueError(f"z must have u's shape {tuple(u.shape)}; got {tuple(z.shape)}")


def selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    backend: str = "auto",
):
    """Mamba-1 selective scan with ``mamba_ssm.selective_scan_fn``'s arguments and output.

    Every backend follows the precision policy of :mod:`nnmamba_monai.ssm.precision` (float32 state, output
    in u's dtype, the same under autocast as outside it).

    Args:
        u, delta: (B, D_inner, L) input and time step.
        A: (D_inner, N) state matrix (diagonal per channel; negative real part for a stable scan), real or
            complex (the output is then 2 * Re(C h), as in mamba_ssm).
        B, C: (B, N, L) input-dependent input and output projections; also, as in mamba_ssm, grouped
            (B, G, N, L) (channel d reads group d // (D_inner / G)) or time-invariant (D_inner, N); with a
            complex A, (B, N, 2L) / (B, G, N, 2L) real with (real, imaginary) interleaved per token, or
            complex (D_inner, N). See :mod:`nnmamba_monai.ssm.scan_forms`.
        D: (D_inner,) skip weight.
        z: (B, D_inner, L) gate; the output is multiplied by SiLU(z).
        delta_bias: (D_inner,) added to delta before ``delta_softplus``.
        delta_softplus: apply softplus to the (biased) delta.
        return_last_state: also return the final state (B, D_inner, N) (complex for a complex A).
        backend: "auto" or a registered name: "torch", "triton", "mamba_ssm", "cpp" (see the module docstring).
    Returns:
        (B, D_inner, L) in u's dtype; with ``return_last_state`` a tuple (out, last_state).
    """
    inputs = ScanInputs(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    if not torch.jit.is_tracing():  # a trace records tensor ops only: the eager call checked the shapes
        _check_shapes(inputs)
    entry = REGISTRY[resolve_backend(backend, u.device)]
    if entry.all_forms or is_native(A, B, C):
        return entry.fn(inputs, return_last_state)
    if needs_general(A, B, C):
        return scan_general(inputs, return_last_state)
    return scan_per_group(entry.fn, inputs, return_last_state)


# The scan on one backend, with selective_scan's arguments (and its shape checks and call forms).
selective_scan_torch = functools.partial(selective_scan, backend="torch")
selective_scan_triton = functools.partial(selective_scan, backend="triton")

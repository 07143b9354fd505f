"""Stand-in for ``mamba_ssm.ops.selective_scan_interface`` on nnmamba_monai's scan backends.

``selective_scan_fn`` and ``mamba_inner_fn`` take mamba_ssm's arguments and every call form it accepts, and
run on the backend chosen as for :func:`nnmamba_monai.ssm.selective_scan` (``NNMAMBA_SSM_BACKEND`` or
automatic). The ``*_ref`` functions are the same calls on the exact PyTorch backend.
"""

from __future__ import annotations

from nnmamba_monai.ssm.dispatch import selective_scan
from nnmamba_monai.ssm.inner import mamba_inner_fn as _mamba_inner

__all__ = ["mamba_inner_fn", "mamba_inner_ref", "selective_scan_fn", "selective_scan_ref"]


def selective_scan_fn(
    u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, return_last_state=False
):  # noqa: D103
    return selective_scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)


def selective_scan_ref(
    u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, return_last_state=False
):  # noqa: D103
    return selective_scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state, backend="torch")


def mamba_inner_fn(*args, **kwargs):  # noqa: D103
    return _mamba_inner(*args, **kwargs)


def mamba_inner_ref(*args, **kwargs):  # noqa: D103
    return _mamba_inner(*args, **kwargs, backend="torch")


selective_scan_fn.__doc__ = selective_scan.__doc__
mamba_inner_fn.__doc__ = _mamba_inner.__doc__

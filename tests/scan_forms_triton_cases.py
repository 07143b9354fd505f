"""mamba_ssm's call forms through the ``triton`` backend, run by Triton's interpreter on the CPU.

Not collected by the normal test run: ``tests/test_scan_forms.py`` runs this file in a subprocess with
``TRITON_INTERPRET=1`` set before Triton is imported. A handful of tiny cases: grouped B/C (one Triton scan per
group), and complex A / time-invariant B (the PyTorch path, whichever backend is asked for).
"""

from __future__ import annotations

import os

import pytest
import torch

if os.environ.get("TRITON_INTERPRET") != "1":  # pragma: no cover - guarded by the launcher
    raise RuntimeError("run through tests/test_scan_forms.py: TRITON_INTERPRET=1 must be set before importing triton")

from nnmamba_monai.ssm import selective_scan  # noqa: E402
from tests.helpers import reference_scan_any_form  # noqa: E402
from tests.test_scan_forms import GRAD_TOL, OUT_TOL, scaled_error, upstream_inputs  # noqa: E402

NAMES = ("u", "delta", "A", "B", "C")


@pytest.mark.parametrize(
    "itype, wtype, groups, var_b, var_c",
    [
        (torch.float32, torch.float32, 2, True, True),
        (torch.bfloat16, torch.float32, 2, True, True),
        (torch.float32, torch.complex64, 1, True, True),
        (torch.float16, torch.float32, 1, False, True),
    ],
)
def test_forms_on_triton_backend(itype, wtype, groups, var_b, var_c):
    inputs = upstream_inputs(itype, wtype, groups, var_b, var_c, length=19, seed=3)
    leaves = {name: t.detach().clone().requires_grad_() for name, t in inputs.items()}
    wide = {name: t.detach().to(torch.complex128 if t.is_complex() else torch.float64).requires_grad_()
            for name, t in inputs.items()}  # fmt: skip
    options = {"delta_softplus": True}
    out, state = selective_scan(
        *[leaves[n] for n in NAMES], leaves["D"], leaves["z"], leaves["delta_bias"], **options,
        return_last_state=True, backend="triton",
    )  # fmt: skip
    expected, expected_state = reference_scan_any_form(
        *[wide[n] for n in NAMES], wide["D"], wide["z"], wide["delta_bias"], **options
    )
    assert scaled_error(out, expected) <= OUT_TOL[itype]
    assert scaled_error(state, expected_state) <= OUT_TOL[torch.float32]
    weight = torch.randn(out.shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    (out.double() * weight).sum().backward()
    (expected * weight).sum().backward()
    for name in inputs:
        assert scaled_error(leaves[name].grad, wide[name].grad) <= GRAD_TOL[itype], name

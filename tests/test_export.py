"""TorchScript export by tracing (what ``monai.bundle ckpt_export --use_trace True`` does).

Under ``torch.jit.trace`` the torch scan is recorded as a call to its TorchScript-compiled forward, which keeps
the loop over blocks and the data-dependent chunk length. The saved file must therefore be exact for inputs of
other sizes than the traced one, and for strongly decaying states (the chunk-halving path).
"""

from __future__ import annotations

import io

import pytest
import torch

from nnmamba_monai import nnMambaCls, nnMambaSeg
from nnmamba_monai.networks import BiSegMamba, SegMamba
from nnmamba_monai.ssm import scan_torch
from tests.helpers import random_scan_inputs, step_by_step_scan

TAMING_FILTERS = (4, 8, 8, 8, 8)


def save_and_load(module: torch.jit.ScriptModule) -> torch.jit.ScriptModule:
    buffer = io.BytesIO()
    torch.jit.save(module, buffer)
    buffer.seek(0)
    return torch.jit.load(buffer)


class _ScanOnly(torch.nn.Module):
    def forward(self, u, delta, A, B, C):
        return scan_torch.scan_core(u, delta, A, B, C)


@pytest.mark.parametrize(("length", "delta_scale"), [(100, 1.0), (300, 40.0)], ids=["plain", "strong_decay"])
def test_traced_scan_is_exact_at_other_lengths(length, delta_scale):
    traced_on = random_scan_inputs(1, 4, 64, 8)
    args = [traced_on[k].abs() if k == "delta" else traced_on[k] for k in ("u", "delta", "A", "B", "C")]
    exported = save_and_load(torch.jit.trace(_ScanOnly(), tuple(args)))
    inp = random_scan_inputs(2, 4, length, 8, delta_scale=delta_scale, seed=3)
    inp["delta"] = inp["delta"].abs()
    y, h = exported(inp["u"], inp["delta"], inp["A"], inp["B"], inp["C"])
    ref_y, ref_h = step_by_step_scan(*(inp[k].double() for k in ("u", "delta", "A", "B", "C")))
    assert y.shape == (2, 4, length) and h.shape == (2, 4, 8)
    assert torch.isfinite(y).all()
    assert float((y.double() - ref_y).norm() / ref_y.norm()) <= 1e-5
    eager_y, eager_h = scan_torch.scan_core(inp["u"], inp["delta"], inp["A"], inp["B"], inp["C"])
    assert torch.allclose(y, eager_y, rtol=1e-5, atol=1e-6) and torch.allclose(h, eager_h, rtol=1e-5, atol=1e-6)


NETWORKS = {  # name: (factory, traced input shape, another input shape)
    "nnMambaSeg-miccss": (lambda: nnMambaSeg(3, 1, 2, channels=8), (1, 1, 32, 32, 32), (1, 1, 48, 32, 64)),
    "nnMambaSeg-mic": (
        lambda: nnMambaSeg(3, 4, 3, channels=8, generation="mic"),
        (1, 4, 32, 32, 32),
        (2, 4, 32, 48, 32),
    ),
    "nnMambaCls": (lambda: nnMambaCls(3, 1, 1, channels=8), (1, 1, 32, 32, 32), (2, 1, 48, 48, 48)),
    # MultiSegMamba and SegMambaSkip are built from the same uni/bidirectional voxel layers (tracing
    # MultiSegMamba's 40 scans costs ~1 min here, so it is checked by hand, see the bundle docs)
    "SegMamba": (lambda: SegMamba(3, 1, 2, filters=TAMING_FILTERS), (1, 1, 32, 32, 32), (1, 1, 32, 48, 32)),
    "BiSegMamba": (lambda: BiSegMamba(3, 1, 2, filters=TAMING_FILTERS), (1, 1, 32, 32, 32), (1, 1, 32, 48, 32)),
}


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_traced_network_equals_eager_at_the_traced_and_another_shape(name):
    factory, traced_shape, other_shape = NETWORKS[name]
    torch.manual_seed(0)
    network = factory().eval()
    with torch.no_grad():
        exported = save_and_load(torch.jit.trace(network, torch.randn(traced_shape)))
        for shape in (traced_shape, other_shape):
            x = torch.randn(shape)
            expected, actual = network(x), exported(x)
            assert actual.shape == expected.shape, shape
            assert torch.allclose(actual, expected, atol=1e-5, rtol=1e-5), shape


def test_eager_shape_errors_are_unchanged_outside_tracing():
    with pytest.raises(ValueError, match="multiple of 16"):
        nnMambaSeg(3, 1, 2, channels=8)(torch.randn(1, 1, 20, 32, 32))

"""The Triton selective scan: interpreter runs on the CPU, registration, configuration, and a real-GPU check.

The numerical cases live in ``tests/scan_triton_cases.py`` and run here in a subprocess, because
``TRITON_INTERPRET=1`` must be set before Triton is imported and must not leak into the rest of the suite.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import torch

from nnmamba_monai.ssm import scan_triton
from tests.conftest import REPO_ROOT
from tests.helpers import random_scan_inputs

MIN_INTERPRETER_CASES = 14  # guards against cases silently deselected or not collected


def _subprocess_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def test_kernels_match_torch_backend_in_triton_interpreter():
    """Forward, all eight gradients, last state, bf16/fp16, strides, autocast, torch.compile (see the cases file)."""
    cases = REPO_ROOT / "tests" / "scan_triton_cases.py"
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(cases)]
    result = subprocess.run(
        command, cwd=REPO_ROOT, env=_subprocess_env(TRITON_INTERPRET="1"), capture_output=True, text=True, timeout=600
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    summary = output.strip().splitlines()[-1]
    passed = re.search(r"(\d+) passed", summary)
    assert passed and int(passed.group(1)) >= MIN_INTERPRETER_CASES, summary
    assert not re.search(r"skipped|failed|error|xfail|deselected", summary), summary


def test_cpu_tensors_without_interpreter_raise_clearly(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    inp = random_scan_inputs(1, 2, 8, 2)
    with pytest.raises(RuntimeError, match="runs on CUDA tensors"):
        scan_triton.selective_scan_triton(inp["u"], inp["delta"], inp["A"], inp["B"], inp["C"])


def test_registered_ops_trace_with_fake_tensors():
    """The fake (tracing) path torch.compile takes through both ops gives the documented shapes and dtypes."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    batch, d_inner, length, d_state = 2, 6, 40, 4
    inp = random_scan_inputs(batch, d_inner, length, d_state)
    inp = {k: v.to(torch.bfloat16) if k in ("u", "delta", "z", "B", "C") else v for k, v in inp.items()}
    with FakeTensorMode() as mode:
        f = {k: mode.from_tensor(v) for k, v in inp.items()}
        out, last, entry = torch.ops.nnmamba.selective_scan_fwd(
            f["u"], f["delta"], f["A"], f["B"], f["C"], f["D"], f["z"], f["delta_bias"], True, 16, 4, 4, 4, 4
        )
        grads = torch.ops.nnmamba.selective_scan_bwd(
            f["u"], f["delta"], f["A"], f["B"], f["C"], f["D"], f["z"], f["delta_bias"], entry, out, last,
            True, 16, 4, 4,
        )  # fmt: skip
    assert out.shape == (batch, d_inner, length) and out.dtype == torch.bfloat16
    assert last.shape == (batch, d_state, d_inner) and last.dtype == torch.float32
    assert entry.shape == (batch, 3, d_state, d_inner) and entry.dtype == torch.float32
    expected = [f[k] for k in ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")]
    for name, grad, ref in zip(("u", "delta", "A", "B", "C", "D", "z", "delta_bias"), grads, expected):
        assert grad.shape == ref.shape and grad.dtype == ref.dtype, name


def test_default_config_parallelises_nnmamba_stages():
    stage1 = scan_triton.default_config(2, 128, 32768, num_sms=132)
    stage3 = scan_triton.default_config(2, 512, 512, num_sms=132)
    assert (stage1.chunk_len, stage1.block_d, stage1.block_d_bwd) == (64, 32, 16)
    assert stage3.chunk_len == 16  # short sequence: shorter chunks keep >= 4 programs per SM
    assert 2 * (512 // stage3.block_d) * (512 // stage3.chunk_len) >= 4 * 132
    tiny = scan_triton.default_config(1, 3, 5, num_sms=132)
    assert tiny.block_d == 4 and tiny.chunk_len == 16
    with pytest.raises(ValueError, match="power of two"):
        scan_triton.ScanConfig(chunk_len=48)


def test_package_imports_without_triton():
    """With triton unimportable: the package imports, triton is not offered, and asking for it says why."""
    script = (
        "import sys; sys.modules['triton'] = None\n"
        "import torch, nnmamba_monai\n"
        "from nnmamba_monai.ssm import available_backends, resolve_backend, scan_triton\n"
        "assert 'triton' not in available_backends()\n"
        "assert resolve_backend('auto', torch.device('cuda')) != 'triton'\n"
        "assert not scan_triton.is_available()\n"
        "x = torch.zeros(1, 2, 3); A = -torch.ones(2, 4); B = torch.zeros(1, 4, 3)\n"
        "try:\n"
        "    scan_triton.selective_scan_triton(x, x, A, B, B)\n"
        "except RuntimeError as e:\n"
        "    assert 'needs the triton package' in str(e), e\n"
        "else:\n"
        "    raise AssertionError('no error')\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, env=_subprocess_env(), capture_output=True, text=True
    )
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stdout + result.stderr


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU: compiled Triton kernels at real sizes")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(2, 128, 4096, 16), (2, 512, 512, 16), (3, 40, 1000, 8)])
def test_gpu_matches_torch_backend(shape, dtype):
    """Eager and torch.compile'd (Inductor) Triton scan against the torch backend, outputs and all gradients."""
    from nnmamba_monai.ssm.scan_torch import selective_scan_torch

    names = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")
    inp = {k: v.cuda() for k, v in random_scan_inputs(*shape, dtype=torch.float32).items()}
    inp = {k: v.to(dtype) if k in ("u", "delta", "z", "B", "C") else v for k, v in inp.items()}
    grad_out = torch.randn(shape[:3], device="cuda")

    def run(fn):
        leaves = {k: inp[k].clone().requires_grad_() for k in names}
        out, last = fn(*(leaves[k] for k in names), delta_softplus=True, return_last_state=True)
        ((out.float() * grad_out).sum() + last.sum()).backward()
        return out, last, [leaves[k].grad for k in names]

    def rel(a, b):
        return float((a.float() - b.float()).norm() / b.float().norm())

    ref_out, ref_last, ref_grads = run(selective_scan_torch)
    out_tol, grad_tol = (1e-4, 1e-4) if dtype == torch.float32 else (2e-2, 5e-2)
    for fn in (scan_triton.selective_scan_triton, torch.compile(scan_triton.selective_scan_triton)):
        out, last, grads = run(fn)
        assert out.dtype == dtype and last.dtype == torch.float32
        assert rel(out, ref_out) <= out_tol
        assert rel(last, ref_last) <= 1e-3
        for name, grad, ref in zip(names, grads, ref_grads):
            assert grad.dtype == ref.dtype and rel(grad, ref) <= grad_tol, (name, rel(grad, ref))

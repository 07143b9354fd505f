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

MIN_INTERPRETER_CASES = 18  # guards against cases silently deselected or not collected


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
        scan_triton.scan_with_config(None)(inp["u"], inp["delta"], inp["A"], inp["B"], inp["C"])


def test_registered_ops_trace_with_fake_tensors():
    """The fake (tracing) path torch.compile takes through both ops gives the documented shapes and dtypes."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    batch, d_inner, length, d_state = 2, 6, 40, 4
    inp = random_scan_inputs(batch, d_inner, length, d_state)
    inp = {k: v.to(torch.bfloat16) if k in ("u", "delta", "z", "B", "C") else v for k, v in inp.items()}
    with FakeTensorMode() as mode:
        f = {k: mode.from_tensor(v) for k, v in inp.items()}
        config = scan_triton.ScanConfig(chunk_len=16)
        out, last, entry = torch.ops.nnmamba.selective_scan_fwd(
            f["u"], f["delta"], f["A"], f["B"], f["C"], f["D"], f["z"], f["delta_bias"], True, *config.launch_args()
        )
        grads = torch.ops.nnmamba.selective_scan_bwd(
            f["u"], f["delta"], f["A"], f["B"], f["C"], f["D"], f["z"], f["delta_bias"], entry, out, last,
            True, 16, config.block_d_bwd, config.num_warps_bwd, config.seq_warps, config.seq_max_states,
        )  # fmt: skip
    assert out.shape == (batch, d_inner, length) and out.dtype == torch.bfloat16
    assert out.stride(1) == 1  # channel-contiguous: what the token-sequential kernel writes (and out_proj reads)
    assert last.shape == (batch, d_state, d_inner) and last.dtype == torch.float32
    assert entry.shape == (batch, 3, d_state, d_inner) and entry.dtype == torch.float32
    expected = [f[k] for k in ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")]
    for name, grad, ref in zip(("u", "delta", "A", "B", "C", "D", "z", "delta_bias"), grads, expected):
        assert grad.shape == ref.shape and grad.dtype == ref.dtype, name


def test_default_config_parallelises_nnmamba_stages():
    sms = 132
    stage1 = scan_triton.default_config(2, 128, 32768, num_sms=sms)
    stage2 = scan_triton.default_config(2, 256, 4096, num_sms=sms)
    stage3 = scan_triton.default_config(2, 512, 512, num_sms=sms)
    assert (stage1.chunk_len, stage1.seq_warps, stage1.block_d_bwd) == (64, 4, 16)
    assert (stage2.chunk_len, stage3.chunk_len) == (16, 8)  # shorter chunks keep >= 16 warps per SM busy
    for (d_inner, length), config in (((256, 4096), stage2), ((512, 512), stage3)):
        threads = 2 * d_inner * length // config.chunk_len  # token-sequential kernels: one channel per thread
        assert threads >= 512 * sms or config.chunk_len == 8
    assert all(c.seq_max_states >= 16 for c in (stage1, stage2, stage3))  # d_state 16 in registers
    tiny = scan_triton.default_config(1, 3, 5, num_sms=sms)
    assert (tiny.chunk_len, tiny.block_d, tiny.block_d_bwd, tiny.seq_warps) == (8, 4, 4, 1)
    with pytest.raises(ValueError, match="power of two"):
        scan_triton.ScanConfig(chunk_len=48)
    with pytest.raises(ValueError, match="seq_max_states"):
        scan_triton.ScanConfig(seq_max_states=-1)


ACTIVATION_POINTERS = {"u_ptr", "delta_ptr", "z_ptr", "B_ptr", "C_ptr", "out_ptr", "dout_ptr", "du_ptr", "ddelta_ptr"}
ACTIVATION_POINTERS |= {"dz_ptr"}
FLAGS = {"HAS_BIAS": True, "SOFTPLUS": True}
SEQ = {"N": 16, "N_PAD": 16, "CHUNK": 64, "BLOCK_D": 64}
TILED = {"CHUNK": 64, "BLOCK_D": 16}
COMPILE_CASES = [  # (kernel, dtype of activations, constexprs, num_warps)
    ("fwd_seq_kernel", "bf16", {**SEQ, **FLAGS, "HAS_D": True, "HAS_Z": True, "SUMMARY": True}, 2),
    ("fwd_seq_kernel", "bf16", {**SEQ, **FLAGS, "HAS_D": True, "HAS_Z": True, "SUMMARY": False}, 2),
    ("fwd_seq_kernel", "fp32", {**SEQ, "HAS_BIAS": False, "SOFTPLUS": False, "HAS_D": False, "HAS_Z": False,
                                "SUMMARY": False}, 2),
    ("bwd_seq_summary_kernel", "bf16", {**SEQ, **FLAGS, "HAS_Z": True}, 2),
    ("chunk_carry_kernel", "fp32", {"BLOCK_S": 32, "CHUNK_BLOCK": 128, "REVERSE": False, "HAS_INIT": False}, 4),
    ("chunk_carry_kernel", "fp32", {"BLOCK_S": 32, "CHUNK_BLOCK": 128, "REVERSE": True, "HAS_INIT": True}, 4),
    ("fwd_chunk_summary_kernel", "bf16", {**TILED, **FLAGS}, 4),
    ("fwd_output_kernel", "bf16", {**TILED, **FLAGS, "HAS_D": True, "HAS_Z": True}, 4),
    ("bwd_chunk_summary_kernel", "bf16", {**TILED, **FLAGS, "HAS_Z": True}, 4),
    ("bwd_scan_kernel", "bf16", {**TILED, **FLAGS, "HAS_D": True, "HAS_Z": True}, 4),
]  # fmt: skip


def test_kernels_compile_for_hopper_without_a_gpu():
    """Every kernel goes through Triton's full compiler (TTIR -> PTX -> cubin for sm_90) on the CPU.

    The interpreter runs the Python semantics only; this catches what only the compiler rejects (globals that
    are not constexpr, type errors in untaken branches, unsupported ops).
    """
    import inspect

    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from nnmamba_monai.ssm import _triton_kernels as kernels

    for name, act_dtype, constexprs, num_warps in COMPILE_CASES:
        kernel = getattr(kernels, name)
        assert isinstance(kernel, triton.runtime.jit.JITFunction), f"{name} is not a JIT kernel (TRITON_INTERPRET set?)"
        signature = {}
        for param in inspect.signature(kernel.fn).parameters:
            if param in constexprs:
                signature[param] = "constexpr"
            elif param.endswith("_ptr"):
                signature[param] = f"*{act_dtype}" if param in ACTIVATION_POINTERS else "*fp32"
            else:
                signature[param] = "i32"
        source = ASTSource(fn=kernel, signature=signature, constexprs=constexprs)
        compiled = triton.compile(source, target=GPUTarget("cuda", 90, 32), options={"num_warps": num_warps})
        assert compiled.asm.get("cubin"), name
        assert f".entry {name}(" in compiled.asm["ptx"], name


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
        "    scan_triton.scan_with_config(None)(x, x, A, B, B)\n"
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
    from nnmamba_monai.ssm import selective_scan_torch

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
    triton_scan = scan_triton.scan_with_config(None)
    for fn in (triton_scan, torch.compile(triton_scan)):
        out, last, grads = run(fn)
        assert out.dtype == dtype and last.dtype == torch.float32
        assert rel(out, ref_out) <= out_tol
        assert rel(last, ref_last) <= 1e-3
        for name, grad, ref in zip(names, grads, ref_grads):
            assert grad.dtype == ref.dtype and rel(grad, ref) <= grad_tol, (name, rel(grad, ref))

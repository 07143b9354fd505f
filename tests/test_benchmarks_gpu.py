"""The GPU benchmark scripts: argument parsing, the anchor protocol, and a clear exit without CUDA."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

SCRIPTS = ("ssm_gpu.py", "nets_gpu.py")


def _load(script: str):
    spec = importlib.util.spec_from_file_location(script[:-3], REPO_ROOT / "benchmarks" / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(script: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # no GPU even on a GPU machine
    command = [sys.executable, str(REPO_ROOT / "benchmarks" / script), *args]
    return subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("script", SCRIPTS)
def test_help(script):
    result = _run(script, "--help")
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout and "--output" in result.stdout


@pytest.mark.parametrize("script, extra", [("ssm_gpu.py", ()), ("nets_gpu.py", ("--channels-last", "--compile"))])
def test_exits_clearly_without_cuda(script, extra):
    result = _run(script, *extra)
    assert result.returncode == 1
    assert f"{script} needs a CUDA GPU" in result.stderr
    assert "Traceback" not in result.stderr


def test_ssm_protocol_matches_anchor():
    ssm = _load("ssm_gpu.py")
    args = ssm.parse_args([])
    assert args.stages == [1, 2, 3] and set(args.dtypes) == {"bf16", "fp32"}
    assert set(args.backends) == {"triton", "torch", "mamba_ssm"}
    assert ssm.STAGES == {1: (128, 32768), 2: (256, 4096), 3: (512, 512)} and (ssm.BATCH, ssm.D_STATE) == (2, 16)
    import torch

    # the anchor's "min bytes fwd" column: 142.6 / 71.3 / 34.6 / 17.3 / 8.5 / 4.3 MB
    expected = {(1, torch.float32): 142.6, (1, torch.bfloat16): 71.3, (2, torch.float32): 34.6,
                (2, torch.bfloat16): 17.3, (3, torch.float32): 8.5, (3, torch.bfloat16): 4.3}  # fmt: skip
    for (stage, dtype), megabytes in expected.items():
        assert round(ssm.min_bytes(*ssm.STAGES[stage], dtype, backward=False) / 1e6, 1) == megabytes
    assert set(ssm.ANCHOR_MAMBA_SSM_MS) == {(s, d) for s in (1, 2, 3) for d in ("bf16", "fp32")}


def test_nets_protocol_matches_anchor():
    nets = _load("nets_gpu.py")
    args = nets.parse_args([])
    assert (args.size, args.batch, args.warmup, args.repeats) == (128, 2, 3, 8)
    assert args.nets == ["nnMamba", "DynUNet", "SwinUNETR", "SegResNet"] and args.backend == "triton"
    assert not (args.channels_last or args.compile or args.cudnn_benchmark)
    params = {name: sum(p.numel() for p in nets.build(name, "torch").parameters()) / 1e6 for name in nets.NET_NAMES}
    # parameter counts of the anchor table (nnMamba: the authors' 15.96 M, reproduced by nnMambaSeg)
    assert params == pytest.approx(
        {"nnMamba": 15.96, "DynUNet": 31.19, "SwinUNETR": 62.19, "SegResNet": 4.70}, abs=0.01
    )

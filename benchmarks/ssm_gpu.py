"""GPU benchmark of the selective scan at nnMamba's stage shapes: Triton backend vs torch backend vs mamba_ssm.

Protocol (as in shared/reference/anchor_h100.md): B = 2, N = 16, stages (d_inner, L) = (128, 32768), (256, 4096),
(512, 512); u / delta / z (B, d_inner, L) and B / C (B, N, L) in the benchmarked dtype, A = -rand(d_inner, N),
D and delta_bias in float32, ``delta_softplus=True``. "fwd" runs the scan on inputs that need no gradient;
"fwd+bwd" runs it on leaves that do and back-propagates a random upstream gradient (torch.autograd.grad).
CUDA events around each call, median of ``--repeats`` after ``--warmup`` calls. Bandwidth is against a
device-to-device copy measured in the same run (bytes read + written / time).

Minimum bytes moved: fwd reads u, delta, z, B, C and writes out, B * L * (4 * d_inner + 2 * N) elements
(the anchor's "min bytes fwd"); fwd+bwd adds the backward's reads of u, delta, z, dout, B, C and writes of du,
d delta, dz, dB, dC, B * L * (11 * d_inner + 6 * N) elements in all. Effective GB/s = minimum bytes / time.

mamba_ssm is timed in the same run when it is installed; otherwise its numbers are the anchor's (H100 80GB
HBM3, another run), and the table says so. Outputs of every backend are checked against the torch backend
before timing.

    python benchmarks/ssm_gpu.py                         # table + benchmarks/results/ssm_gpu.{json,md}
    python benchmarks/ssm_gpu.py --dtypes bf16 --stages 1
    python benchmarks/ssm_gpu.py --sweep                 # also time Triton launch configurations per shape
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
import itertools
import json
import platform
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results" / "ssm_gpu.json"
BATCH, D_STATE = 2, 16
STAGES = {1: (128, 32768), 2: (256, 4096), 3: (512, 512)}  # stage -> (d_inner, L)
DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}
BACKENDS = ("triton", "torch", "mamba_ssm")
# mamba_ssm 2.3.2.post1 on an H100 80GB HBM3, from shared/reference/anchor_h100.md: (stage, dtype) -> ms
ANCHOR_MAMBA_SSM_MS = {
    (1, "fp32"): {"fwd": 0.486, "fwd+bwd": 1.608},
    (1, "bf16"): {"fwd": 0.465, "fwd+bwd": 1.372},
    (2, "fp32"): {"fwd": 0.196, "fwd+bwd": 0.722},
    (2, "bf16"): {"fwd": 0.134, "fwd+bwd": 0.661},
    (3, "fp32"): {"fwd": 0.439, "fwd+bwd": 0.914},
    (3, "bf16"): {"fwd": 0.101, "fwd+bwd": 0.876},
}
ANCHOR_COPY_GBS = 2898.0
TARGET_SPEEDUP_FWD_BWD = 2.0  # Triton fwd+bwd vs mamba_ssm
TARGET_STAGE1_FWD_COPY_FRACTION = 0.30  # Triton forward at stage 1, effective bandwidth / copy bandwidth


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stages", type=int, nargs="+", choices=sorted(STAGES), default=sorted(STAGES))
    parser.add_argument("--dtypes", nargs="+", choices=sorted(DTYPES), default=["bf16", "fp32"])
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    parser.add_argument("--warmup", type=int, default=5, help="untimed calls before timing (default 5)")
    parser.add_argument("--repeats", type=int, default=30, help="timed calls; the median is reported (default 30)")
    parser.add_argument("--sweep", action="store_true", help="also time a grid of Triton launch configurations")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUT, help="JSON path; the table goes beside it (.md)")
    return parser.parse_args(argv)


def require_cuda() -> None:
    if not torch.cuda.is_available():
        sys.exit(
            "ssm_gpu.py needs a CUDA GPU (torch.cuda.is_available() is False here); "
            "the CPU benchmark is benchmarks/ssm_cpu.py"
        )


def cuda_ms(fn: Callable[[], object], warmup: int, repeats: int) -> float:
    """Median milliseconds of ``fn`` over ``repeats`` calls after ``warmup`` calls, timed with CUDA events."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def copy_gbs(warmup: int, repeats: int, nbytes: int = 1 << 30) -> float:
    """Device-to-device copy bandwidth, (read + write) bytes per second / 1e9."""
    buffers = [torch.empty(nbytes, dtype=torch.uint8, device="cuda") for _ in range(2)]
    ms = cuda_ms(lambda: buffers[1].copy_(buffers[0]), warmup, repeats)
    buffers.clear()
    torch.cuda.empty_cache()
    return 2 * nbytes / (ms * 1e-3) / 1e9


def make_inputs(d_inner: int, length: int, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    gen = torch.Generator(device="cuda").manual_seed(0)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen, device="cuda")

    act = {
        "u": randn(BATCH, d_inner, length),
        "delta": randn(BATCH, d_inner, length) * 0.5 - 2.0,
        "B": randn(BATCH, D_STATE, length),
        "C": randn(BATCH, D_STATE, length),
        "z": randn(BATCH, d_inner, length),
    }
    inputs = {k: v.to(dtype) for k, v in act.items()}
    inputs["A"] = -torch.rand(d_inner, D_STATE, generator=gen, device="cuda")
    inputs["D"] = randn(d_inner)
    inputs["delta_bias"] = randn(d_inner) * 0.1
    return inputs


def min_bytes(d_inner: int, length: int, dtype: torch.dtype, backward: bool) -> int:
    big, small = (11, 6) if backward else (4, 2)
    return BATCH * length * (big * d_inner + small * D_STATE) * torch.finfo(dtype).bits // 8


def scan_fn(backend: str, config=None) -> Callable:
    """The backend's selective_scan_fn-like callable."""
    if backend == "triton":
        from nnmamba_monai.ssm.scan_triton import scan_with_config

        return scan_with_config(config)
    from nnmamba_monai.ssm import selective_scan

    return functools.partial(selective_scan, backend=backend)


ORDER = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")


def step_fns(fn: Callable, inputs: dict[str, torch.Tensor]) -> tuple[Callable, Callable]:
    """(forward-only call, forward+backward call) on these inputs."""
    plain = [inputs[k] for k in ORDER]
    leaves = [inputs[k].detach().clone().requires_grad_() for k in ORDER]
    grad_out = torch.randn_like(inputs["u"])

    def fwd() -> torch.Tensor:
        with torch.no_grad():
            return fn(*plain, delta_softplus=True)

    def fwd_bwd() -> tuple[torch.Tensor, ...]:
        out = fn(*leaves, delta_softplus=True)
        return torch.autograd.grad(out, leaves, grad_out)

    return fwd, fwd_bwd


def check_against_torch(fn: Callable, inputs: dict[str, torch.Tensor]) -> float:
    """Relative error of ``fn``'s output against the torch backend (computed in float32)."""
    from nnmamba_monai.ssm import selective_scan_torch

    args = [inputs[k] for k in ORDER]
    with torch.no_grad():
        ref = selective_scan_torch(*args, delta_softplus=True).float()
        out = fn(*args, delta_softplus=True).float()
    return float((out - ref).norm() / ref.norm())


def sweep_configs(d_inner: int, length: int) -> list:
    """Triton launch configurations worth timing at this shape: chunk length x warps of the token-sequential
    kernels x (channels, warps) of the tiled backward scan."""
    from nnmamba_monai.ssm.scan_triton import ScanConfig

    configs = []
    for chunk, seq_warps, (bwd_block, bwd_warps) in itertools.product(
        (8, 16, 32, 64, 128), (1, 2, 4), ((8, 4), (16, 4), (32, 4), (32, 8))
    ):
        if chunk <= max(8, length) and 32 * seq_warps <= max(32, 2 * d_inner) and bwd_block * chunk >= 32 * bwd_warps:
            configs.append(
                ScanConfig(chunk, 16, 4, block_d_bwd=bwd_block, num_warps_bwd=bwd_warps, seq_warps=seq_warps)
            )
    return configs


def run_sweep(stage: int, dtype_name: str, args: argparse.Namespace) -> list[dict]:
    d_inner, length = STAGES[stage]
    inputs = make_inputs(d_inner, length, DTYPES[dtype_name])
    rows = []
    for config in sweep_configs(d_inner, length):
        fwd, fwd_bwd = step_fns(scan_fn("triton", config), inputs)
        rows.append(
            {
                "config": dataclasses.asdict(config),
                "fwd_ms": cuda_ms(fwd, args.warmup, args.repeats),
                "fwd_bwd_ms": cuda_ms(fwd_bwd, args.warmup, args.repeats),
            }
        )
        timing = f"{rows[-1]['fwd_ms']:.3f} / {rows[-1]['fwd_bwd_ms']:.3f} ms"
        print(f"  sweep stage {stage} {dtype_name} {config}: {timing}")
    return sorted(rows, key=lambda r: r["fwd_bwd_ms"])


def measure(args: argparse.Namespace) -> dict:
    from nnmamba_monai.ssm import scan_mamba_ssm, scan_triton

    have_mamba = scan_mamba_ssm.is_available()
    copy = copy_gbs(args.warmup, args.repeats)
    rows = []
    for stage, dtype_name in itertools.product(args.stages, args.dtypes):
        d_inner, length = STAGES[stage]
        dtype = DTYPES[dtype_name]
        inputs = make_inputs(d_inner, length, dtype)
        for backend in args.backends:
            row = {"stage": stage, "d_inner": d_inner, "L": length, "dtype": dtype_name, "backend": backend}
            if backend == "mamba_ssm" and not have_mamba:
                anchor = ANCHOR_MAMBA_SSM_MS[(stage, dtype_name)]
                row.update(fwd_ms=anchor["fwd"], fwd_bwd_ms=anchor["fwd+bwd"])
                row["source"] = "anchor_h100.md (mamba_ssm not installed here)"
                rows.append(row)
                continue
            fn = scan_fn(backend)
            row["source"] = "this run"
            if backend == "triton":
                row["config"] = dataclasses.asdict(scan_triton.default_config(BATCH, d_inner, length))
            row["rel_err_vs_torch"] = check_against_torch(fn, inputs) if backend != "torch" else 0.0
            fwd, fwd_bwd = step_fns(fn, inputs)
            row["fwd_ms"] = cuda_ms(fwd, args.warmup, args.repeats)
            row["fwd_bwd_ms"] = cuda_ms(fwd_bwd, args.warmup, args.repeats)
            rows.append(row)
            timing = f"fwd {row['fwd_ms']:.3f} ms, fwd+bwd {row['fwd_bwd_ms']:.3f} ms"
            print(f"stage {stage} {dtype_name} {backend}: {timing}")
        del inputs
        torch.cuda.empty_cache()
    for row in rows:
        copy_ref = copy if row["source"] == "this run" else ANCHOR_COPY_GBS
        for key, backward in (("fwd", False), ("fwd_bwd", True)):
            nbytes = min_bytes(row["d_inner"], row["L"], DTYPES[row["dtype"]], backward)
            row[key + "_gbs"] = nbytes / (row[key + "_ms"] * 1e-3) / 1e9
            row[key + "_copy_fraction"] = row[key + "_gbs"] / copy_ref
    sweeps = {}
    if args.sweep:
        for stage, dtype_name in itertools.product(args.stages, args.dtypes):
            sweeps[f"stage{stage}_{dtype_name}"] = run_sweep(stage, dtype_name, args)
    return {"copy_gbs": copy, "have_mamba_ssm": have_mamba, "rows": rows, "sweeps": sweeps}


def verdicts(rows: list[dict]) -> list[str]:
    """The targets of the Triton scan, checked on these rows."""
    lines = []
    by_key = {(r["stage"], r["dtype"], r["backend"]): r for r in rows}
    for (stage, dtype_name, backend), row in sorted(by_key.items()):
        if backend != "triton":
            continue
        ref = by_key.get((stage, dtype_name, "mamba_ssm"))
        if ref:
            speedup = ref["fwd_bwd_ms"] / row["fwd_bwd_ms"]
            ok = "meets" if speedup >= TARGET_SPEEDUP_FWD_BWD else "misses"
            lines.append(
                f"stage {stage} {dtype_name}: fwd+bwd {speedup:.2f}x faster than mamba_ssm ({ref['source']}) - "
                f"{ok} the {TARGET_SPEEDUP_FWD_BWD:.0f}x target"
            )
        if stage == 1:
            frac = row["fwd_copy_fraction"]
            ok = "meets" if frac >= TARGET_STAGE1_FWD_COPY_FRACTION else "misses"
            lines.append(
                f"stage 1 {dtype_name}: forward at {100 * frac:.0f} % of copy bandwidth - {ok} the "
                f"{100 * TARGET_STAGE1_FWD_COPY_FRACTION:.0f} % target"
            )
    return lines


def markdown(result: dict) -> str:
    meta = result["meta"]
    lines = [
        f"# Selective scan on GPU - {meta['device']}, {meta['date']}",
        "",
        f"torch {meta['torch']}, triton {meta['triton']}; device-to-device copy {result['copy_gbs']:.0f} GB/s "
        f"(read + write). B = 2, N = 16, delta_softplus, D, z, delta_bias; median of {meta['repeats']} after "
        f"{meta['warmup']} warm-ups, CUDA events. GB/s = minimum bytes / time (see benchmarks/ssm_gpu.py).",
        "",
        "| stage (d_inner, L) | dtype | backend | fwd ms | fwd+bwd ms | fwd GB/s | fwd % of copy | fwd+bwd GB/s "
        "| rel. err vs torch | source |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        err = f"{r['rel_err_vs_torch']:.1e}" if "rel_err_vs_torch" in r else "-"
        lines.append(
            f"| {r['stage']} ({r['d_inner']}, {r['L']}) | {r['dtype']} | {r['backend']} | {r['fwd_ms']:.3f} | "
            f"{r['fwd_bwd_ms']:.3f} | {r['fwd_gbs']:.0f} | {100 * r['fwd_copy_fraction']:.1f} % | "
            f"{r['fwd_bwd_gbs']:.0f} | {err} | {r['source']} |"
        )
    lines += ["", "Targets:", *[f"- {v}" for v in verdicts(result["rows"])]]
    for name, rows in result["sweeps"].items():
        lines += ["", f"Sweep {name} (best first): chunk_len, block_d, num_warps, block_d_bwd, num_warps_bwd", ""]
        lines += ["| config | fwd ms | fwd+bwd ms |", "|---|---|---|"]
        lines += [f"| {tuple(r['config'].values())} | {r['fwd_ms']:.3f} | {r['fwd_bwd_ms']:.3f} |" for r in rows[:8]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    require_cuda()
    import triton

    torch.backends.cuda.matmul.allow_tf32 = False
    result = measure(args)
    result["meta"] = {
        "date": datetime.date.today().isoformat(),
        "device": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "triton": triton.__version__,
        "python": platform.python_version(),
        "warmup": args.warmup,
        "repeats": args.repeats,
        "command": " ".join(["python benchmarks/ssm_gpu.py", *(argv if argv is not None else sys.argv[1:])]),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2))
    table = markdown(result)
    args.output.with_suffix(".md").write_text(table)
    print("\n" + table)
    print(f"wrote {args.output} and {args.output.with_suffix('.md')}")


if __name__ == "__main__":
    main()

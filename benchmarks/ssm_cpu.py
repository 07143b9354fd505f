"""CPU benchmark: the pure-PyTorch selective scan against a step-by-step loop, at nnMamba's stage shapes.

Each measurement runs in its own subprocess so that peak memory is that of the measured call alone:
the worker resets the kernel's resident-set high-water mark (``/proc/self/clear_refs``) after building
the inputs and reports ``VmHWM - VmRSS`` (MiB above the inputs). Times are the best of ``--repeats``.

    python benchmarks/ssm_cpu.py            # table on stdout, JSON in benchmarks/results/ssm_cpu.json
    python benchmarks/ssm_cpu.py --quick    # one repeat, stage 1 loop skipped

Methods:
  torch      nnmamba_monai's torch backend (chunked closed form), as nnMamba calls it (D, z, bias, softplus)
  cpp        nnmamba_monai's cpp backend (C++ forward, built on first use; not timed: the worker loads it first);
             forward only: with gradients it runs the torch backend
  loop_ref   one Python step per token after materialising exp(delta*A) and delta*B*u for all tokens
             (the layout of mamba_ssm's selective_scan_ref, the usual "obviously correct" reference)
  loop_lean  one Python step per token computing each step's decay on the fly (less memory, same order)

Memory-traffic floor: the least time any forward scan can take here is the time to read its inputs u, delta,
z (B, d_inner, L), B, C (B, N, L) once and write y (B, d_inner, L) once (the state, (B, d_inner, N), is
negligible), at this machine's copy bandwidth: (bytes read + bytes written) of a 256 MiB ``clone``, best of 5,
measured in its own subprocess. ``x floor`` = measured forward time / that floor.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

SHAPES = [(2, 128, 32768, 16), (2, 256, 4096, 16), (2, 512, 512, 16)]  # (B, d_inner, L, N): stages 1-3
METHODS = ("torch", "cpp", "loop_ref", "loop_lean")
RESULTS = Path(__file__).resolve().parent / "results" / "ssm_cpu.json"


def _inputs(batch: int, d_inner: int, length: int, d_state: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return {
        "u": torch.randn(batch, d_inner, length, generator=gen),
        "delta": torch.randn(batch, d_inner, length, generator=gen) * 0.5 - 2.0,
        "A": -torch.exp(torch.randn(d_inner, d_state, generator=gen) * 0.5 + 1.0),
        "B": torch.randn(batch, d_state, length, generator=gen),
        "C": torch.randn(batch, d_state, length, generator=gen),
        "D": torch.randn(d_inner, generator=gen),
        "z": torch.randn(batch, d_inner, length, generator=gen),
        "delta_bias": torch.randn(d_inner, generator=gen) * 0.1,
    }


def _loop_ref(u, delta, A, B, C, D, z, delta_bias):
    delta = F.softplus(delta + delta_bias[:, None])
    decay = torch.exp(torch.einsum("bdl,dn->bdln", delta, A))
    drive = torch.einsum("bdl,bnl,bdl->bdln", delta, B, u)
    h = u.new_zeros(u.shape[0], u.shape[1], A.shape[1])
    ys = []
    for t in range(u.shape[2]):
        h = decay[:, :, t] * h + drive[:, :, t]
        ys.append(torch.einsum("bdn,bn->bd", h, C[:, :, t]))
    y = torch.stack(ys, dim=2) + u * D[:, None]
    return y * F.silu(z)


def _loop_lean(u, delta, A, B, C, D, z, delta_bias):
    delta = F.softplus(delta + delta_bias[:, None])
    h = u.new_zeros(u.shape[0], u.shape[1], A.shape[1])
    ys = []
    for t in range(u.shape[2]):
        h = torch.exp(delta[:, :, t, None] * A) * h + (delta[:, :, t] * u[:, :, t])[:, :, None] * B[:, None, :, t]
        ys.append((h * C[:, None, :, t]).sum(-1))
    y = torch.stack(ys, dim=2) + u * D[:, None]
    return y * F.silu(z)


def _torch_scan(u, delta, A, B, C, D, z, delta_bias):
    from nnmamba_monai.ssm import selective_scan_torch

    return selective_scan_torch(u, delta, A, B, C, D, z, delta_bias, delta_softplus=True)


def _cpp_scan(u, delta, A, B, C, D, z, delta_bias):
    from nnmamba_monai.ssm import selective_scan

    return selective_scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus=True, backend="cpp")


FUNCS = {"torch": _torch_scan, "cpp": _cpp_scan, "loop_ref": _loop_ref, "loop_lean": _loop_lean}


def scan_bytes(batch: int, d_inner: int, length: int, d_state: int, itemsize: int = 4) -> int:
    """Bytes a forward scan must move at least: u, delta, z, B, C read once, y written once."""
    return itemsize * (4 * batch * d_inner * length + 2 * batch * d_state * length)


def copy_bandwidth(repeats: int = 5, mib: int = 256) -> float:
    """Bytes per second moved by ``clone`` of a ``mib`` MiB float32 tensor (read + write), best of ``repeats``."""
    source = torch.ones(mib * (1 << 20) // 4)
    source.clone()  # first touch of the allocator's pages is not timed
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        copy = source.clone()
        best = min(best, time.perf_counter() - start)
        del copy
    return 2 * source.numel() * 4 / best


def _mem_status() -> dict[str, int]:
    fields = {}
    with open("/proc/self/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                fields[key] = int(value.split()[0])  # kB
    return fields


def worker(shape_index: int, method: str, backward: bool, repeats: int) -> dict:
    """Time one (shape, method, fwd|fwd+bwd) in this process; report seconds and peak MiB above the inputs."""
    import nnmamba_monai.ssm  # noqa: F401 - imported before timing, so that the import is not measured

    if method == "cpp":
        from nnmamba_monai.ssm.scan_cpp import load_extension

        load_extension()  # built (or loaded from the cache) before timing

    inputs = _inputs(*SHAPES[shape_index])
    if backward:
        for key in ("u", "delta", "A", "B", "C", "D", "z", "delta_bias"):
            inputs[key].requires_grad_()
    fn = FUNCS[method]
    times = []
    peak_mib = 0.0
    for _ in range(repeats):
        for t in inputs.values():
            t.grad = None
        base = _mem_status()["VmRSS"]
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")  # reset the high-water mark to the current RSS
        start = time.perf_counter()
        with torch.set_grad_enabled(backward):
            out = fn(**inputs)
            if backward:
                out.sum().backward()
        times.append(time.perf_counter() - start)
        peak_mib = max(peak_mib, (_mem_status()["VmHWM"] - base) / 1024)
        del out
    return {"seconds": min(times), "peak_mib": peak_mib}


def _run_worker(shape_index: int, method: str, backward: bool, repeats: int) -> dict:
    cmd = [sys.executable, __file__, "--worker", str(shape_index), method, str(int(backward)), str(repeats)]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per measurement (best is kept)")
    parser.add_argument("--quick", action="store_true", help="one repeat; skip the loops at stage 1")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        shape_index, method, backward, repeats = args.worker
        if method == "bandwidth":
            print(json.dumps({"bytes_per_s": copy_bandwidth()}))
            return
        print(json.dumps(worker(int(shape_index), method, bool(int(backward)), int(repeats))))
        return
    repeats = 1 if args.quick else args.repeats
    rows = []
    for index, shape in enumerate(SHAPES):
        for method in METHODS:
            if method.startswith("loop") and args.quick and index == 0:
                continue
            # the loops are timed once: at stage 1 a single run takes seconds to minutes
            fwd = _run_worker(index, method, False, 1 if method.startswith("loop") else repeats)
            row = {"shape": dict(zip(("B", "d_inner", "L", "N"), shape)), "method": method, "fwd": fwd}
            if method == "torch":
                row["fwd_bwd"] = _run_worker(index, method, True, repeats)
            rows.append(row)
            print(f"measured {shape} {method}", file=sys.stderr)
    bandwidth = _run_worker(0, "bandwidth", False, 1)["bytes_per_s"]
    for row in rows:
        ref = next((r for r in rows if r["shape"] == row["shape"] and r["method"] == "torch"), None)
        row["time_vs_torch"] = row["fwd"]["seconds"] / ref["fwd"]["seconds"] if ref else None
        row["floor_s"] = scan_bytes(*row["shape"].values()) / bandwidth
        row["x_floor"] = row["fwd"]["seconds"] / row["floor_s"]
    cpu = platform.processor() or platform.machine()
    print(f"\nselective scan, CPU fp32 ({cpu}, {torch.get_num_threads()} threads)")
    print(f"copy bandwidth (clone of 256 MiB, read + write): {bandwidth / 1e9:.1f} GB/s")
    header = f"{'(B, d_inner, L, N)':<22}{'method':<11}{'fwd s':>9}{'fwd peak MiB':>14}{'time / torch':>19}"
    print(header + f"{'floor ms':>10}{'x floor':>9}{'fwd+bwd s':>11}{'fwd+bwd peak MiB':>18}")
    for row in rows:
        shape = tuple(row["shape"].values())
        bwd = row.get("fwd_bwd")
        print(
            f"{str(shape):<22}{row['method']:<11}{row['fwd']['seconds']:>9.3f}{row['fwd']['peak_mib']:>14.0f}"
            f"{row['time_vs_torch']:>19.2f}{row['floor_s'] * 1e3:>10.1f}{row['x_floor']:>9.1f}"
            + (f"{bwd['seconds']:>11.3f}{bwd['peak_mib']:>18.0f}" if bwd else f"{'-':>11}{'-':>18}")
        )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "date": time.strftime("%Y-%m-%d"),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "command": "python benchmarks/ssm_cpu.py" + (" --quick" if args.quick else ""),
        "copy_bandwidth_bytes_per_s": bandwidth,
    }
    args.output.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()

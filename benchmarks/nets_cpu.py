"""Whole networks on CPU: parameters, forward time, forward+backward time and peak memory.

nnMamba (nnMambaSeg), the four Taming-Mambas networks and MONAI's DynUNet, SwinUNETR and SegResNet (configured
as in shared/reference/anchor_h100.md), one cube of ``--size`` voxels, batch 1, 1 input channel, 16 classes,
all in one run, ratios relative to nnMamba. Each network is measured in its own subprocess so that its peak
resident memory is its own.

Per network (child process): build the net and the input, return freed memory to the OS (malloc_trim), take
the resident set as baseline, reset the high-water mark (``/proc/self/clear_refs`` <- 5), run one step, and
report VmHWM - baseline. This is done for a forward pass under ``torch.no_grad`` (eval mode) and then for a
forward+backward step (train mode, cross-entropy on a random label map, no optimiser). These two measured
steps double as warm-ups; then ``--repeats`` more of each are timed and the median is reported. With
``--quick`` one more forward pass is timed and the measured forward+backward step is the timed one (no
warm-up for it).

    python benchmarks/nets_cpu.py --quick             # table + benchmarks/results/nets_cpu.json
    python benchmarks/nets_cpu.py --repeats 5         # quieter numbers, several times longer
    python benchmarks/nets_cpu.py --nets nnMamba SegMamba --size 32
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import json
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results" / "nets_cpu.json"
REFERENCE = "nnMamba"
NUM_CLASSES = 16


def _builders() -> dict[str, Callable]:
    """Network name -> constructor of the benchmarked configuration (imports stay in the child)."""
    from monai.networks.nets import DynUNet, SegResNet, SwinUNETR

    import nnmamba_monai as nm

    return {
        "nnMamba": lambda: nm.nnMambaSeg(3, 1, NUM_CLASSES),
        "SegMamba": lambda: nm.SegMamba(3, 1, NUM_CLASSES),
        "BiSegMamba": lambda: nm.BiSegMamba(3, 1, NUM_CLASSES),
        "MultiSegMamba": lambda: nm.MultiSegMamba(3, 1, NUM_CLASSES),
        "SegMambaSkip": lambda: nm.SegMambaSkip(3, 1, NUM_CLASSES),
        "DynUNet": lambda: DynUNet(
            3,
            1,
            NUM_CLASSES,
            kernel_size=[3] * 6,
            strides=[1, 2, 2, 2, 2, 2],
            upsample_kernel_size=[2] * 5,
            res_block=False,
        ),
        "SwinUNETR": lambda: SwinUNETR(in_channels=1, out_channels=NUM_CLASSES, feature_size=48),
        "SegResNet": lambda: SegResNet(spatial_dims=3, in_channels=1, out_channels=NUM_CLASSES, init_filters=16),
    }


NET_NAMES = ["nnMamba", "SegMamba", "BiSegMamba", "MultiSegMamba", "SegMambaSkip", "DynUNet", "SwinUNETR", "SegResNet"]


# ---------------------------------------------------------------- child: one network


def _proc_status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _trim_heap() -> None:
    """Give freed heap pages back to the OS so that the next baseline is the live memory only."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


def _measured(step: Callable[[], None]) -> tuple[float, float]:
    """Run ``step`` once; return (seconds, peak resident memory above the start, in MiB)."""
    _trim_heap()
    baseline = _proc_status_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current resident set
    start = time.perf_counter()
    step()
    seconds = time.perf_counter() - start
    return seconds, (_proc_status_kib("VmHWM") - baseline) / 1024


def _timed(step: Callable[[], None], repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return times


def run_child(name: str, size: int, repeats: int, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = _builders()[name]()
    image = torch.randn(1, 1, size, size, size)
    label = torch.randint(0, NUM_CLASSES, (1, size, size, size))
    loss_fn = torch.nn.CrossEntropyLoss()

    def forward() -> None:
        net.eval()
        with torch.no_grad():
            net(image)

    def forward_backward() -> None:
        net.train()
        out = net(image)
        loss_fn(out[0] if isinstance(out, (list, tuple)) else out, label).backward()
        net.zero_grad(set_to_none=True)

    fwd_first, fwd_peak = _measured(forward)
    train_first, train_peak = _measured(forward_backward)
    # --quick (repeats 0): the forward pass is cheap, time it once after its warm-up; the forward+backward
    # step is the expensive one, its measured run is also its timed run
    fwd_times = _timed(forward, max(repeats, 1))
    train_times = _timed(forward_backward, repeats) if repeats else [train_first]
    return {
        "net": name,
        "params_M": sum(p.numel() for p in net.parameters()) / 1e6,
        "forward_s": statistics.median(fwd_times),
        "forward_backward_s": statistics.median(train_times),
        "forward_peak_MiB": fwd_peak,
        "forward_backward_peak_MiB": train_peak,
        "forward_runs_s": fwd_times,
        "forward_backward_runs_s": train_times,
    }


# ---------------------------------------------------------------- parent: all networks, table, JSON


def _cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown CPU"


def _with_ratios(rows: list[dict]) -> list[dict]:
    ref = next((r for r in rows if r["net"] == REFERENCE), None)
    for row in rows:
        for key in ("params_M", "forward_s", "forward_backward_s", "forward_backward_peak_MiB"):
            row[f"{key}_vs_{REFERENCE}"] = row[key] / ref[key] if ref and ref[key] > 0 else None
    return rows


def format_table(rows: list[dict]) -> str:
    def ratio(value: float | None) -> str:
        return "" if value is None else f" ({value:.2f}x)"

    lines = [
        "| net | params M | forward s | forward+backward s | peak MiB fwd+bwd | peak MiB fwd |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['net']} | {r['params_M']:.2f}{ratio(r['params_M_vs_nnMamba'])} "
            f"| {r['forward_s']:.2f}{ratio(r['forward_s_vs_nnMamba'])} "
            f"| {r['forward_backward_s']:.2f}{ratio(r['forward_backward_s_vs_nnMamba'])} "
            f"| {r['forward_backward_peak_MiB']:.0f}{ratio(r['forward_backward_peak_MiB_vs_nnMamba'])} "
            f"| {r['forward_peak_MiB']:.0f} |"
        )
    return "\n".join(lines)


def run_parent(args: argparse.Namespace) -> dict:
    import monai
    import torch

    repeats = 0 if args.quick else args.repeats
    rows, failed = [], []
    for name in args.nets:
        print(f"[nets_cpu] {name} ...", file=sys.stderr, flush=True)
        command = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--child",
            name,
            "--size",
            str(args.size),
            "--repeats",
            str(repeats),
            "--threads",
            str(args.threads),
        ]
        result = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT)
        if result.returncode != 0:  # e.g. out of memory: keep the other networks' numbers
            error = (result.stderr.strip().splitlines() or [f"exit status {result.returncode}"])[-1]
            print(f"[nets_cpu] {name} failed: {error}", file=sys.stderr, flush=True)
            failed.append({"net": name, "error": error, "returncode": result.returncode})
            continue
        rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
        print(
            f"[nets_cpu] {name}: {rows[-1]['forward_s']:.2f} s fwd, {rows[-1]['forward_backward_s']:.2f} s fwd+bwd",
            file=sys.stderr,
            flush=True,
        )
    report = {
        "command": "python benchmarks/nets_cpu.py " + " ".join(sys.argv[1:]),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "device": f"{_cpu_model()}, {args.threads} threads",
        "torch": torch.__version__,
        "monai": monai.__version__,
        "input": f"(1, 1, {args.size}, {args.size}, {args.size}), {NUM_CLASSES} classes",
        "timing": "--quick: forward timed once after one warm-up, forward+backward timed once without warm-up"
        if args.quick
        else f"median of {repeats} after one warm-up",
        "rows": _with_ratios(rows),
        "failed": failed,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one timed run each, no warm-up for forward+backward")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per net after the warm-up (default 3)")
    parser.add_argument("--size", type=int, default=64, help="edge of the input cube (default 64)")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    parser.add_argument("--nets", nargs="+", default=NET_NAMES, choices=NET_NAMES, help="subset of networks")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON output path")
    parser.add_argument("--child", choices=NET_NAMES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run_child(args.child, args.size, args.repeats, args.threads)))
        return
    report = run_parent(args)
    print(f"Device: {report['device']}; torch {report['torch']}, MONAI {report['monai']}; {report['date']}")
    print(f"Input {report['input']}; timing: {report['timing']}; ratios vs {REFERENCE}")
    print(format_table(report["rows"]))
    for row in report["failed"]:
        print(f"{row['net']}: failed ({row['error']})")
    print(f"JSON: {args.out}")


if __name__ == "__main__":
    sys.path.insert(0, str(REPO_ROOT))
    main()

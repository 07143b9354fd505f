"""Whole-case inference on CPU: nnMamba through its bundles' sliding-window settings against MONAI's SegResNet and
DynUNet, time and peak memory, plus the per-window time of each network in one interleaved run.

Cases (random inputs of the sizes the bundles see after their preprocessing; no BraTS or AMOS data is here):
  brats  4 x 240 x 240 x 155 (one BraTS case: four 1 mm MR sequences)
  amos   1 x 256 x 256 x 192 (an abdomen CT of 384 x 384 x 384 mm after the amos_ct bundle's 1.5 x 1.5 x 2 mm
         resampling)

Runs (network, sliding-window settings; random weights, eval mode, ``torch.no_grad``):
  nnMamba          the bundle's inference.json: roi 128^3, sw_batch_size 2, overlap 0.5, gaussian
  nnMamba_cpu      the bundles' CPU preset (configs/inference_cpu.json): ``FusedInference`` (BatchNorm folded,
                   oneDNN convolutions, the ``cpp`` scan backend where it can be built), roi 128^3, sw_batch_size 1,
                   overlap 0.125, gaussian
  SegResNet        (brats) MONAI model zoo brats_mri_segmentation: blocks_down (1, 2, 2, 4), blocks_up (1, 1, 1),
                   init_filters 16, dropout 0.2; roi (240, 240, 160), sw_batch_size 1, overlap 0.5 (constant)
  DynUNet          (amos) nnU-Net-style 3d_fullres: kernels 3, strides (1, 2, 2, 2, 2, 2), filters 32..320,
                   instance norm; the nnMamba bundle's window: roi 128^3, sw_batch_size 2, overlap 0.5, gaussian

Each run is its own subprocess (peak = VmHWM above the resident set before the call, as benchmarks/nets_cpu.py).
The nnMamba runs save their thresholded (brats: sigmoid > 0.5 per region) or argmax (amos) prediction, and the
table reports how many voxels the preset's prediction shares with the default's: with RANDOM weights, a measure
of how much the window/overlap change moves the output, not an accuracy.

``--window``: one 128^3 window at batch 1 for every network in one process, interleaved (nnMamba, nnMamba
fused with the torch scan, nnMamba as the CPU preset runs it, SegResNet, DynUNet, repeated), median of
``--repeats``: the per-window ratios the shared cores disturb least.

    python benchmarks/infer_cpu.py                 # both cases + the window table; JSON in benchmarks/results/
    python benchmarks/infer_cpu.py --cases brats --runs nnMamba_cpu SegResNet
    python benchmarks/infer_cpu.py --window-only --repeats 5
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmark scripts
from nets_cpu import _cpu_model  # noqa: E402  (one lscpu reader for both CPU benchmarks)

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results" / "infer_cpu.json"

CASES = {"brats": (4, 240, 240, 155), "amos": (1, 256, 256, 192)}
OUT_CHANNELS = {"brats": 3, "amos": 16}
RUNS = {"brats": ["nnMamba", "nnMamba_cpu", "SegResNet"], "amos": ["nnMamba", "nnMamba_cpu", "DynUNet"]}
BUNDLE_WINDOW = {"roi_size": (128, 128, 128), "sw_batch_size": 2, "overlap": 0.5, "mode": "gaussian"}
CPU_PRESET_WINDOW = {"roi_size": (128, 128, 128), "sw_batch_size": 1, "overlap": 0.125, "mode": "gaussian"}
SEGRESNET_WINDOW = {"roi_size": (240, 240, 160), "sw_batch_size": 1, "overlap": 0.5, "mode": "constant"}


def build(run: str, in_channels: int, out_channels: int):
    """(network in eval mode, SlidingWindowInferer keyword arguments) of one run."""
    from monai.networks.nets import DynUNet, SegResNet

    from nnmamba_monai.networks import FusedInference, nnMambaSeg
    from nnmamba_monai.ssm.scan_cpp import preset_backend

    if run in ("nnMamba", "nnMamba_fused", "nnMamba_cpu"):
        net = nnMambaSeg(3, in_channels, out_channels, out_relu=False)
        if run == "nnMamba_fused":  # the preset without the C++ scan (a machine without a compiler)
            return FusedInference(net).eval(), CPU_PRESET_WINDOW
        if run == "nnMamba_cpu":  # as inference_cpu.json: the cpp scan where it can be built
            return FusedInference(net, scan_backend=preset_backend()).eval(), CPU_PRESET_WINDOW
        return net.eval(), BUNDLE_WINDOW
    if run == "SegResNet":
        net = SegResNet(
            3, 16, in_channels, out_channels, dropout_prob=0.2, blocks_down=(1, 2, 2, 4), blocks_up=(1, 1, 1)
        )
        return net.eval(), SEGRESNET_WINDOW
    if run == "DynUNet":
        net = DynUNet(3, in_channels, out_channels, [3] * 6, [1, 2, 2, 2, 2, 2], [2] * 5, res_block=False)
        return net.eval(), BUNDLE_WINDOW
    raise ValueError(f"unknown run {run!r}")


def window_count(spatial: tuple[int, ...], roi_size: tuple[int, ...], overlap: float) -> int:
    """Windows MONAI's sliding window places on ``spatial`` (interval int(roi * (1 - overlap)), last flush)."""
    count = 1
    for size, roi in zip(spatial, roi_size):
        step = max(int(roi * (1 - overlap)), 1)
        count *= 1 if size <= roi else -(-(size - roi) // step) + 1
    return count


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _measured(step: Callable[[], object]) -> tuple[object, float, float]:
    """Run ``step`` once: (its result, seconds, peak resident MiB above the start)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    baseline = _status_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current resident set
    start = time.perf_counter()
    result = step()
    return result, time.perf_counter() - start, (_status_kib("VmHWM") - baseline) / 1024


def run_case(case: str, run: str, threads: int, prediction_dir: Path) -> dict:
    """One whole case through one run's sliding window, in this process."""
    import torch
    from monai.inferers import SlidingWindowInferer

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    shape = CASES[case]
    net, window = build(run, shape[0], OUT_CHANNELS[case])
    image = torch.randn(1, *shape)
    inferer = SlidingWindowInferer(**window)
    with torch.no_grad():
        logits, seconds, peak = _measured(lambda: inferer(image, net))
    if case == "brats":
        prediction = (logits[0] > 0).to(torch.uint8)  # sigmoid > 0.5 per region
    else:
        prediction = logits[0].argmax(0).to(torch.uint8)
    path = prediction_dir / f"{case}_{run}.pt"
    torch.save(prediction, path)
    return {
        "case": case,
        "run": run,
        "input": [1, *shape],
        "window": {**window, "roi_size": list(window["roi_size"])},
        "windows": window_count(shape[1:], window["roi_size"], window["overlap"]),
        "seconds": seconds,
        "peak_MiB": peak,
        "prediction": str(path),
    }


def run_window(threads: int, repeats: int) -> dict:
    """One 128^3 window at batch 1 (BraTS channels; DynUNet with 1 input channel and 16 classes), interleaved."""
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    nets = {
        "nnMamba": build("nnMamba", 4, 3)[0],
        "nnMamba_fused": build("nnMamba_fused", 4, 3)[0],
        "nnMamba_cpu": build("nnMamba_cpu", 4, 3)[0],
        "SegResNet": build("SegResNet", 4, 3)[0],
        "DynUNet": build("DynUNet", 1, 16)[0],
    }
    inputs = {name: torch.randn(1, 1 if name == "DynUNet" else 4, 128, 128, 128) for name in nets}
    times: dict[str, list[float]] = {name: [] for name in nets}
    with torch.no_grad():
        for name, net in nets.items():  # warm-up (and the fused copy is built here)
            net(inputs[name])
        for _ in range(repeats):
            for name, net in nets.items():
                start = time.perf_counter()
                net(inputs[name])
                times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(values) for name, values in times.items()}
    return {
        "seconds": medians,
        "runs_s": times,
        "vs_SegResNet": {name: medians[name] / medians["SegResNet"] for name in nets},
    }


def _child(args: list[str]) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), *args]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT)
    if done.returncode != 0:
        error = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        return {"error": error}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _agreement(rows: list[dict]) -> None:
    """Add to each nnMamba_cpu row the share of voxels whose prediction equals the default run's."""
    import torch

    for row in rows:
        if row.get("run") != "nnMamba_cpu":
            continue
        default = next((r for r in rows if r.get("case") == row["case"] and r.get("run") == "nnMamba"), None)
        if default is None or "prediction" not in default:
            continue
        a, b = torch.load(row["prediction"]), torch.load(default["prediction"])
        row["agreement_with_default_pct"] = 100.0 * float((a == b).float().mean())


def format_tables(report: dict) -> str:
    lines = []
    if report["cases"]:
        lines += [
            "| case | run | windows (roi, overlap, sw_batch) | seconds | peak MiB "
            "| voxels as default (random weights) |",
            "|---|---|---|---|---|---|",
        ]
        for r in report["cases"]:
            if "error" in r:
                lines.append(f"| {r['case']} | {r['run']} | failed: {r['error']} | | | |")
                continue
            w = r["window"]
            agree = r.get("agreement_with_default_pct")
            lines.append(
                f"| {r['case']} | {r['run']} | {r['windows']} ({'x'.join(map(str, w['roi_size']))}, {w['overlap']}, "
                f"{w['sw_batch_size']}) | {r['seconds']:.1f} | {r['peak_MiB']:.0f} | "
                + ("" if agree is None else f"{agree:.2f} %")
                + " |"
            )
    window = report.get("window")
    if window and "error" not in window:
        lines += ["", "| one 128^3 window, batch 1 | seconds (median) | vs SegResNet |", "|---|---|---|"]
        for name, seconds in window["seconds"].items():
            lines.append(f"| {name} | {seconds:.2f} | {window['vs_SegResNet'][name]:.2f}x |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--runs", nargs="+", default=None, help="subset of runs (default: all of each case)")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds of the window table (default 3)")
    parser.add_argument("--window-only", action="store_true", help="only the per-window table")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON output path")
    parser.add_argument("--child-case", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--child-window", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_case:
        case, run, prediction_dir = args.child_case
        print(json.dumps(run_case(case, run, args.threads, Path(prediction_dir))))
        return
    if args.child_window:
        print(json.dumps(run_window(args.threads, args.repeats)))
        return

    import monai
    import torch

    load_at_start = list(os.getloadavg())
    rows = []
    with tempfile.TemporaryDirectory() as prediction_dir:
        if not args.window_only:
            for case in args.cases:
                for run in RUNS[case]:
                    if args.runs and run not in args.runs:
                        continue
                    print(f"[infer_cpu] {case} {run} ...", file=sys.stderr, flush=True)
                    child_args = ["--child-case", case, run, prediction_dir, "--threads", str(args.threads)]
                    rows.append({"case": case, "run": run, **_child(child_args)})
                    print(f"[infer_cpu] {rows[-1]}", file=sys.stderr, flush=True)
            _agreement(rows)
        for row in rows:
            row.pop("prediction", None)
        print("[infer_cpu] window ...", file=sys.stderr, flush=True)
        window = _child(["--child-window", "--threads", str(args.threads), "--repeats", str(args.repeats)])
    report = {
        "command": "python benchmarks/infer_cpu.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "device": f"{_cpu_model()}, {args.threads} threads",
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(unset: libgomp's default, spinning)"),
        "load_average_at_start": load_at_start,
        "torch": torch.__version__,
        "monai": monai.__version__,
        "cases": rows,
        "window": window,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"Device: {report['device']}; torch {report['torch']}, MONAI {report['monai']}; {report['date']}")
    print(f"OMP_WAIT_POLICY: {report['omp_wait_policy']}; load average at start: {load_at_start}")
    print(format_tables(report))
    print(f"JSON: {args.out}")


if __name__ == "__main__":
    sys.path.insert(0, str(REPO_ROOT))
    main()

"""Whole networks on a GPU with the anchor's protocol: nnMamba (ours, Triton scan) vs MONAI DynUNet, SwinUNETR,
SegResNet.

Protocol (shared/reference/anchor_h100.md): input randn(2, 1, 128, 128, 128), random integer target of 16
classes, CrossEntropyLoss on the first output, AdamW(lr 1e-4), torch.autocast(bfloat16); a training step is
zero_grad + forward + backward + optimizer step. Median of 8 timed steps after 3 warm-ups, CUDA events; peak =
torch.cuda.max_memory_allocated. Inference: eval mode, torch.inference_mode, same autocast, same counts,
measured first (before the optimizer exists) with its own peak. Each network runs in its own subprocess, so
one running out of memory does not stop the others and every peak is that network's alone.

Networks as in the anchor: DynUNet(3, 1, 16, kernel_size=[3]*6, strides=[1,2,2,2,2,2],
upsample_kernel_size=[2]*5, res_block=False); SwinUNETR(in_channels=1, out_channels=16, feature_size=48);
SegResNet(spatial_dims=3, in_channels=1, out_channels=16, init_filters=16); nnMamba = nnMambaSeg(3, 1, 16) with
the scan backend of ``--backend`` (default triton).

    python benchmarks/nets_gpu.py                       # table + benchmarks/results/nets_gpu.{json,md}
    python benchmarks/nets_gpu.py --channels-last --compile
    python benchmarks/nets_gpu.py --nets nnMamba DynUNet --cudnn-benchmark
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"
NUM_CLASSES = 16
NET_NAMES = ("nnMamba", "DynUNet", "SwinUNETR", "SegResNet")
# anchor_h100.md, whole networks (eager, default layout, H100 80GB HBM3): train ms, train GiB, infer ms, infer GiB
ANCHOR = {
    "nnMamba": (106.6, 4.26, 40.7, 2.14),  # the authors' nnMambaSeg with mamba_ssm
    "DynUNet": (79.2, 4.99, 29.6, 2.46),
    "SwinUNETR": (252.5, 22.28, 102.2, 7.57),
    "SegResNet": (82.7, 5.65, 39.7, 1.37),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nets", nargs="+", choices=NET_NAMES, default=list(NET_NAMES))
    parser.add_argument("--backend", default="triton", help="selective-scan backend of nnMamba (default triton)")
    parser.add_argument("--channels-last", action="store_true", help="channels_last_3d model and input")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (default mode)")
    parser.add_argument("--cudnn-benchmark", action="store_true", help="torch.backends.cudnn.benchmark = True")
    parser.add_argument("--size", type=int, default=128, help="cube edge of the input (default 128)")
    parser.add_argument("--batch", type=int, default=2, help="batch size (default 2)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps (default 3)")
    parser.add_argument("--repeats", type=int, default=8, help="timed steps, median reported (default 8)")
    parser.add_argument(
        "--output",
        type=Path,
        help="JSON path, the table goes beside it (.md); default benchmarks/results/nets_gpu[_cl][_compile].json",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def require_cuda() -> None:
    if not torch.cuda.is_available():
        sys.exit("nets_gpu.py needs a CUDA GPU (torch.cuda.is_available() is False here)")


def build(name: str, backend: str) -> torch.nn.Module:
    from monai.networks.nets import DynUNet, SegResNet, SwinUNETR

    from nnmamba_monai import nnMambaSeg

    if name == "nnMamba":
        return nnMambaSeg(spatial_dims=3, in_channels=1, out_channels=NUM_CLASSES, backend=backend)
    if name == "DynUNet":
        return DynUNet(
            3, 1, NUM_CLASSES, kernel_size=[3] * 6, strides=[1, 2, 2, 2, 2, 2], upsample_kernel_size=[2] * 5,
            res_block=False,
        )  # fmt: skip
    if name == "SwinUNETR":
        return SwinUNETR(in_channels=1, out_channels=NUM_CLASSES, feature_size=48)
    return SegResNet(spatial_dims=3, in_channels=1, out_channels=NUM_CLASSES, init_filters=16)


def cuda_ms(step: Callable[[], None], warmup: int, repeats: int) -> float:
    """Median milliseconds of ``step`` over ``repeats`` calls after ``warmup`` calls (CUDA events)."""
    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        step()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def _first(out):
    return out[0] if isinstance(out, (list, tuple)) else out


def run_worker(name: str, args: argparse.Namespace) -> dict:
    """Measure one network in this process: inference first, then training."""
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    torch.manual_seed(0)
    device = torch.device("cuda")
    net = build(name, args.backend).to(device)
    params_m = sum(p.numel() for p in net.parameters()) / 1e6
    image = torch.randn(args.batch, 1, args.size, args.size, args.size, device=device)
    target = torch.randint(0, NUM_CLASSES, (args.batch, args.size, args.size, args.size), device=device)
    if args.channels_last:
        net = net.to(memory_format=torch.channels_last_3d)
        image = image.contiguous(memory_format=torch.channels_last_3d)
    model = torch.compile(net) if args.compile else net
    gib = 1024**3

    net.eval()

    def infer() -> None:
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
            model(image)

    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    infer_ms = cuda_ms(infer, args.warmup, args.repeats)
    infer_gib = torch.cuda.max_memory_allocated() / gib

    net.train()
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4)
    loss_fn = torch.nn.CrossEntropyLoss()

    def train() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = loss_fn(_first(model(image)), target)
        loss.backward()
        optimizer.step()

    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    train_ms = cuda_ms(train, args.warmup, args.repeats)
    train_gib = torch.cuda.max_memory_allocated() / gib
    return {
        "net": name,
        "params_m": params_m,
        "train_ms": train_ms,
        "train_peak_gib": train_gib,
        "infer_ms": infer_ms,
        "infer_peak_gib": infer_gib,
    }


def _child(name: str, argv: list[str]) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), *argv, "--worker", name]
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        return {"net": name, "error": (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]}
    return json.loads(lines[-1])


def markdown(result: dict) -> str:
    meta = result["meta"]
    options = ", ".join(k for k in ("channels_last", "compile", "cudnn_benchmark") if meta[k]) or "eager, default"
    lines = [
        f"# Whole networks on GPU - {meta['device']}, {meta['date']}",
        "",
        f"torch {meta['torch']}; {options}; nnMamba scan backend {meta['backend']}; input ({meta['batch']}, 1, "
        f"{meta['size']}^3), 16 classes, AdamW, bf16 autocast, CrossEntropy; median of {meta['repeats']} after "
        f"{meta['warmup']} warm-ups. Anchor columns: anchor_h100.md (H100 80GB HBM3, eager; its nnMamba is the "
        "authors' code with mamba_ssm).",
        "",
        "| net | params M | train step ms | train peak GiB | inference ms | inference peak GiB | anchor train ms "
        "| anchor inference ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        anchor = ANCHOR[r["net"]]
        if "error" in r:
            lines.append(f"| {r['net']} | failed: {' '.join(r['error'])} | | | | | {anchor[0]} | {anchor[2]} |")
            continue
        lines.append(
            f"| {r['net']} | {r['params_m']:.2f} | {r['train_ms']:.1f} | {r['train_peak_gib']:.2f} | "
            f"{r['infer_ms']:.1f} | {r['infer_peak_gib']:.2f} | {anchor[0]} | {anchor[2]} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    require_cuda()
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    if args.worker:
        print(json.dumps(run_worker(args.worker, args)))
        return
    rows = []
    for name in args.nets:
        rows.append(_child(name, argv))
        print(f"measured {name}: {rows[-1]}", file=sys.stderr)
    result = {
        "meta": {
            "date": datetime.date.today().isoformat(),
            "device": torch.cuda.get_device_name(0),
            "torch": torch.__version__,
            "backend": args.backend,
            "channels_last": args.channels_last,
            "compile": args.compile,
            "cudnn_benchmark": args.cudnn_benchmark,
            "size": args.size,
            "batch": args.batch,
            "warmup": args.warmup,
            "repeats": args.repeats,
            "command": " ".join(["python benchmarks/nets_gpu.py", *argv]),
        },
        "rows": rows,
    }
    output = args.output or RESULTS_DIR / (
        "nets_gpu" + ("_cl" if args.channels_last else "") + ("_compile" if args.compile else "") + ".json"
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2))
    table = markdown(result)
    output.with_suffix(".md").write_text(table)
    print("\n" + table)
    print(f"wrote {output} and {output.with_suffix('.md')}")


if __name__ == "__main__":
    main()

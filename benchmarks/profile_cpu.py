"""Where nnMamba's CPU inference time goes: one window through torch.profiler, operators grouped by job.

The BraTS bundle's network (``nnMambaSeg(3, 4, 3, out_relu=False)``, random weights, eval mode, ``no_grad``),
one window of ``--size``^3 at batch 1, as built (``eager``) and after
:func:`nnmamba_monai.networks.fuse_for_inference` (``fused``), after one warm-up each. Self CPU time per group:

  scan          everything inside the selective-scan autograd function (its total, children included)
  convs         oneDNN and native convolutions (``mkldnn_convolution``, ``slow_conv3d_forward``, ...)
  batchnorm     ``native_batch_norm`` (eval mode: one scale and shift per channel)
  upsampling    trilinear x2 upsampling of the decoder
  CSS flips     ``flip``, ``stack``, ``mean``: the four flipped copies of MICCSS and their average
  copies        ``copy_``, ``clone``, ``contiguous``: layout changes (volume <-> voxel sequence, cat of skips)
  rest          everything else outside the scan (linear layers, SiLU, ReLU, adds, SE skip scaling, cat)

    python benchmarks/profile_cpu.py --size 64 --threads 1     # table; JSON in benchmarks/results/
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results" / "profile_cpu.json"
GROUPS = {
    "convs": ("aten::mkldnn_convolution", "aten::slow_conv3d_forward", "aten::_convolution_pointwise"),
    "batchnorm": ("aten::native_batch_norm", "aten::_native_batch_norm_legit_no_training"),
    "upsampling": ("aten::upsample_trilinear3d",),
    "CSS flips": ("aten::flip", "aten::stack", "aten::mean"),
    "copies": ("aten::copy_", "aten::clone", "aten::contiguous"),
}
SCAN = "_SelectiveScan"


def profile_once(net, image) -> dict[str, float]:
    """Seconds per group for one forward of ``net`` on ``image`` (self CPU time; the scan's total)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    with torch.no_grad():
        net(image)  # warm-up
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            net(image)
    events = prof.key_averages()
    scan_total = sum(e.cpu_time_total for e in events if e.key == SCAN)
    # operators called inside the scan are counted in its total, not in the groups
    inside = {}
    for event in prof.events():
        if event.name == SCAN:
            for child in _descendants(event):
                inside[child.name] = inside.get(child.name, 0.0) + child.self_cpu_time_total
    seconds = {"scan": scan_total / 1e6}
    total_self = sum(e.self_cpu_time_total for e in events)
    grouped = 0.0
    for group, names in GROUPS.items():
        value = sum(e.self_cpu_time_total - inside.get(e.key, 0.0) for e in events if e.key in names)
        seconds[group] = value / 1e6
        grouped += value
    seconds["rest"] = (total_self - scan_total - grouped) / 1e6
    seconds["total"] = total_self / 1e6
    return seconds


def _descendants(event):
    for child in event.cpu_children:
        yield child
        yield from _descendants(child)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=64, help="window edge (multiple of 16; default 64)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON output path")
    args = parser.parse_args(argv)

    import torch

    from nnmamba_monai.networks import fuse_for_inference, nnMambaSeg

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    net = nnMambaSeg(3, 4, 3, out_relu=False).eval()
    image = torch.randn(1, 4, args.size, args.size, args.size)
    rows = {"eager": profile_once(net, image), "fused": profile_once(fuse_for_inference(net), image)}
    report = {
        "command": "python benchmarks/profile_cpu.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "threads": args.threads,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(unset)"),
        "load_average": list(os.getloadavg()),
        "torch": torch.__version__,
        "window": [1, 4, args.size, args.size, args.size],
        "seconds": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    groups = list(rows["eager"])
    print(f"one {args.size}^3 window, batch 1, {args.threads} thread(s), {report['date']}")
    print("| group | " + " | ".join(f"{name} s (%)" for name in rows) + " |")
    print("|---|" + "---|" * len(rows))
    for group in groups:
        cells = [f"{r[group]:.3f} ({100 * r[group] / r['total']:.0f} %)" for r in rows.values()]
        print(f"| {group} | " + " | ".join(cells) + " |")
    print(f"JSON: {args.out}")


if __name__ == "__main__":
    sys.path.insert(0, str(REPO_ROOT))
    main()

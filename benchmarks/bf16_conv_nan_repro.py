"""Stand-alone reproduction: bf16 Conv3d backward on CPU returning non-finite weight gradients from finite inputs.

Needs only torch (no nnmamba_monai), so it can be attached to an upstream report as it is:

    python benchmarks/bf16_conv_nan_repro.py                     # 2000 rounds, 1 thread
    ONEDNN_VERBOSE=1 python benchmarks/bf16_conv_nan_repro.py --rounds 3 --only conv5.conv.0   # which kernel

It replays, with torch's own ``aten.convolution_backward``, every 3D convolution of the small nnMamba network that
failed in bf16 CPU training (``nnMambaSeg(3, 1, 1, channels=8, blocks=1)``, batch 2, 16^3 input; each input
contiguous NCDHW, as the network makes them), on random finite bf16 tensors. Before each round it fills and frees
heap blocks of the sizes involved with NaN, so that a kernel that reads memory it never wrote sees NaN instead of
whatever happens to be there (the failure in the network was at a different step in every seeded single-threaded
run, which is what such a read looks like). A round fails when a gradient is not finite, or when it is further
from the float32 gradient of the same bf16 tensors than bf16 rounding allows. The same rounds then run with
oneDNN disabled (``torch.backends.mkldnn.flags(enabled=False)``) as the control.

Exit status: 0 when every round passed, 1 when any failed (with a table of what failed, and where), 2 when this
CPU does not reach oneDNN's bf16 convolution at all (no AVX512-BF16/AMX: nothing to reproduce here).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys

import torch

# (name in nnMambaSeg, input shape (B, C, D, H, W), out_channels, kernel, stride, padding)
CONVS = [
    ("in_conv.conv.3", (2, 8, 8, 8, 8), 8, 3, 1, 1),
    ("layer1.0.conv1", (2, 8, 8, 8, 8), 16, 3, 2, 1),
    ("layer1.0.conv2", (2, 16, 4, 4, 4), 16, 3, 1, 1),
    ("layer2.0.conv1", (2, 16, 4, 4, 4), 32, 3, 2, 1),
    ("layer2.0.conv2", (2, 32, 2, 2, 2), 32, 3, 1, 1),
    ("layer3.0.conv1", (2, 32, 2, 2, 2), 64, 3, 2, 1),
    ("layer3.0.conv2", (2, 64, 1, 1, 1), 64, 3, 1, 1),
    ("conv5.conv.0", (2, 96, 2, 2, 2), 32, 3, 1, 1),
    ("conv5.conv.3", (2, 32, 2, 2, 2), 32, 3, 1, 1),
    ("conv6.conv.0", (2, 48, 4, 4, 4), 16, 3, 1, 1),
    ("conv7.conv.0", (2, 24, 8, 8, 8), 8, 3, 1, 1),
    ("conv8.conv.0", (2, 8, 16, 16, 16), 1, 3, 1, 1),
]
# bf16 keeps 8 bits of mantissa; a gradient summed in float32 and rounded once is within this of the reference
TOLERANCE = 2e-2


def cpu_flags() -> list[str]:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            flags = next(line for line in cpuinfo if line.startswith("flags")).split(":", 1)[1].split()
    except (OSError, StopIteration):
        return []
    return sorted(f for f in flags if f.startswith(("avx512", "amx", "avx_vnni", "avx2")))


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            return next(line for line in cpuinfo if line.startswith("model name")).split(":", 1)[1].strip()
    except (OSError, StopIteration):
        return platform.processor()


def onednn_version() -> str:
    """oneDNN's version as torch's build report names it (MKL-DNN vX.Y.Z)."""
    line = next((line for line in torch.__config__.show().splitlines() if "MKL-DNN" in line), "")
    return line.split("MKL-DNN", 1)[1].split("(")[0].strip() if line else "not built with oneDNN"


def onednn_bf16() -> bool:
    """Whether torch sends bf16 convolutions to oneDNN on this CPU (else to its own slow_conv3d)."""
    return torch.backends.mkldnn.is_available() and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def poison_heap(sizes_bytes: list[int]) -> None:
    """Allocate heap blocks of these sizes filled with NaN and free them, so that reused memory holds NaN."""
    blocks = [torch.full((max(1, n // 4),), float("nan")) for n in sizes_bytes for _ in range(4)]
    del blocks


def one_round(conv: tuple, generator: torch.Generator) -> dict | None:
    """One backward of ``conv`` in bf16 against float32; a dict describing the failure, or None."""
    name, shape, out_channels, kernel, stride, padding = conv
    x = torch.randn(shape, generator=generator).to(torch.bfloat16)
    weight = (torch.randn(out_channels, shape[1], kernel, kernel, kernel, generator=generator) * 0.1).to(torch.bfloat16)
    out_shape = [shape[0], out_channels] + [(s + 2 * padding - kernel) // stride + 1 for s in shape[2:]]
    grad_out = torch.randn(out_shape, generator=generator).to(torch.bfloat16)
    sizes = [t.numel() * 4 for t in (x, weight, grad_out)] + [weight.numel() * 8, x.numel() * 27 * 4]
    poison_heap(sizes)
    args = ([out_channels], [stride] * 3, [padding] * 3, [1] * 3, False, [0] * 3, 1, [True, True, True])
    grad_x, grad_w, grad_b = torch.ops.aten.convolution_backward(grad_out, x, weight, *args)
    ref_x, ref_w, ref_b = torch.ops.aten.convolution_backward(grad_out.float(), x.float(), weight.float(), *args)
    for which, got, ref in (
        ("grad_input", grad_x, ref_x),
        ("grad_weight", grad_w, ref_w),
        ("grad_bias", grad_b, ref_b),
    ):
        finite = bool(torch.isfinite(got).all())
        error = float((got.float() - ref).abs().max() / ref.abs().max().clamp_min(1e-6)) if finite else float("nan")
        if not finite or error > TOLERANCE:
            bad = (~torch.isfinite(got)).sum().item() if not finite else 0
            return {"conv": name, "gradient": which, "non_finite": int(bad), "max_rel_error": error}
    return None


def run(rounds: int, only: str | None, seed: int) -> list[dict]:
    convs = [c for c in CONVS if only is None or c[0] == only]
    generator = torch.Generator().manual_seed(seed)
    failures = []
    for index in range(rounds):
        for conv in convs:
            failure = one_round(conv, generator)
            if failure is not None:
                failures.append({"round": index, **failure})
    return failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2000, help="rounds over the convolutions (default 2000)")
    parser.add_argument("--only", choices=[c[0] for c in CONVS], help="replay this convolution only")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the report here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    report = {
        "torch": torch.__version__,
        "onednn": onednn_version(),
        "python": platform.python_version(),
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "onednn_bf16_convolution": onednn_bf16(),
        "threads": args.threads,
        "rounds": args.rounds,
    }
    for key, value in report.items():
        print(f"{key:>24}: {value}")
    report["failures_default"] = run(args.rounds, args.only, args.seed)
    with torch.backends.mkldnn.flags(enabled=False):
        report["failures_mkldnn_disabled"] = run(max(1, args.rounds // 10), args.only, args.seed)
    for label in ("failures_default", "failures_mkldnn_disabled"):
        failures = report[label]
        print(f"{label}: {len(failures)}")
        for failure in failures[:20]:
            print("   ", failure)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=2)
    if report["failures_default"] or report["failures_mkldnn_disabled"]:
        return 1
    if not report["onednn_bf16_convolution"]:
        print("this CPU does not use oneDNN's bf16 convolution (no AVX512-BF16/AMX): nothing to reproduce here")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

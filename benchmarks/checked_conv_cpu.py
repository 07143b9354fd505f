"""The cost of checked convolutions (nnmamba_monai/blocks/checked_conv.py) in a CPU training step.

The same nnMambaSeg, with its checked convolutions and with them turned back into plain ``torch.nn``
convolutions (same parameters), one forward+backward+Adam step on (B, 1, S, S, S) with 16 classes, in bf16
autocast (the checked path: own backward and a finiteness check per gradient) and in float32 (the stock path in
both). Timings alternate between the two networks, repeat after repeat, and the median is reported with the
ratio checked / plain.

    python benchmarks/checked_conv_cpu.py                  # table + benchmarks/results/checked_conv_cpu.json
    python benchmarks/checked_conv_cpu.py --size 64 --repeats 5
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn as nn

from nnmamba_monai import nnMambaSeg
from nnmamba_monai.blocks.checked_conv import _CHECKED

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "checked_conv_cpu.json"
PLAIN = {checked: plain for plain, checked in _CHECKED.items()}


def make_pair(channels: int) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    checked = nnMambaSeg(3, 1, 16, channels=channels)
    plain = nnMambaSeg(3, 1, 16, channels=channels)
    plain.load_state_dict(checked.state_dict())
    for module in plain.modules():
        if type(module) in PLAIN:
            module.__class__ = PLAIN[type(module)]
    return checked, plain


def step_seconds(network: nn.Module, optimizer, images, labels, dtype: torch.dtype | None) -> float:
    start = time.perf_counter()
    optimizer.zero_grad()
    with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
        loss = nn.functional.cross_entropy(network(images).float(), labels)
    loss.backward()
    optimizer.step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--channels", type=int, default=32, help="nnMambaSeg width (published: 32)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()

    images = torch.randn(args.batch, 1, args.size, args.size, args.size)
    labels = torch.randint(0, 16, (args.batch, args.size, args.size, args.size))
    rows = []
    for label, dtype in (("bf16 autocast", torch.bfloat16), ("float32", None)):
        nets = make_pair(args.channels)
        optimizers = [torch.optim.Adam(n.parameters(), lr=1e-4) for n in nets]
        times: list[list[float]] = [[], []]
        for repeat in range(args.repeats + 1):  # the first round warms up
            for index, (network, optimizer) in enumerate(zip(nets, optimizers, strict=True)):
                seconds = step_seconds(network, optimizer, images, labels, dtype)
                if repeat:
                    times[index].append(seconds)
        checked, plain = (statistics.median(t) for t in times)
        rows.append({"precision": label, "checked_s": checked, "plain_s": plain, "ratio": checked / plain})

    print(f"nnMambaSeg(channels={args.channels}), batch {args.batch}, {args.size}^3, {torch.get_num_threads()} threads")
    print("| precision | checked s | plain s | checked / plain |\n|---|---|---|---|")
    for row in rows:
        print(f"| {row['precision']} | {row['checked_s']:.3f} | {row['plain_s']:.3f} | {row['ratio']:.3f} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "date": datetime.date.today().isoformat(),
                "machine": platform.processor() or platform.machine(),
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
                "size": args.size,
                "batch": args.batch,
                "channels": args.channels,
                "repeats": args.repeats,
                "rows": rows,
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()

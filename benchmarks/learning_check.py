"""Learning check: does each network family learn brain extraction with the demo's data and one shared budget?

Runs ``python -m nnmamba_monai.demo --network FAMILY`` once per family with the SAME reduced budget (epochs,
crops per epoch, patch size, seed, optimizer and learning rate), each in its own output folder, then prints a
table (family, parameters, training wall time, held-out Dice and HD95) and writes
``benchmarks/results/learning_check.json``. Widths per family are those of
``nnmamba_monai.demo.presets.FAMILIES``.

ONE training volume (ICBM 2009c template) and ONE test volume (Colin27): a smoke test that every family's
forward/backward pass, bundle wiring and inference path learn something, not a benchmark.

    python benchmarks/learning_check.py --threads 2
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

from nnmamba_monai.demo.presets import FAMILIES

REPO_ROOT = Path(__file__).resolve().parents[1]
FAMILY_ORDER = ["nnmamba", "segmamba", "bisegmamba", "multisegmamba", "segmambaskip", "dynunet"]
# the reduced budget: 32^3 crops keep the voxel-level Mamba nets (a scan over every voxel at full
# resolution) within minutes on a CPU; the demo itself uses 64^3 crops and 30 epochs
DEFAULT_BUDGET = {"epochs": 8, "samples_per_epoch": 16, "patch_size": 32, "lr": 3e-3, "seed": 0}


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", nargs="+", choices=FAMILY_ORDER, default=FAMILY_ORDER)
    parser.add_argument("--output", type=Path, default=Path("learning_check_runs"), help="one subfolder per family")
    parser.add_argument("--json", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "learning_check.json")
    parser.add_argument("--epochs", type=int, default=DEFAULT_BUDGET["epochs"])
    parser.add_argument("--samples-per-epoch", type=int, default=DEFAULT_BUDGET["samples_per_epoch"])
    parser.add_argument("--patch-size", type=int, default=DEFAULT_BUDGET["patch_size"])
    parser.add_argument("--lr", type=float, default=DEFAULT_BUDGET["lr"])
    parser.add_argument("--seed", type=int, default=DEFAULT_BUDGET["seed"])
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads per run (default: torch's)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--reuse", action="store_true", help="take a family's existing summary.json when it has the same budget"
    )
    return parser.parse_args(argv)


def _reusable_summary(family: str, args: argparse.Namespace) -> dict | None:
    """The family's earlier ``summary.json`` under ``--output`` if it was run with this exact budget."""
    path = args.output / family / "summary.json"
    if not path.is_file():
        return None
    summary = json.loads(path.read_text())
    same = {
        "network": family,
        "epochs": args.epochs,
        "samples_per_epoch": args.samples_per_epoch,
        "patch_size": args.patch_size,
        "seed": args.seed,
        "device": args.device,
    }
    if summary.get("learning_rate", args.lr) != args.lr or any(summary.get(k) != v for k, v in same.items()):
        return None
    summary.setdefault("run_seconds", summary["wall_seconds"])
    return summary


def run_family(family: str, args: argparse.Namespace) -> dict:
    """Train, infer and evaluate one family through the demo; returns its ``summary.json`` plus the wall time."""
    command = [
        sys.executable,
        "-m",
        "nnmamba_monai.demo",
        f"--network={family}",
        f"--epochs={args.epochs}",
        f"--samples-per-epoch={args.samples_per_epoch}",
        f"--patch-size={args.patch_size}",
        f"--val-interval={args.epochs}",  # validate once, after the last epoch
        f"--lr={args.lr}",
        f"--seed={args.seed}",
        f"--device={args.device}",
        f"--output={args.output / family}",
    ]
    if args.threads is not None:
        command.append(f"--threads={args.threads}")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    started = time.perf_counter()
    subprocess.run(command, cwd=REPO_ROOT, env=env, check=True)
    summary = json.loads((args.output / family / "summary.json").read_text())
    summary["run_seconds"] = round(time.perf_counter() - started, 1)
    return summary


def format_table(rows: list[dict]) -> str:
    """Markdown table of the per-family results."""
    lines = [
        "| family | parameters | train wall (s) | held-out Dice | HD95 (mm) | NSD@2mm |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['family']} | {row['parameters'] / 1e6:.2f} M | {row['train_seconds']:.0f} | "
            f"{row['dice']:.3f} | {row['hd95_mm']:.1f} | {row['nsd']:.3f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    args = _parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    rows = []
    for family in args.families:
        print(f"\n=== {family} ===", flush=True)
        summary = _reusable_summary(family, args) if args.reuse else None
        summary = summary if summary is not None else run_family(family, args)
        metrics = summary["metrics"]
        rows.append(
            {
                "family": family,
                "network_def": FAMILIES[family],
                "parameters": summary["parameters"],
                "train_seconds": summary["train_seconds"],
                "run_seconds": summary["run_seconds"],
                "dice": metrics["dice"],
                "hd95_mm": metrics["hd95_mm"],
                "nsd": metrics["nsd"],
            }
        )
    table = format_table(rows)
    print("\n" + table)
    record = {
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "torch": torch.__version__,
        "threads": args.threads if args.threads is not None else torch.get_num_threads(),
        "device": args.device,
        "budget": {
            "epochs": args.epochs,
            "samples_per_epoch": args.samples_per_epoch,
            "batch_size": 2,
            "patch_size": args.patch_size,
            "optimizer": "Adam, polynomial decay",
            "lr": args.lr,
            "seed": args.seed,
        },
        "data": "train: ICBM 2009c template (1 volume); test: Colin27 (1 volume); 2 mm, brain mask",
        "results": rows,
        "table": table,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(record, indent=1))
    print(f"wrote {args.json}")
    return rows


if __name__ == "__main__":
    main()

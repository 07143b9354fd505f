"""``python -m nnmamba_monai.demo``: brain extraction of T1 MRI with one of our MONAI bundles, on the CPU.

Trains a small network with the bundle's ``train.json`` on ONE volume (the ICBM 2009c template, random
crops and augmentation), predicts the held-out Colin27 subject and a
second, out-of-distribution case (Colin27 with its contrast inverted inside the head, a synthetic T2/PD-like
image made at run time) with the bundle's ``inference.json``, measures Dice / HD95 / NSD of both against
Colin27's reference brain mask and draws two figures. Each bundle config is
run unchanged, merged with the demo's overrides (``nnmamba_monai/demo/configs``): 2 classes, 2 mm
spacing, 64^3 patches, a small network, the datalist and every output folder under ``--output``.
A demo on two volumes, not a benchmark.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
import warnings
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch

from nnmamba_monai import bundle_config
from nnmamba_monai.checkpoint import load_weights_only
from nnmamba_monai.command_line import command_parser
from nnmamba_monai.demo.evaluation import evaluate_files, write_metrics
from nnmamba_monai.demo.figures import plot_overlay, plot_training_curve
from nnmamba_monai.demo.history import LOGGER_NAME, read_history
from nnmamba_monai.demo.presets import FAMILIES, network_def

__all__ = ["main", "find_bundle", "write_datalist", "write_network_settings", "DATA_DIR", "CONFIG_DIR"]

PACKAGE_DIR = Path(__file__).resolve().parent
DATA_DIR = PACKAGE_DIR / "data"
CONFIG_DIR = PACKAGE_DIR / "configs"
DEMO_LABELS = {"0": "background", "1": "brain"}
DEFAULT_BUNDLE = "amos_mr_nnmamba_segmentation"  # MR intensity normalisation (percentiles), no CT windowing
TRAIN_CASE = "icbm2009c"
TEST_CASE = "colin27"
OOD_CASE = "colin27_inverted"  # synthetic: made from the Colin27 T1 at run time (write_ood_case)

logger = logging.getLogger(LOGGER_NAME)


def find_bundle(bundle: str | Path | None = None) -> Path:
    """The bundle folder to run: ``bundle`` as a path, or a bundle name among the package's bundles
    (:func:`nnmamba_monai.bundle_config.bundles_dir`: installed with the package, or the source tree's).

    Raises FileNotFoundError naming the places looked at.
    """
    name = DEFAULT_BUNDLE if bundle is None else str(bundle)
    try:
        return bundle_config.find_bundle(name, required=("configs/train.json", "configs/inference.json"))
    except FileNotFoundError as error:
        raise FileNotFoundError(f"{error}; pass --bundle PATH") from None


def write_ood_case(path: Path, data_dir: Path = DATA_DIR) -> Path:
    """The out-of-distribution test image: Colin27's T1 with its contrast inverted inside the head.

    A synthetic non-T1 contrast (CSF bright, white matter dark, air dark) on Colin27's grid, so Colin27's brain
    mask is its reference. Written to ``path`` (float32 NIfTI).
    """
    from nnmamba_monai.transforms import inverted_head_contrast

    image = nib.load(str(data_dir / f"{TEST_CASE}_t1.nii.gz"))
    inverted = inverted_head_contrast(np.asarray(image.dataobj, dtype=np.float32))
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(inverted, image.affine), str(path))
    return path


def write_datalist(path: Path, data_dir: Path = DATA_DIR, ood_image: Path | None = None) -> Path:
    """Decathlon-style datalist: training = ICBM 2009c, validation and testing = Colin27 (absolute paths).

    ``ood_image``, when given, is a second testing entry (the out-of-distribution case).
    """

    def case(name: str, with_label: bool = True) -> dict[str, str]:
        entry = {"image": str(data_dir / f"{name}_t1.nii.gz")}
        if with_label:
            entry["label"] = str(data_dir / f"{name}_brainmask.nii.gz")
        return entry

    datalist = {
        "name": "nnmamba-monai demo: brain extraction of T1 MRI at 2 mm",
        "labels": DEMO_LABELS,
        "training": [case(TRAIN_CASE)],
        "validation": [case(TEST_CASE)],
        "testing": [case(TEST_CASE, with_label=False)],
    }
    if ood_image is not None:
        datalist["testing"].append({"image": str(ood_image)})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(datalist, indent=1))
    return path


def _run_workflow(config_files: list[Path], workflow_type: str, overrides: dict[str, Any]) -> Any:
    """Run a bundle config through MONAI's ``ConfigWorkflow``; returns the workflow (its parser holds the objects)."""
    from monai.bundle import ConfigWorkflow

    workflow = ConfigWorkflow(
        config_file=[str(f) for f in config_files],
        logging_file=str(CONFIG_DIR / "logging.conf"),
        workflow_type=workflow_type,
        **overrides,
    )
    workflow.initialize()
    workflow.run()
    workflow.finalize()
    return workflow


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = command_parser("nnmamba_monai.demo", __doc__)
    parser.add_argument("--output", type=Path, default=Path("nnmamba_demo"), help="output folder (./nnmamba_demo)")
    parser.add_argument("--epochs", type=int, default=30, help="training epochs (30)")
    parser.add_argument(
        "--samples-per-epoch", type=int, default=16, help="random 3D crops of the training volume per epoch (16)"
    )
    parser.add_argument("--val-interval", type=int, default=5, help="validate on Colin27 every N epochs (5)")
    parser.add_argument("--patch-size", type=int, default=64, help="cubic patch edge, multiple of 16 (64)")
    parser.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate, polynomial decay (3e-3)")
    parser.add_argument("--network", choices=sorted(FAMILIES), default="nnmamba", help="network family (nnmamba)")
    parser.add_argument("--bundle", default=None, help=f"bundle name under bundles/ or a path ({DEFAULT_BUNDLE})")
    parser.add_argument("--seed", type=int, default=0, help="random seed (0)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda:0 (cpu)")
    parser.add_argument(
        "--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice, the core count)"
    )
    args = parser.parse_args(argv)
    if args.patch_size % 16:
        parser.error(f"--patch-size must be a multiple of 16; got {args.patch_size}")
    if args.epochs < 1 or args.samples_per_epoch < 1 or args.val_interval < 1:
        parser.error("--epochs, --samples-per-epoch and --val-interval must be positive")
    return args


def _common_overrides(args: argparse.Namespace, output: Path, datalist: Path) -> dict[str, Any]:
    return {
        "output_root": str(output),
        "dataset_dir": str(DATA_DIR),
        "datalist_file": str(datalist),
        "device": f"$torch.device('{args.device}')",
        "patch_size": [args.patch_size] * 3,
        "network_def": network_def(args.network),
    }


def write_serving_override(path: Path, common: dict[str, Any], ckpt_dir: Path) -> Path:
    """The settings the demo's model was trained with, as one MONAI Label override file.

    ``python scripts/monailabel_bundle.py BUNDLE APP --override <output>/monailabel_override.json`` serves the
    demo's ``model.pt`` with the bundle it was trained with: the demo's ``common.json`` and its network, the
    label names (the copy's ``metadata.json``, where MONAI Label reads them) and the weights' folder.
    """
    override = json.loads((CONFIG_DIR / "common.json").read_text())
    override.update({key: common[key] for key in ("patch_size", "network_def")})
    for key in ("output_root", "dataset_dir", "datalist_file", "device"):  # run settings, not the model's
        override.pop(key, None)
    override["ckpt_dir"] = str(ckpt_dir)
    override["_meta_::network_data_format::outputs::pred::channel_def"] = DEMO_LABELS
    path.write_text(json.dumps(override, indent=1))
    return path


def write_network_settings(path: Path, common: dict[str, Any]) -> Path:
    """The settings the demo's checkpoint was trained with, as an override of the bundle's inference.json
    (``<output>/models/network.json``): its ``network_def`` and the demo's classes, spacing, intensity
    percentiles and patch. ``python -m nnmamba_monai.predict --ckpt_dir <output>/models`` layers it by itself."""
    settings = json.loads((CONFIG_DIR / "common.json").read_text())
    for key in ("output_root", "dataset_dir", "datalist_file", "ckpt_dir", "device", "amp", "num_workers"):
        settings.pop(key, None)  # where and how the demo ran, not what the model is
    settings.update({key: common[key] for key in ("patch_size", "network_def")})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(settings, indent=1))
    return path


def _validation_interval(epochs: int, requested: int) -> int:
    """The largest interval <= ``requested`` that divides ``epochs``, so that the last epoch is validated."""
    interval = min(requested, epochs)
    while epochs % interval:
        interval -= 1
    return interval


def _load_checkpoint_weights(path: Path) -> dict[str, torch.Tensor]:
    """The network state dict in a ``CheckpointSaver`` file (saved bare, or under the key ``model``)."""
    checkpoint = load_weights_only(path)
    return checkpoint["model"] if "model" in checkpoint and isinstance(checkpoint["model"], dict) else checkpoint


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Train, infer, evaluate, draw; returns the summary (also written to ``<output>/summary.json``)."""
    args = _parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    # the demo merges configs from two folders on purpose; MONAI warns about that on every workflow
    logging.getLogger("monai.bundle.workflows").setLevel(logging.ERROR)
    # the demo replaces network_def as a whole and writes models/network.json itself (write_network_settings)
    logging.getLogger("nnmamba_monai.bundle_config").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        # deprecation notices of MONAI transforms' defaults are for developers, not for the demo's reader
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        return _demo(args)


def _demo(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        bundle = find_bundle(args.bundle)
    except FileNotFoundError as error:
        raise SystemExit(f"python -m nnmamba_monai.demo: error: {error}") from None
    output = args.output.resolve()
    ood_image = write_ood_case(output / "ood" / f"{OOD_CASE}_t1.nii.gz")
    datalist = write_datalist(output / "datalist.json", ood_image=ood_image)
    common = _common_overrides(args, output, datalist)
    val_interval = _validation_interval(args.epochs, args.val_interval)

    train = _run_workflow(
        [bundle / "configs" / "train.json", CONFIG_DIR / "common.json", CONFIG_DIR / "train.json"],
        "train",
        {
            **common,
            "max_epochs": args.epochs,
            "val_interval": val_interval,
            "samples_per_epoch": args.samples_per_epoch,
            "learning_rate": args.lr,
            "seed": args.seed,
        },
    )
    train_seconds = time.perf_counter() - started
    network = train.parser.get_parsed_content("network")
    params = sum(p.numel() for p in network.parameters())
    checkpoint = Path(train.parser.get_parsed_content("ckpt_dir")) / "model.pt"
    network_settings = write_network_settings(checkpoint.parent / bundle_config.NETWORK_SETTINGS, common)
    history_path = Path(train.parser.get_parsed_content("output_dir")) / "history.json"
    logger.info(f"training done in {train_seconds:.0f} s; predicting {TEST_CASE} with the bundle's inference.json")

    inference = _run_workflow(
        [bundle / "configs" / "inference.json", CONFIG_DIR / "common.json", CONFIG_DIR / "inference.json"],
        "inference",
        common,
    )
    prediction = Path(inference.parser.get_parsed_content("output_dir")) / f"{TEST_CASE}_t1_seg.nii.gz"
    if not prediction.is_file():
        raise FileNotFoundError(f"the inference workflow did not write {prediction}")

    ood_prediction = prediction.parent / f"{OOD_CASE}_t1_seg.nii.gz"
    if not ood_prediction.is_file():
        raise FileNotFoundError(f"the inference workflow did not write {ood_prediction}")

    reference = DATA_DIR / f"{TEST_CASE}_brainmask.nii.gz"
    metrics = {"case": TEST_CASE, **evaluate_files(prediction, reference, nsd_tolerance_mm=2.0)}
    ood_metrics = {"case": OOD_CASE, **evaluate_files(ood_prediction, reference, nsd_tolerance_mm=2.0)}
    metrics_csv, metrics_json = output / "metrics.csv", output / "metrics.json"
    write_metrics([metrics, ood_metrics], metrics_csv, metrics_json)

    image_nii = nib.load(str(DATA_DIR / f"{TEST_CASE}_t1.nii.gz"))
    spacing = image_nii.header.get_zooms()[:3]
    overlay = plot_overlay(
        np.asarray(image_nii.dataobj, dtype=np.float32),
        np.asarray(nib.load(str(prediction)).dataobj).squeeze(),
        np.asarray(nib.load(str(reference)).dataobj),
        output / "figures" / "prediction_overlay.png",
        title=f"{args.network} brain mask on {TEST_CASE} (held out): Dice {metrics['dice']:.3f}, "
        f"HD95 {metrics['hd95_mm']:.1f} mm",
        spacing=spacing,
    )
    curve = plot_training_curve(
        read_history(history_path),
        output / "figures" / "training_curve.png",
        title=f"{args.network}, {params / 1e6:.2f} M parameters, trained on {TRAIN_CASE}",
    )
    summary = {
        "network": args.network,
        "parameters": params,
        "bundle": str(bundle),
        "epochs": args.epochs,
        "samples_per_epoch": args.samples_per_epoch,
        "patch_size": args.patch_size,
        "learning_rate": args.lr,
        "seed": args.seed,
        "device": args.device,
        "torch_threads": torch.get_num_threads(),
        "train_seconds": round(train_seconds, 1),
        "wall_seconds": round(time.perf_counter() - started, 1),
        "metrics": metrics,
        "ood_metrics": ood_metrics,
        "files": {
            "checkpoint": str(checkpoint),
            "network_settings": str(network_settings),
            "history": str(history_path),
            "prediction": str(prediction),
            "ood_prediction": str(ood_prediction),
            "metrics_csv": str(metrics_csv),
            "metrics_json": str(metrics_json),
            "overlay_png": str(overlay),
            "training_curve_png": str(curve),
        },
    }
    summary["files"]["monailabel_override"] = str(
        write_serving_override(output / "monailabel_override.json", common, checkpoint.parent)
    )
    (output / "summary.json").write_text(json.dumps(summary, indent=1))
    _print_summary(summary)
    return summary


def _print_summary(summary: dict[str, Any]) -> None:
    metrics = summary["metrics"]
    lines = [
        "",
        f"nnmamba-monai demo finished in {summary['wall_seconds']:.0f} s "
        f"(training {summary['train_seconds']:.0f} s, {summary['network']}, {summary['parameters'] / 1e6:.2f} M "
        "parameters)",
        f"held-out {metrics['case']}: Dice {metrics['dice']:.3f}, HD95 {metrics['hd95_mm']:.1f} mm, "
        f"NSD@{metrics['nsd_tolerance_mm']:g}mm {metrics['nsd']:.3f}",
    ]
    ood = summary["ood_metrics"]
    lines.append(
        f"out of distribution, {ood['case']} (synthetic inverted contrast): Dice {ood['dice']:.3f}, "
        f"HD95 {ood['hd95_mm']:.1f} mm, NSD@{ood['nsd_tolerance_mm']:g}mm {ood['nsd']:.3f}"
    )
    width = max(len(name) for name in summary["files"])
    lines += [f"  {name:<{width}}  {path}" for name, path in summary["files"].items()]
    print("\n".join(lines), flush=True)

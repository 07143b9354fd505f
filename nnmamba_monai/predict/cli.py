"""``python -m nnmamba_monai.predict --bundle NAME INPUT... --output DIR``: a trained bundle on your own scans.

Runs the bundle's ``configs/inference.json`` unchanged through MONAI's ``ConfigWorkflow``, layered with the
settings the checkpoint was trained with (``<ckpt_dir>/network.json``, written by training and by the demo) and
any ``--config_file`` given, then ``--set ID=VALUE`` (one config id each, e.g. ``--set save_brain_image=true``
on the brain-extraction bundle). Each INPUT is a scan (.nii/.nii.gz, .mgz/.mgh, .nrrd/.nhdr, .mha/.mhd), a DICOM
series folder, or a folder of such scans. Segmentations are written as NIfTI on each input's grid; the
classification and landmark bundles write their CSV files. One line per case, then the total time.
Errors (missing checkpoint, missing or unreadable input, unsupported type, a 2-D slice, wrong channel count, a
checkpoint that does not fit the network, a ``--set`` id no config defines) end with one line naming the file or
id and the fix, exit status 1.

Examples: brain masks (and skull-stripped scans) with the weights the brain-extraction bundle ships; the demo's
model::

    python -m nnmamba_monai.predict --bundle brain_nnmamba_extraction t1.nii.gz dicom_folder/ --output masks \\
        --set save_brain_image=true
    python -m nnmamba_monai.predict --bundle amos_mr_nnmamba_segmentation --ckpt_dir nnmamba_demo/models \\
        scan.nii.gz brain.mgz dicom_folder/ --output predictions
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from nnmamba_monai.bundle_config import NETWORK_SETTINGS, find_bundle
from nnmamba_monai.bundle_overrides import check_override_ids
from nnmamba_monai.command_line import command_parser
from nnmamba_monai.predict.inputs import find_scans
from nnmamba_monai.refusal import find_refusal
from nnmamba_monai.transforms.scan_reader import scan_format, supported_formats

__all__ = ["expand_inputs", "main", "parse_setting", "predict"]

logger = logging.getLogger(__name__)


def expand_inputs(inputs: list[str]) -> list[str]:
    """Each input as given, except a folder that is not a DICOM series: its scans (sorted); a folder without
    any keeps its own path, so that the pre-flight check names it."""
    scans: list[str] = []
    for item in inputs:
        is_folder_of_scans = Path(item).is_dir() and scan_format(item) is None
        scans += (find_scans(dataset_dir=item) or [item]) if is_folder_of_scans else [item]
    return scans


def parse_setting(text: str) -> tuple[str, Any]:
    """``ID=VALUE`` of ``--set``: the id and the value read as JSON (``true``, ``0.5``, ``[1, 2]``), else the text."""
    name, has_value, value = text.partition("=")
    if not has_value or not name:
        raise argparse.ArgumentTypeError(f"--set takes ID=VALUE, got {text!r}")
    try:
        return name, json.loads(value)
    except json.JSONDecodeError:
        return name, value


def _set_spelling(name: str, value: Any = None) -> str:
    return f"--set {name}=..." if value is None else f"--set {name}={json.dumps(value)}"


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = command_parser("nnmamba_monai.predict", __doc__)
    parser.add_argument("inputs", nargs="+", help=f"scans: {supported_formats()}, or folders of them")
    parser.add_argument("--bundle", required=True, help="bundle name (e.g. amos_mr_nnmamba_segmentation) or folder")
    parser.add_argument("--output", type=Path, required=True, help="folder for the predictions")
    parser.add_argument("--ckpt_dir", type=Path, default=None, help="folder holding model.pt (<bundle>/models)")
    parser.add_argument(
        "--config_file", action="append", default=[], help="more override configs, layered last (repeatable)"
    )
    parser.add_argument(
        "--set",
        dest="settings",
        action="append",
        type=parse_setting,
        default=[],
        metavar="ID=VALUE",
        help="set one config id, the value read as JSON (repeatable; e.g. save_brain_image=true)",
    )
    parser.add_argument("--device", default=None, help="torch device (cuda:0 when available, else cpu)")
    parser.add_argument(
        "--cpu_preset",
        action="store_true",
        help="layer the bundle's configs/inference_cpu.json (CPU-only machines; its docs say what it changes)",
    )
    return parser.parse_args(argv)


def predict(
    bundle: str | Path,
    inputs: list[str],
    output: str | Path,
    ckpt_dir: str | Path | None = None,
    config_files: Sequence[str | Path] = (),
    device: str | None = None,
    cpu_preset: bool = False,
    settings: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the bundle's inference on ``inputs``; returns ``{"cases": n, "seconds": s, "output": folder}``.

    Args:
        bundle: a bundle name (see :func:`nnmamba_monai.bundle_config.find_bundle`) or folder.
        inputs: scans, DICOM series folders or folders of scans (see :func:`expand_inputs`).
        output: the folder the predictions are written to (the config's ``output_dir``).
        ckpt_dir: the folder of ``model.pt`` and, when present, ``network.json`` (default ``<bundle>/models``).
        config_files: more override configs, layered after ``network.json``.
        device: a torch device string; the config's choice when None.
        cpu_preset: layer the bundle's ``configs/inference_cpu.json`` (fused network, the C++ scan where it can be
            built, the bundle's CPU window settings) after ``network.json``.
        settings: ``{id: value}`` set last (``#`` paths too); a top-level id no config file defines is refused.

    Raises:
        FileNotFoundError: the bundle is not found.
        UnknownOverrideError: a setting names a top-level id none of the configs defines.
        RuntimeError (caused by a :class:`~nnmamba_monai.predict.PredictionError`): the pre-flight check refused.
    """
    from monai.bundle import ConfigWorkflow

    bundle = find_bundle(bundle)
    ckpt_dir = Path(ckpt_dir or bundle / "models").resolve()
    output = Path(output).resolve()
    files = [bundle / "configs" / "inference.json"]
    if (ckpt_dir / NETWORK_SETTINGS).is_file():
        files.append(ckpt_dir / NETWORK_SETTINGS)
    if cpu_preset:
        preset = bundle / "configs" / "inference_cpu.json"
        if not preset.is_file():
            raise FileNotFoundError(f"--cpu_preset: {bundle.name} has no {preset.relative_to(bundle)}")
        files.append(preset)
    files += [Path(f) for f in config_files]
    scans = expand_inputs([str(i) for i in inputs])
    overrides: dict[str, Any] = {
        "bundle_root": str(bundle),
        "ckpt_dir": str(ckpt_dir),
        "output_dir": str(output),
        "num_workers": 0,
        "dataset_dir": str(Path(scans[0]).parent) if scans else "",
    }
    if device:
        overrides["device"] = f"$torch.device('{device}')"
    workflow = ConfigWorkflow(
        config_file=[str(f) for f in files],
        meta_file=str(bundle / "configs" / "metadata.json"),
        logging_file=False,
        workflow_type="infer",
        **overrides,
    )
    parser = workflow.parser
    if settings:
        check_override_ids(parser.get(), settings, spelling=_set_spelling)
    if "images" in parser:  # the classification and landmark bundles list image paths
        parser["images"] = scans
    else:
        parser["datalist"] = [{"image": scan} for scan in scans]
    if "sw_progress" in parser:
        parser["sw_progress"] = False  # one line per case instead
    parser.update(dict(settings or {}))  # the user's word is last
    workflow.initialize()
    evaluator = parser.get_parsed_content("evaluator")
    started = time.perf_counter()
    _attach_progress(evaluator, scans, started)
    workflow.run()
    workflow.finalize()
    seconds = time.perf_counter() - started
    print(f"predicted {len(scans)} case(s) in {seconds:.1f} s; outputs in {output}", flush=True)
    return {"cases": len(scans), "seconds": seconds, "output": str(output)}


def _attach_progress(evaluator: Any, scans: list[str], started: float) -> None:
    """One line per case: its index, input and the time since the previous case."""
    from ignite.engine import Events

    last = [started]

    def report(engine: Any) -> None:
        index = engine.state.iteration
        now = time.perf_counter()
        name = scans[index - 1] if index <= len(scans) else f"case {index}"
        print(f"[{index}/{len(scans)}] {name}: {now - last[0]:.1f} s", flush=True)
        last[0] = now

    evaluator.add_event_handler(Events.ITERATION_COMPLETED, report)


def main(argv: list[str] | None = None) -> int:
    """The command line; returns the exit status (1 with one line on stderr for a refused prediction)."""
    args = _parse_args(argv)
    logging.getLogger("monai.bundle.workflows").setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            predict(
                args.bundle,
                args.inputs,
                args.output,
                args.ckpt_dir,
                args.config_file,
                args.device,
                args.cpu_preset,
                dict(args.settings),
            )
    except FileNotFoundError as error:
        print(f"python -m nnmamba_monai.predict: error: {error}", file=sys.stderr)
        return 1
    except Exception as error:
        refusal = find_refusal(error)
        if refusal is None:
            raise
        if refusal.details:
            print(refusal.details, file=sys.stderr)
        print(f"{type(refusal).__name__}: {refusal.summary}", file=sys.stderr)
        return 1
    return 0

"""The checks a bundle's inference runs before it reads a voxel: each problem is one line naming the file and
the fix, and the run exits with status 1 (see :mod:`nnmamba_monai.refusal`), instead of MONAI's generic
``Failed to evaluate ConfigExpression`` at the end of a traceback.

Checked: the checkpoint exists and loads into the configured network (a shape mismatch names the setting that
differs, e.g. ``channels``, and how to pass it), there is at least one input, and every input exists, has a
supported type, can be read (header only), is a volume rather than a slice, and has the channel count the
network takes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch.nn as nn

from nnmamba_monai.bundle_config import NETWORK_SETTINGS
from nnmamba_monai.checkpoint import extract_state_dict, infer_network_config, load_weights_only
from nnmamba_monai.refusal import RefusalError, install_excepthook
from nnmamba_monai.transforms.scan_reader import DICOM_SERIES, SCAN_FORMATS, scan_format, supported_formats

__all__ = ["PredictionError", "ScanLayout", "check_inference", "checkpoint_mismatch", "scan_channels", "scan_layout"]


class PredictionError(RefusalError, ValueError):
    """An inference that cannot run; the one-line message names the file at fault and the fix."""


class ScanLayout(NamedTuple):
    """What a scan's header says about its array: ``spatial_shape``, the voxels along each spatial axis (up to
    3; empty for a DICOM series, whose slices are not counted), and ``channels``."""

    spatial_shape: tuple[int, ...]
    channels: int


def scan_layout(path: str | os.PathLike) -> ScanLayout:
    """The spatial shape and channels of a scan from its header alone (channels: a 4th image axis or vector
    components; 1 for a DICOM series).

    Raises PredictionError naming the file when it cannot be read.
    """
    kind = scan_format(path)
    try:
        if kind == DICOM_SERIES:
            import itk

            if not itk.GDCMSeriesFileNames.New(Directory=str(path)).GetSeriesUIDs():
                raise ValueError("no DICOM series in this folder")
            return ScanLayout((), 1)
        if SCAN_FORMATS[kind] == "nibabel":
            import nibabel as nib

            shape = tuple(int(size) for size in nib.load(str(path)).shape)
            return ScanLayout(shape[:3], shape[-1] if len(shape) > 3 else 1)
        import itk

        io = itk.ImageIOFactory.CreateImageIO(str(path), itk.CommonEnums.IOFileMode_ReadMode)
        if io is None:
            raise ValueError("ITK has no reader for it")
        io.SetFileName(str(path))
        io.ReadImageInformation()
        axes = int(io.GetNumberOfDimensions())
        spatial = tuple(int(io.GetDimensions(axis)) for axis in range(min(axes, 3)))
        extra = io.GetDimensions(3) if axes > 3 else 1
        return ScanLayout(spatial, int(io.GetNumberOfComponents()) * int(extra))
    except Exception as error:  # any reader's failure is the same finding: this file cannot be read
        reason = " ".join(str(error).split())[:160] or type(error).__name__
        raise PredictionError(f"{path}: cannot be read as {kind} ({reason})") from None


def scan_channels(path: str | os.PathLike) -> int:
    """Channels of a scan from its header alone (see :func:`scan_layout`)."""
    return scan_layout(path).channels


def _refuse_a_slice(path: str, spatial_shape: tuple[int, ...], spatial_dims: int) -> None:
    """A scan with fewer than ``spatial_dims`` axes longer than one voxel is a slice, not a volume."""
    extended = sum(size > 1 for size in spatial_shape)
    if spatial_shape and extended < spatial_dims:
        sizes = " x ".join(str(size) for size in spatial_shape)
        raise PredictionError(
            f"{path}: a {extended}-D image ({sizes} voxels), but the network takes {spatial_dims}-D volumes; "
            "pass the whole volume (all its slices in one file or one DICOM series folder)"
        )


def _case_paths(entry: Any) -> list[str]:
    image = entry.get("image") if isinstance(entry, Mapping) else entry
    return [str(p) for p in image] if isinstance(image, (list, tuple)) else [str(image)]


def _check_inputs(
    cases: Sequence[Any], in_channels: int | None, source: str, datalist_file: str | None, spatial_dims: int
) -> None:
    if not cases:
        missing_datalist = f"datalist {datalist_file} not found and " if datalist_file else ""
        raise PredictionError(
            f"no scans to predict: {missing_datalist}{source} holds none; pass --input_image PATH (a file or a DICOM "
            "series folder) or --dataset_dir DIR (a folder of scans)"
        )
    for entry in cases:
        paths = _case_paths(entry)
        channels = 0
        for path in paths:
            if not os.path.exists(path):
                raise PredictionError(f"input not found: {path}")
            if scan_format(path) is None:
                raise PredictionError(f"{path}: unsupported scan type; use {supported_formats()}")
            layout = scan_layout(path)
            _refuse_a_slice(path, layout.spatial_shape, spatial_dims)
            channels += layout.channels
        if in_channels is not None and channels != in_channels:
            raise PredictionError(
                f"{paths[0]}: {channels} channel(s), but the network takes {in_channels} (network_def#in_channels); "
                f"pass the {in_channels} channel files of one case as --input_image \"['a.nii.gz', ...]\""
                if in_channels > 1
                else f"{paths[0]}: {channels} channel(s), but the network takes {in_channels} "
                "(network_def#in_channels); pass a single-channel scan"
            )


def checkpoint_mismatch(
    checkpoint: Mapping[str, Any], network: Mapping[str, Any], source: str, fix_file: str | None = None
) -> str | None:
    """One line saying how the checkpoint's state dict differs from the network's (None if it loads strictly).

    For nnMamba networks it names the constructor settings that differ (inferred from both state dicts with
    :func:`nnmamba_monai.checkpoint.infer_network_config`), else the first tensor that differs. The fix is
    ``fix_file`` (the settings file beside the checkpoint) when given, else ``--network_def#<setting> <value>``.
    """
    missing = [k for k in network if k not in checkpoint]
    unexpected = [k for k in checkpoint if k not in network]
    shapes = [k for k in network if k in checkpoint and tuple(checkpoint[k].shape) != tuple(network[k].shape)]
    if not (missing or unexpected or shapes):
        return None
    differing: dict[str, tuple[Any, Any]] = {}
    try:
        trained, built = infer_network_config(checkpoint, source), infer_network_config(network, "network")
        if trained["class"] is not built["class"]:  # another network altogether: its class is the setting to name
            differing["_target_"] = (trained["class"].__name__, built["class"].__name__)
        else:
            differing = {
                k: (v, built["kwargs"].get(k)) for k, v in trained["kwargs"].items() if built["kwargs"].get(k) != v
            }
    except (ValueError, KeyError):
        pass
    if differing:
        found = ", ".join(f"{k} {a} (config: {b})" for k, (a, b) in differing.items())
        targets = {"_target_": f"nnmamba_monai.networks.{differing.get('_target_', ('',))[0]}"}
        fix = " ".join(f"--network_def#{k} {targets.get(k, a)}" for k, (a, _) in differing.items())
        what = f"{source} was trained with {found}"
    else:
        key = (shapes or missing or unexpected)[0]
        got = tuple(checkpoint[key].shape) if key in checkpoint else "absent"
        want = tuple(network[key].shape) if key in network else "absent"
        what = f"{source} does not fit network_def: '{key}' is {got} in the checkpoint, {want} in the network"
        fix = "the network_def the checkpoint was trained with"
    if fix_file:
        return (
            f"{what}; its settings are in {fix_file}: add it, --config_file \"['configs/inference.json','{fix_file}']\""
            " (python -m nnmamba_monai.predict adds it itself)"
        )
    return f"{what}; pass {fix}"


def check_inference(
    cases: Sequence[Any],
    checkpoint: str | os.PathLike,
    network: nn.Module,
    in_channels: int | None = None,
    source: str = "the dataset folder",
    datalist_file: str | os.PathLike | None = None,
    spatial_dims: int = 3,
) -> bool:
    """Refuse an inference that cannot run (see the module docstring); returns True when all checks pass.

    Args:
        cases: the dataset's entries (``{"image": path or [paths]}``) or plain paths.
        checkpoint: the ``model.pt`` the evaluator loads.
        network: the configured network (``@network_def``).
        in_channels: the network's input channels (``@network_def#in_channels``).
        source: where the cases came from, for the "no scans" message (e.g. the dataset folder).
        datalist_file: the config's datalist, named in that message when it does not exist.
        spatial_dims: the network's spatial dimensions (every network of this package: 3).
    """
    install_excepthook()
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise PredictionError(
            f"checkpoint not found: {checkpoint}; train the bundle first (configs/train.json) or pass --ckpt_dir DIR "
            "(the folder holding model.pt)"
        )
    missing = str(datalist_file) if datalist_file and not os.path.isfile(datalist_file) else None
    _check_inputs(cases, in_channels, source, missing, spatial_dims)
    loaded = load_weights_only(checkpoint)
    state = loaded["model"] if isinstance(loaded, Mapping) and isinstance(loaded.get("model"), Mapping) else loaded
    expected = network.state_dict()
    if not isinstance(state, Mapping):
        state = {}
    elif set(state) != set(expected):  # wrapped or prefixed ('module.', ...) as other trainers save it
        state = extract_state_dict(state, str(checkpoint))
    settings = checkpoint.parent / NETWORK_SETTINGS
    line = checkpoint_mismatch(state, expected, str(checkpoint), str(settings) if settings.is_file() else None)
    if line:
        raise PredictionError(line)
    return True

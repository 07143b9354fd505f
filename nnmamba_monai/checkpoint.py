"""Load checkpoints saved by the authors' nnMamba code (or by ours) into our networks."""

from __future__ import annotations

import os
import pickle
import re
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn as nn

from nnmamba_monai.networks import nnMambaCls, nnMambaSeg
from nnmamba_monai.refusal import RefusalError

__all__ = [
    "CheckpointLoadError",
    "build_network",
    "extract_state_dict",
    "infer_network_config",
    "load_authors_checkpoint",
    "load_weights_only",
    "unreadable_checkpoint",
]


class CheckpointLoadError(RefusalError, ValueError):
    """A checkpoint file that ``torch.load(weights_only=True)`` cannot read; the message names the file."""


def _unpickler_reason(error: BaseException) -> str:
    """torch's reason for refusing a file, without its advice to retry with ``weights_only=False``."""
    text = " ".join(str(error).split())
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1]
    for advice in (" Please use ", " Check the documentation", " Please file an issue"):
        text = text.split(advice, 1)[0]
    return text.strip().rstrip(".") or type(error).__name__


def unreadable_checkpoint(source: str, error: BaseException) -> CheckpointLoadError:
    """The one-line :class:`CheckpointLoadError` for ``error`` raised by ``torch.load(source, weights_only=True)``.

    It names the file and torch's reason, and says why the file is not loaded otherwise: a checkpoint that needs
    more than tensors and plain containers may run code when unpickled, and retrying with ``weights_only=False``
    (torch's own suggestion, deliberately not repeated) is only safe for a file whose origin you trust.
    """
    if isinstance(error, pickle.UnpicklingError):
        return CheckpointLoadError(
            f"{source} is not a plain checkpoint of tensors ({_unpickler_reason(error)}), so it is not loaded: "
            "unpickling it could run code stored in it. Use a state_dict saved by this project or the network's "
            "authors, or convert the file with nnmamba_monai.convert_checkpoint"
        )
    reason = " ".join(str(error).split())[:200]
    return CheckpointLoadError(
        f"{source} cannot be read as a torch checkpoint (truncated, or not a torch file?): {reason}"
    )


UNREADABLE_ERRORS = (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError)  # what torch.load raises


def load_weights_only(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``; a file it cannot read raises :class:`CheckpointLoadError`
    (see :func:`unreadable_checkpoint`); a missing file raises FileNotFoundError."""
    source = os.fspath(path)
    if not os.path.isfile(source):
        raise FileNotFoundError(f"checkpoint file not found: {source}")
    try:
        return torch.load(source, map_location=map_location, weights_only=True)
    except UNREADABLE_ERRORS as error:
        raise unreadable_checkpoint(source, error) from None


_WRAPPER_KEYS = ("state_dict", "model", "network_weights", "model_state_dict", "net", "network")
_PREFIXES = ("module.", "_orig_mod.", "model.", "network.")


def extract_state_dict(checkpoint: Mapping, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The network weights inside a checkpoint dict.

    Accepts a plain state_dict, a dict holding it under 'state_dict' (nnU-Net v1 trainer files, Lightning),
    'model', 'network_weights' (nnU-Net v2), 'model_state_dict', 'net' or 'network' (a bundle training's resume
    file ``last.pt``); strips 'module.' (DataParallel / DDP), '_orig_mod.' (torch.compile) and similar wrapper
    prefixes.
    """
    if not isinstance(checkpoint, Mapping):
        raise TypeError(f"{source}: expected a dict-like checkpoint; got {type(checkpoint).__name__}")
    state = checkpoint
    for _ in range(3):  # wrappers can nest, e.g. {'model': {'state_dict': ...}}
        if any(isinstance(v, torch.Tensor) for v in state.values()):
            break
        inner = next((state[k] for k in _WRAPPER_KEYS if isinstance(state.get(k), Mapping)), None)
        if inner is None:
            raise ValueError(
                f"{source}: no tensors found; top-level keys are {sorted(map(str, state))[:20]} "
                f"(expected a state_dict or one of {_WRAPPER_KEYS})"
            )
        state = inner
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    changed = True
    while changed:
        changed = False
        for prefix in _PREFIXES:
            if tensors and all(k.startswith(prefix) for k in tensors):
                tensors = {k[len(prefix) :]: v for k, v in tensors.items()}
                changed = True
    return tensors


def _num_blocks(state: Mapping[str, torch.Tensor]) -> int:
    indices = [int(m.group(1)) for k in state if (m := re.match(r"layer1\.(\d+)\.", k))]
    return max(indices) + 1 if indices else 0


def infer_network_config(state: Mapping[str, torch.Tensor], source: str = "checkpoint") -> dict:
    """Network class and constructor arguments implied by a state_dict's keys and shapes."""
    if "in_conv.conv.0.weight" not in state:
        raise ValueError(
            f"{source}: not an nnMamba state_dict (no 'in_conv.conv.0.weight'); keys start {list(state)[:8]}"
        )
    first = state["in_conv.conv.0.weight"]
    config = {
        "spatial_dims": first.dim() - 2,
        "in_channels": int(first.shape[1]),
        "channels": int(first.shape[0]),
        "blocks": _num_blocks(state),
    }
    a_log = next((v for k, v in state.items() if k.endswith("mamba.A_log")), None)
    if a_log is not None:
        config["d_state"] = int(a_log.shape[1])
    if "mamba_layer_stem.nin.weight" in state:
        config["out_channels"] = int(state["mlp.3.weight"].shape[0])
        config["hierarchical_ssm"] = "level_mamba.A_log" in state
        return {"class": nnMambaCls, "kwargs": config}
    if "conv8.conv.0.weight" not in state:
        raise ValueError(f"{source}: nnMamba state_dict without a segmentation head 'conv8' or a classification stem")
    config["out_channels"] = int(state["conv8.conv.0.weight"].shape[0])
    config["generation"] = "miccss" if any(".mamba_layer.nin2." in k for k in state) else "mic"
    config["deep_supervision"] = "ds1_cls_conv.weight" in state
    return {"class": nnMambaSeg, "kwargs": config}


def build_network(state: Mapping[str, torch.Tensor], source: str = "checkpoint", **overrides) -> nn.Module:
    """Construct the network a state_dict describes and load it strictly.

    Raises:
        ValueError listing the missing and unexpected keys (and shape mismatches) when it does not fit.
    """
    spec = infer_network_config(state, source)
    kwargs = {**spec["kwargs"], **overrides}
    net = spec["class"](**kwargs)
    expected = net.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs network {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or mismatched:
        raise ValueError(
            f"{source} does not fit {spec['class'].__name__}({kwargs}):\n"
            f"  missing keys ({len(missing)}): {missing[:20]}\n"
            f"  unexpected keys ({len(unexpected)}): {unexpected[:20]}\n"
            f"  shape mismatches ({len(mismatched)}): {mismatched[:20]}"
        )
    net.load_state_dict(state, strict=True)
    return net


def load_authors_checkpoint(
    path_or_state_dict: str | os.PathLike | Mapping, map_location: str | torch.device = "cpu", **overrides
) -> nn.Module:
    """Our nnMamba network, in eval mode, holding the weights of a checkpoint saved by the authors' code.

    Args:
        path_or_state_dict: a file written by ``torch.save`` (plain state_dict, nnU-Net v1 trainer
            checkpoint with 'state_dict', a dict with 'model', DataParallel 'module.' prefixes, ...)
            or such a dict already in memory.
        map_location: where to load the tensors.
        overrides: constructor arguments to set rather than infer (e.g. ``out_relu=False``, ``backend``).

    The generation (MICCSS segmentation, MIC segmentation with deep-supervision heads, classification),
    in/out channels, width, blocks and state size are inferred from the tensors. Files are read with
    ``weights_only=True``: no code inside a checkpoint is executed.
    """
    if isinstance(path_or_state_dict, Mapping):
        source, checkpoint = "state_dict", path_or_state_dict
    else:
        source = os.fspath(path_or_state_dict)
        if not os.path.isfile(source):
            raise FileNotFoundError(f"checkpoint file not found: {source}")
        checkpoint = load_weights_only(source, map_location)
    net = build_network(extract_state_dict(checkpoint, source), source, **overrides)
    return net.eval()

"""Where the bundles are, and the one ``network_def`` of a bundle shared by its train and inference configs.

- :func:`bundles_dir` / :func:`find_bundle`: the bundles ship inside the installed package
  (``nnmamba_monai/bundles``, package data read through ``importlib.resources``); in a source checkout or an
  editable install they are the repository's ``bundles/`` folder.
- :func:`inference_network_def`: ``configs/train.json`` of every bundle builds its network with this one line::

      "network_def": "$nnmamba_monai.bundle_config.inference_network_def(@bundle_root, @network_override)"

  so ``configs/inference.json`` holds the only ``network_def`` dict. ``network_override`` (a dict, empty by
  default) replaces entries of it for one training (``--network_override#channels 8``).
- :func:`write_network_settings` / :data:`NETWORK_SETTINGS`: the network a training built is written next to its
  checkpoint as an override config (``models/network.json`` = ``{"network_def": {...}}``), which
  ``python -m nnmamba_monai.predict`` layers over ``inference.json`` by itself.
"""

from __future__ import annotations

import json
import logging
import os
import weakref
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import torch.nn as nn

from nnmamba_monai.atomic import atomic_write

__all__ = [
    "INFERENCE_CONFIG",
    "NETWORK_SETTINGS",
    "bundles_dir",
    "find_bundle",
    "inference_network_config",
    "inference_network_def",
    "recorded_network_config",
    "write_network_settings",
]

INFERENCE_CONFIG = "configs/inference.json"
NETWORK_SETTINGS = "network.json"  # in the checkpoint folder, beside model.pt

logger = logging.getLogger(__name__)

# network module -> the resolved network_def dict it was built from (for the settings file written beside its weights)
_BUILT: weakref.WeakKeyDictionary[nn.Module, dict] = weakref.WeakKeyDictionary()


def bundles_dir() -> Path:
    """The folder holding the bundles: the package's ``bundles`` data in an installed wheel, else the source
    tree's ``bundles/`` (a checkout, or an editable install)."""
    packaged = resources.files("nnmamba_monai") / "bundles"
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parents[1] / "bundles"


def find_bundle(bundle: str | os.PathLike, required: tuple[str, ...] = (INFERENCE_CONFIG,)) -> Path:
    """A bundle folder: ``bundle`` as a path, else a bundle name under :func:`bundles_dir`.

    Raises FileNotFoundError naming the places looked at and the bundles available.
    """
    candidates = [Path(bundle), bundles_dir() / str(bundle)]
    for candidate in candidates:
        if all((candidate / name).is_file() for name in required):
            return candidate.resolve()
    names = sorted(p.name for p in bundles_dir().glob("*_nnmamba_*") if p.is_dir())
    raise FileNotFoundError(
        f"bundle {str(bundle)!r} not found (looked for {', '.join(required)} in "
        f"{', '.join(str(c) for c in candidates)}); bundles: {', '.join(names) or 'none'}"
    )


def inference_network_config(
    bundle_root: str | os.PathLike, override: Mapping[str, Any] | None = None, **references: Any
) -> dict[str, Any]:
    """The ``network_def`` dict of ``<bundle_root>/configs/inference.json`` with its references resolved.

    Args:
        bundle_root: the bundle folder (any current directory works).
        override: entries replacing those of the dict (e.g. ``{"channels": 8}``).
        references: values for ids of inference.json that ``network_def`` refers to (e.g. ``num_classes=2``),
            so that the training config's value of an id is the one used.
    """
    from monai.bundle import ConfigParser

    path = Path(bundle_root) / INFERENCE_CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the training config builds its network from it (bundle_root?)")
    parser = ConfigParser()
    parser.read_config(str(path))
    parser.update(references)
    raw = parser.get("network_def")
    if not isinstance(raw, Mapping) or "_target_" not in raw:
        raise ValueError(f"{path}: 'network_def' is not a component with a _target_")
    config: dict[str, Any] = {}
    for key, value in raw.items():
        is_reference = isinstance(value, str) and value[:1] in ("@", "$", "%")
        config[key] = parser.get_parsed_content(f"network_def::{key}") if is_reference else value
    config.update(dict(override or {}))
    return config


def inference_network_def(
    bundle_root: str | os.PathLike, override: Mapping[str, Any] | None = None, **references: Any
) -> nn.Module:
    """The network of :func:`inference_network_config`, instantiated (what ``network_def`` is in train.json)."""
    from monai.bundle import ConfigParser

    config = inference_network_config(bundle_root, override, **references)
    network = ConfigParser({"network_def": config}).get_parsed_content("network_def")
    _BUILT[network] = config
    return network


def recorded_network_config(network: nn.Module) -> dict[str, Any] | None:
    """The ``network_def`` dict :func:`inference_network_def` built ``network`` from (None for other networks;
    a DistributedDataParallel wrapper is looked through)."""
    return _BUILT.get(getattr(network, "module", network))


def write_network_settings(ckpt_dir: str | os.PathLike, network: nn.Module) -> Path | None:
    """Write ``<ckpt_dir>/network.json`` (``{"network_def": {...}}``) for a network built by
    :func:`inference_network_def`; returns its path, or None (with a warning) for a network built otherwise
    (a whole ``network_def`` replaced on the command line: pass the same replacement at inference)."""
    config = recorded_network_config(network)
    if config is None:
        logger.warning(f"network settings not written to {ckpt_dir}: network_def was not built from inference.json")
        return None
    text = json.dumps({"network_def": config}, indent=4) + "\n"
    return atomic_write(Path(ckpt_dir) / NETWORK_SETTINGS, lambda stream: stream.write(text.encode()))

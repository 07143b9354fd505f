"""Stop training with a clear message on non-finite inputs or loss, before anything is saved."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events

from nnmamba_monai.datalist.schema import validate_entries
from nnmamba_monai.refusal import RefusalError, install_excepthook

__all__ = ["NonFiniteGuard", "NonFiniteError"]


class NonFiniteError(RefusalError, FloatingPointError):
    """Raised by :class:`NonFiniteGuard`; the message names the epoch, iteration and input files."""


def _names_in_meta(meta: Any) -> list[str]:
    names = meta.get("filename_or_obj") if isinstance(meta, Mapping) else None
    if names is None:
        return []
    if isinstance(names, (str, Path)):
        return [str(names)]
    if isinstance(names, np.ndarray):
        names = names.tolist()
    if isinstance(names, Sequence):
        return [str(n) for n in names if n not in (None, "")]
    return []


def _filenames(batch: Any, key: str) -> list[str]:
    """Source file names of the batch whatever shape MONAI gives it.

    Handles a collated dict (``key`` a MetaTensor whose ``meta["filename_or_obj"]`` lists the files, or
    ``<key>_meta_dict``), a list of per-sample dicts (MONAI decollates the batch after each iteration, before the
    loss check runs), a (image, label) tuple of MetaTensors, and a bare MetaTensor. When ``key`` carries no
    names, any other key's are used.
    """
    if isinstance(batch, Mapping):
        value = batch.get(key)
        names = _names_in_meta(getattr(value, "meta", None)) or _names_in_meta(batch.get(f"{key}_meta_dict"))
        if not names:  # the key lost its meta data: the first other key that has file names
            others = (k for k in batch if k != key and not str(k).endswith("_meta_dict"))
            names = next((n for k in others if (n := _names_in_meta(getattr(batch[k], "meta", None)))), [])
        return names
    if isinstance(batch, torch.Tensor):
        return _names_in_meta(getattr(batch, "meta", None))
    if isinstance(batch, (list, tuple)):
        names = [name for item in batch for name in _filenames(item, key)]
        return list(dict.fromkeys(names))  # keep order, drop repeats (e.g. image and label of one case)
    return []


def _loaded_keys(transform: Any) -> list[str]:
    """Keys a dataset's transforms load from each entry (``LoadImaged`` keys not marked ``allow_missing_keys``):
    the keys every entry must hold, since no earlier transform can have made them."""
    from monai.transforms import Compose, LoadImaged

    keys: list[str] = []
    for item in transform.transforms if isinstance(transform, Compose) else [transform]:
        if isinstance(item, Compose):
            keys += _loaded_keys(item)
        elif isinstance(item, LoadImaged) and not item.allow_missing_keys:
            keys += [str(k) for k in item.keys]
    return list(dict.fromkeys(keys))


def check_training_entries(engine: Engine, image_keys: Sequence[str]) -> None:
    """Raise :class:`~nnmamba_monai.datalist.schema.DatalistSchemaError` naming the entry and key when an entry of
    the trainer's dataset lacks a key its transforms load (or an image key): the cheap structural check, run even
    when a bundle's data check is switched off, instead of a ``KeyError`` in a data-loader worker later."""
    dataset = getattr(getattr(engine, "data_loader", None), "dataset", None)
    entries = getattr(dataset, "data", None)
    if not isinstance(entries, Sequence) or not entries or not all(isinstance(e, Mapping) for e in entries):
        return
    required = list(dict.fromkeys([*image_keys, *_loaded_keys(getattr(dataset, "transform", None))]))
    validate_entries(list(entries), required, "training datalist")


class NonFiniteGuard:
    """Check each batch's inputs before the step and the loss after it; raise :class:`NonFiniteError`.

    Raising before the epoch ends means the rolling checkpoint on disk stays the last good one.

    Args:
        image_keys: batch keys whose tensors must be finite (e.g. ["image"]).
        loss_key: key of the loss in ``engine.state.output`` (MONAI: "loss").
    """

    def __init__(self, image_keys: Sequence[str] = ("image",), loss_key: str = "loss") -> None:
        self.image_keys = list(image_keys)
        self.loss_key = loss_key
        self._batch_files: list[str] = []

    def attach(self, engine: Engine) -> None:
        """Check the trainer's datalist entries hold the keys its transforms load, then guard every iteration."""
        install_excepthook()
        check_training_entries(engine, self.image_keys)
        engine.add_event_handler(Events.ITERATION_STARTED, self.check_inputs)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.check_loss)

    def _where(self, engine: Engine) -> str:
        return f"epoch {engine.state.epoch}, iteration {engine.state.iteration}"

    def check_inputs(self, engine: Engine) -> None:
        batch = engine.state.batch
        # the names are read here, from the collated batch; MONAI may have reshaped it by the loss check
        self._batch_files = _filenames(batch, self.image_keys[0]) if self.image_keys else []
        for key in self.image_keys:
            value = batch.get(key) if isinstance(batch, Mapping) else None
            if isinstance(value, torch.Tensor) and value.is_floating_point() and not torch.isfinite(value).all():
                bad = int((~torch.isfinite(value)).sum())
                files = _filenames(batch, key) or ["<file names unknown>"]
                raise NonFiniteError(
                    f"{bad} NaN/Inf values in batch key '{key}' at {self._where(engine)}; input files: "
                    f"{', '.join(files)}. Fix or exclude these cases (python -m nnmamba_monai.check_data finds "
                    "them); training stopped, the last checkpoint on disk is the last good one."
                )

    def check_loss(self, engine: Engine) -> None:
        output = engine.state.output
        if isinstance(output, Sequence) and output and isinstance(output[0], Mapping):
            output = output[0]
        loss = output.get(self.loss_key) if isinstance(output, Mapping) else output
        if loss is None:
            return
        value = float(loss.detach().float().mean()) if isinstance(loss, torch.Tensor) else float(loss)
        if not math.isfinite(value):
            key = self.image_keys[0] if self.image_keys else "image"
            files = _filenames(engine.state.batch, key) or self._batch_files
            shown = ", ".join(files) or "file names not recorded in the batch (no MetaTensor meta data)"
            raise NonFiniteError(
                f"loss is {value} at {self._where(engine)} (inputs: {shown}). "
                "Lower the learning rate, check the data, or try bf16/fp32 instead of fp16; training stopped, "
                "the last checkpoint on disk is the last good one."
            )

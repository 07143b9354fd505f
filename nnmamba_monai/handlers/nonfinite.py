"""Stop training with a clear message on non-finite inputs or loss, before anything is saved."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from ignite.engine import Engine, Events

__all__ = ["NonFiniteGuard", "NonFiniteError"]


class NonFiniteError(FloatingPointError):
    """Raised by :class:`NonFiniteGuard`; the message names the epoch, iteration and input files."""


def _filenames(batch: Any, key: str) -> list[str]:
    """Source file names of a collated MONAI batch (from MetaTensor meta or ``<key>_meta_dict``)."""
    if not isinstance(batch, Mapping):
        return []
    value = batch.get(key)
    meta = getattr(value, "meta", None) or batch.get(f"{key}_meta_dict") or {}
    names = meta.get("filename_or_obj", []) if isinstance(meta, Mapping) else []
    if isinstance(names, str):
        names = [names]
    return [str(n) for n in names] if isinstance(names, Sequence) else []


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

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_STARTED, self.check_inputs)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.check_loss)

    def _where(self, engine: Engine) -> str:
        return f"epoch {engine.state.epoch}, iteration {engine.state.iteration}"

    def check_inputs(self, engine: Engine) -> None:
        batch = engine.state.batch
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
            files = _filenames(engine.state.batch, self.image_keys[0]) if self.image_keys else []
            raise NonFiniteError(
                f"loss is {value} at {self._where(engine)} (inputs: {', '.join(files) or 'unknown'}). "
                "Lower the learning rate, check the data, or try bf16/fp32 instead of fp16; training stopped, "
                "the last checkpoint on disk is the last good one."
            )

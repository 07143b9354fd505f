"""Per-epoch training record: one progress line per epoch and a JSON file the figures read back."""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events

__all__ = ["EpochHistory", "read_history"]

LOGGER_NAME = "nnmamba_monai.demo"


def _as_float(value: Any) -> float | None:
    if isinstance(value, torch.Tensor):
        value = value.detach().float().mean().item()
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


class EpochHistory:
    """Ignite handler for a MONAI ``SupervisedTrainer``: mean loss, learning rate and validation metrics per epoch.

    Attach it after the ``ValidationHandler`` (later in the bundle's ``train#handlers`` list) so that, on a
    validation epoch, the validator's metrics are already computed when the epoch is recorded. After every
    epoch it logs one line (logger ``nnmamba_monai.demo``) and rewrites ``path`` with the whole history:
    ``{"epochs": [{"epoch", "loss", "lr", "seconds", "train_<metric>"..., "val_<metric>"...}, ...]}``.

    Args:
        path: JSON file to (re)write after every epoch.
        validator: the evaluator run by the ``ValidationHandler``; None records training values only.
        loss_key: key of the loss in ``engine.state.output`` (a dict per sample, or a list of them).
    """

    def __init__(self, path: str | Path, validator: Engine | None = None, loss_key: str = "loss") -> None:
        self.path = Path(path)
        self.validator = validator
        self.loss_key = loss_key
        self.records: list[dict[str, float]] = []
        self._losses: list[float] = []
        self._started = 0.0
        self._lr: float | None = None
        self.logger = logging.getLogger(LOGGER_NAME)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self._epoch_started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._iteration_completed)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._epoch_completed)

    def _epoch_started(self, engine: Engine) -> None:
        self._losses = []
        self._started = time.perf_counter()
        optimizer = getattr(engine, "optimizer", None)
        self._lr = float(optimizer.param_groups[0]["lr"]) if optimizer is not None else None

    def _iteration_completed(self, engine: Engine) -> None:
        output = engine.state.output
        items = output if isinstance(output, (list, tuple)) else [output]
        for item in items:
            if isinstance(item, dict) and self.loss_key in item:
                loss = _as_float(item[self.loss_key])
                if loss is not None:
                    self._losses.append(loss)
                break  # the loss is the same for every sample of a batch

    def _epoch_completed(self, engine: Engine) -> None:
        epoch = engine.state.epoch
        record: dict[str, float] = {"epoch": epoch, "seconds": time.perf_counter() - self._started}
        if self._losses:
            record["loss"] = sum(self._losses) / len(self._losses)
        if self._lr is not None:
            record["lr"] = self._lr
        for name, value in engine.state.metrics.items():
            if (number := _as_float(value)) is not None:
                record[name if name.startswith("train") else f"train_{name}"] = number
        validated = self.validator is not None and self.validator.state.epoch == epoch
        missing = []
        if validated:
            for name, value in self.validator.state.metrics.items():
                key = name if name.startswith("val") else f"val_{name}"
                if (number := _as_float(value)) is not None:
                    record[key] = number
                else:  # e.g. HD95 of empty predictions: no distance, which 0 mm would show as perfect
                    missing.append(key)
        self.records.append(record)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps({"epochs": self.records}, indent=1))
        self.logger.info(self._line(record, engine.state.max_epochs, missing))

    @staticmethod
    def _line(record: dict[str, float], max_epochs: int | None, missing: Sequence[str] = ()) -> str:
        parts = [f"epoch {record['epoch']:>3d}/{max_epochs}"]
        if "loss" in record:
            parts.append(f"loss {record['loss']:.4f}")
        if "lr" in record:
            parts.append(f"lr {record['lr']:.2e}")
        parts += [f"{name} {value:.4f}" for name, value in record.items() if name.startswith(("train_", "val_"))]
        parts += [f"{name} n/a" for name in missing]
        parts.append(f"({record['seconds']:.1f} s)")
        return "  ".join(parts)


def read_history(path: str | Path) -> list[dict[str, float]]:
    """The per-epoch records written by :class:`EpochHistory` (oldest first)."""
    return json.loads(Path(path).read_text())["epochs"]

"""Resumable training: an atomically written rolling "last" checkpoint and the handler that restores it.

MONAI's ``CheckpointSaver`` writes in place (``atomic=False``), so a run killed during a save can leave a
truncated file that no longer loads. :class:`AtomicCheckpointSaver` writes to a temporary file in the same
folder, flushes it to disk and renames it over the previous checkpoint (``os.replace`` is atomic on POSIX
and Windows): at any instant ``last.pt`` is either the previous complete checkpoint or the new one.

:class:`CheckpointResumer` restores every object (network, optimizer, scheduler, scaler, trainer state,
RNG states) at ``Events.STARTED``; ignite then continues from the saved epoch and iteration. Files are read
with ``weights_only=True``.
"""

from __future__ import annotations

import logging
import os
import random
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events

__all__ = ["AtomicCheckpointSaver", "CheckpointResumer", "RNGState", "atomic_torch_save"]

logger = logging.getLogger(__name__)


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file beside ``path``, fsync, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as stream:
            torch.save(obj, stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
        raise


class RNGState:
    """Python, NumPy and torch (CPU and CUDA) random generator states as a state_dict of tensors and ints.

    Put it in a checkpoint's objects so a resumed run draws the same random augmentations it would have.
    """

    def state_dict(self) -> dict[str, Any]:
        version, mt_state, gauss = random.getstate()
        np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
        state = {
            "python": {"version": version, "state": list(mt_state), "gauss": gauss},
            "numpy": {
                "name": np_name,
                "keys": torch.from_numpy(np_keys.astype(np.int64)),
                "pos": int(np_pos),
                "has_gauss": int(np_has_gauss),
                "gauss": float(np_gauss),
            },
            "torch": torch.get_rng_state(),
        }
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        py = state["python"]
        random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
        npst = state["numpy"]
        keys = npst["keys"].numpy().astype(np.uint32)
        np.random.set_state((npst["name"], keys, npst["pos"], npst["has_gauss"], npst["gauss"]))
        torch.set_rng_state(state["torch"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


class AtomicCheckpointSaver:
    """Write ``save_dict``'s state_dicts to ``<save_dir>/<filename>`` atomically after every epoch.

    Args:
        save_dir: folder of the checkpoint.
        save_dict: name -> object with ``state_dict()`` (network, optimizer, lr_scheduler, scaler, trainer,
            RNGState, ...). The trainer entry carries epoch and iteration.
        filename: the rolling checkpoint's file name.
        save_interval: save every this many epochs (``epoch_level``) or iterations.
        epoch_level: count epochs (True) or iterations (False).
    """

    def __init__(
        self,
        save_dir: str,
        save_dict: Mapping[str, Any],
        filename: str = "last.pt",
        save_interval: int = 1,
        epoch_level: bool = True,
    ) -> None:
        if save_interval < 1:
            raise ValueError(f"save_interval must be >= 1; got {save_interval}")
        self.path = Path(save_dir) / filename
        self.save_dict = dict(save_dict)
        self.save_interval = save_interval
        self.epoch_level = epoch_level

    def attach(self, engine: Engine) -> None:
        # temporary files of a save that was killed mid-way are useless: remove them
        for stale in self.path.parent.glob(f".{self.path.name}.*.tmp"):
            stale.unlink(missing_ok=True)
        event = Events.EPOCH_COMPLETED if self.epoch_level else Events.ITERATION_COMPLETED
        engine.add_event_handler(event(every=self.save_interval), self)

    def __call__(self, engine: Engine) -> None:
        state = {name: obj.state_dict() for name, obj in self.save_dict.items() if obj is not None}
        atomic_torch_save(state, self.path)
        logger.info(f"saved checkpoint {self.path} (epoch {engine.state.epoch}, iteration {engine.state.iteration})")


class CheckpointResumer:
    """Restore a checkpoint written by :class:`AtomicCheckpointSaver` when training starts.

    Args:
        load_path: the checkpoint file; when it does not exist and ``missing_ok`` is True, training starts
            from scratch (logged), otherwise FileNotFoundError.
        load_dict: name -> object with ``load_state_dict`` (same names as at saving).
        missing_ok: see ``load_path``.
        map_location: passed to ``torch.load``.
    """

    def __init__(
        self,
        load_path: str,
        load_dict: Mapping[str, Any],
        missing_ok: bool = True,
        map_location: str | torch.device = "cpu",
    ) -> None:
        self.load_path = Path(load_path)
        self.load_dict = dict(load_dict)
        self.missing_ok = missing_ok
        self.map_location = map_location

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self)

    def __call__(self, engine: Engine) -> None:
        if not self.load_path.is_file():
            if self.missing_ok:
                logger.info(f"no checkpoint at {self.load_path}: training starts from scratch")
                return
            raise FileNotFoundError(f"resume requested but no checkpoint at {self.load_path}")
        state = torch.load(self.load_path, map_location=self.map_location, weights_only=True)
        missing = [name for name in self.load_dict if name not in state]
        if missing:
            raise KeyError(f"{self.load_path} lacks {missing}; it holds {sorted(state)}")
        for name, obj in self.load_dict.items():
            if obj is None:
                continue
            if isinstance(obj, Engine):
                max_epochs = engine.state.max_epochs  # keep the configured length of the run
                obj.load_state_dict(state[name])
                obj.state.max_epochs = max(max_epochs, obj.state.epoch)
            else:
                obj.load_state_dict(state[name])
        logger.info(f"resumed from {self.load_path} at epoch {engine.state.epoch}, iteration {engine.state.iteration}")

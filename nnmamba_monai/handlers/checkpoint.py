"""Resumable training: an atomically written rolling "last" checkpoint and the handler that restores it.

Why not ignite's ``Checkpoint``/``DiskSaver`` (or MONAI's ``CheckpointSaver``, built on them) for the rolling file:
MONAI's saver writes in place (``atomic=False``), and ignite's ``Checkpoint`` removes the previous file *before*
writing the next one once ``n_saved`` files exist, so a run killed in between has no checkpoint at all.
:class:`AtomicCheckpointSaver` keeps one fixed name (``last.pt``): it writes a temporary file in the same folder,
fsyncs it and renames it over the previous checkpoint (``os.replace`` is atomic on POSIX and Windows), so at any
instant ``last.pt`` is the previous complete checkpoint or the new one. It also refuses to write a network with
NaN/Inf weights, so the file on disk stays the last good state. When attached it takes the folder's
:class:`~nnmamba_monai.folder_lock.FolderLock`: a second training into the same folder stops at once with a
message naming the first (pid, host, start time) instead of replacing its checkpoints; the lock of a killed run
is taken over.

Restoring uses MONAI's ``CheckpointLoader`` (``weights_only=True``, ignite's ``Checkpoint.load_objects``, which
also unwraps DistributedDataParallel); :class:`CheckpointResumer` only adds "no file yet: start from scratch",
skips objects that are None in this run (e.g. the GradScaler without AMP) and turns a file torch refuses into a
one-line :class:`~nnmamba_monai.checkpoint.CheckpointLoadError` (never with torch's advice to load it unsafely).
"""

from __future__ import annotations

import logging
import pickle
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.handlers import CheckpointLoader

from nnmamba_monai.atomic import atomic_torch_save, remove_stale_temporaries
from nnmamba_monai.bundle_config import recorded_network_config, write_network_settings
from nnmamba_monai.checkpoint import unreadable_checkpoint
from nnmamba_monai.folder_lock import FolderLock
from nnmamba_monai.handlers.nonfinite import NonFiniteError
from nnmamba_monai.refusal import install_excepthook

__all__ = ["AtomicCheckpointSaver", "CheckpointResumer", "RNGState", "TrainerScalerState", "atomic_torch_save"]

logger = logging.getLogger(__name__)


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


def unwrap_parallel(obj: Any) -> Any:
    """The module inside DataParallel/DistributedDataParallel (checkpoints then load with or without DDP)."""
    parallel = (torch.nn.DataParallel, torch.nn.parallel.DistributedDataParallel)
    return obj.module if isinstance(obj, parallel) else obj


def _non_finite_parameters(module: torch.nn.Module) -> list[str]:
    return [
        name for name, value in module.state_dict().items() if value.is_floating_point() and not value.isfinite().all()
    ]


class AtomicCheckpointSaver:
    """Write ``save_dict``'s state_dicts to ``<save_dir>/<filename>`` atomically every N epochs and/or iterations.

    Args:
        save_dir: folder of the checkpoint.
        save_dict: name -> object with ``state_dict()`` (network, optimizer, lr_scheduler, scaler, trainer,
            RNGState, ...); None values are skipped. The trainer entry carries epoch and iteration.
            DataParallel/DDP networks are saved unwrapped.
        filename: the rolling checkpoint's file name.
        epoch_interval: save every this many epochs (0: never at epoch ends).
        iteration_interval: also save every this many iterations (0: never mid-epoch).

    Raises:
        FolderLockedError: (at attach) another run holds ``save_dir``.
        NonFiniteError: (at save time) a network in ``save_dict`` has NaN/Inf weights; the previous file is kept.
    """

    def __init__(
        self,
        save_dir: str,
        save_dict: Mapping[str, Any],
        filename: str = "last.pt",
        epoch_interval: int = 1,
        iteration_interval: int = 0,
    ) -> None:
        if epoch_interval < 0 or iteration_interval < 0 or not (epoch_interval or iteration_interval):
            raise ValueError(
                f"need epoch_interval or iteration_interval >= 1; got {epoch_interval}, {iteration_interval}"
            )
        self.path = Path(save_dir) / filename
        self.save_dict = dict(save_dict)
        self.epoch_interval = epoch_interval
        self.iteration_interval = iteration_interval
        self.lock = FolderLock(self.path.parent)

    def attach(self, engine: Engine) -> None:
        """Lock the folder, remove temporary files of killed runs, save on the configured events; the lock is
        released when the engine completes (or the process ends, however it ends). Also writes the network's
        settings beside the checkpoint (``network.json``, see :mod:`nnmamba_monai.bundle_config`)."""
        install_excepthook()
        self.lock.acquire()
        remove_stale_temporaries(self.path)
        self._write_network_settings()
        engine.add_event_handler(Events.COMPLETED, self.lock.release)
        if self.epoch_interval:
            engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.epoch_interval), self)
        if self.iteration_interval:
            engine.add_event_handler(Events.ITERATION_COMPLETED(every=self.iteration_interval), self)

    def _write_network_settings(self) -> None:
        """``<save_dir>/network.json`` for the network in ``save_dict`` built from the bundle's inference.json."""
        unwrapped = (unwrap_parallel(obj) for obj in self.save_dict.values())
        networks = [obj for obj in unwrapped if isinstance(obj, torch.nn.Module)]
        recorded = [net for net in networks if recorded_network_config(net) is not None]
        if networks:
            write_network_settings(self.path.parent, (recorded or networks)[0])

    def __call__(self, engine: Engine) -> None:
        objects = {name: unwrap_parallel(obj) for name, obj in self.save_dict.items() if obj is not None}
        for name, obj in objects.items():
            bad = _non_finite_parameters(obj) if isinstance(obj, torch.nn.Module) else []
            if bad:
                raise NonFiniteError(
                    f"'{name}' has NaN/Inf in {bad[:5]} at epoch {engine.state.epoch}, iteration "
                    f"{engine.state.iteration}: not overwriting {self.path}, which keeps the last good state"
                )
        atomic_torch_save({name: obj.state_dict() for name, obj in objects.items()}, self.path)
        logger.info(f"saved checkpoint {self.path} (epoch {engine.state.epoch}, iteration {engine.state.iteration})")


class CheckpointResumer(CheckpointLoader):
    """MONAI's ``CheckpointLoader`` (at ``Events.STARTED``, ``weights_only=True``) for the rolling checkpoint.

    Args:
        load_path: the checkpoint file; when it does not exist and ``missing_ok`` is True, training starts
            from scratch (logged), otherwise FileNotFoundError.
        load_dict: name -> object with ``load_state_dict`` (same names as at saving); None values are skipped.
        missing_ok: see ``load_path``.
        map_location: passed to ``torch.load`` (e.g. the rank's device in multi-GPU runs).
    """

    def __init__(
        self,
        load_path: str,
        load_dict: Mapping[str, Any],
        missing_ok: bool = True,
        map_location: str | torch.device | dict | None = "cpu",
    ) -> None:
        objects = {name: obj for name, obj in load_dict.items() if obj is not None}
        super().__init__(load_path=str(load_path), load_dict=objects, name=__name__, map_location=map_location)
        self.missing_ok = missing_ok

    def __call__(self, engine: Engine) -> None:
        path = Path(self.load_path)
        if not path.is_file():
            if self.missing_ok:
                self.logger.info(f"no checkpoint at {path}: training starts from scratch")
                return
            raise FileNotFoundError(f"resume requested but no checkpoint at {path}")
        install_excepthook()
        try:
            super().__call__(engine)
        except (pickle.UnpicklingError, EOFError) as error:  # torch.load refused or hit the end of a short file
            raise unreadable_checkpoint(str(path), error) from None
        self.logger.info(f"resumed from {path} at epoch {engine.state.epoch}, iteration {engine.state.iteration}")


class TrainerScalerState:
    """The GradScaler of a MONAI trainer as a checkpoint object, looked up when saving or loading.

    MONAI's ``Trainer.run`` creates ``trainer.scaler`` (AMP only), after a config has built the checkpoint's
    objects, so the scaler itself cannot be listed there. Without AMP the state is empty and loading ignores it.
    """

    def __init__(self, trainer: Any) -> None:
        self.trainer = trainer

    def state_dict(self) -> dict[str, Any]:
        scaler = getattr(self.trainer, "scaler", None)
        return scaler.state_dict() if scaler is not None else {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        scaler = getattr(self.trainer, "scaler", None)
        if scaler is not None and state:
            scaler.load_state_dict(dict(state))

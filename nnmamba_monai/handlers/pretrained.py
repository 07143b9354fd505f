"""Fine-tuning: start a training from the network weights of another checkpoint.

A bundle's ``train.json`` lists :class:`PretrainedWeightsLoader` in ``train#handlers`` with ``load_path`` set to the
config's ``pretrained_ckpt`` (null: train from scratch, the handler does nothing). The file may be a bundle's
``models/model.pt``, a training's ``last.pt`` (its network weights only), a checkpoint converted with
``nnmamba_monai.convert_checkpoint``, or any file that ``torch.load(weights_only=True)`` reads and
:func:`~nnmamba_monai.checkpoint.extract_state_dict` finds a state_dict in (an authors' trainer file that needs
more than tensors is refused with a pointer to ``convert_checkpoint``). Tensors are matched by name and shape
with MONAI's ``copy_model_state``, so a network with another number of input channels or labels takes every
weight that fits and keeps its own initialisation for the rest (the first convolution, the output layer); the
log names each tensor left out and why. A file that fits less than ``min_loaded_fraction`` of the network's
tensors is refused: it was made for another network.

The weights are copied when the first epoch starts, and only at iteration 0: a run resumed from ``last.pt``
(``resume``) continues from its own weights and optimizer state, whichever order the handlers were attached in.
Only the network's weights are taken; the optimizer, learning-rate schedule and epoch count start afresh.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence

import torch
import torch.nn as nn
from ignite.engine import Engine, Events
from monai.networks.utils import copy_model_state

from nnmamba_monai.checkpoint import extract_state_dict, load_weights_only
from nnmamba_monai.handlers.checkpoint import unwrap_parallel
from nnmamba_monai.refusal import RefusalError, install_excepthook

__all__ = [
    "PretrainedWeightsError",
    "PretrainedWeightsLoader",
    "PretrainedWeightsNotFoundError",
    "load_pretrained_weights",
]

logger = logging.getLogger(__name__)

LISTED = 40  # tensors named in a refusal's details


class PretrainedWeightsError(RefusalError, ValueError):
    """A pretrained checkpoint that does not fit the network; the message names the file and what is missing."""


class PretrainedWeightsNotFoundError(RefusalError, FileNotFoundError):
    """``pretrained_ckpt`` names a file that does not exist; a bundle run ends with this one line."""


def _left_out(
    network_state: Mapping[str, torch.Tensor], source_state: Mapping[str, torch.Tensor], updated: set[str]
) -> list[str]:
    """One line per network tensor that kept its initialisation: absent from the file, or of another shape."""
    lines = []
    for name, tensor in network_state.items():
        if name in updated:
            continue
        if name in source_state:
            lines.append(f"{name}: file {tuple(source_state[name].shape)}, network {tuple(tensor.shape)}")
        else:
            lines.append(f"{name}: not in the file")
    return lines


def load_pretrained_weights(
    network: nn.Module,
    load_path: str | os.PathLike,
    min_loaded_fraction: float = 0.5,
    map_location: str | torch.device | None = "cpu",
) -> tuple[list[str], list[str]]:
    """Copy the tensors of ``load_path`` that match ``network``'s by name and shape into it, in place.

    Args:
        network: the network to update (DataParallel / DistributedDataParallel are unwrapped).
        load_path: a checkpoint file (see the module docstring for the forms read; ``weights_only=True``).
        min_loaded_fraction: refuse the file when fewer than this fraction of the network's tensors match.
        map_location: passed to ``torch.load``.

    Returns:
        (loaded, left_out): the names of the tensors copied, and one line per tensor that kept its value.

    Raises:
        FileNotFoundError: ``load_path`` does not exist.
        CheckpointLoadError: torch cannot read it as a plain checkpoint of tensors.
        PretrainedWeightsError: too few tensors match (the message counts them and names the first misses).
    """
    source = os.fspath(load_path)
    state = extract_state_dict(load_weights_only(source, map_location), source)
    module = unwrap_parallel(network)
    # the network's state with the file's matching tensors in place (only same-shape tensors are copied, so its
    # shapes are the network's); nothing is loaded yet
    merged, updated, _ = copy_model_state(module, state, inplace=False)
    left_out = _left_out(merged, state, set(updated))
    if len(updated) < min_loaded_fraction * len(merged):  # refused before the network is touched
        more = f"\n... and {len(left_out) - LISTED} more" if len(left_out) > LISTED else ""
        raise PretrainedWeightsError(
            f"{source} fits {len(updated)} of the network's {len(merged)} tensors (at least "
            f"{min_loaded_fraction:.0%} must match by name and shape): it was saved from another network "
            f"(first misses: {'; '.join(left_out[:3])})\n" + "\n".join(left_out[:LISTED]) + more
        )
    module.load_state_dict(merged)
    return sorted(updated), left_out


class PretrainedWeightsLoader:
    """Ignite handler: at the start of a fresh training, copy a pretrained checkpoint's weights into the network.

    Args:
        load_path: the checkpoint; None leaves the network as initialised (training from scratch).
        network: the trained network (``@network``; may be wrapped in DistributedDataParallel).
        min_loaded_fraction: see :func:`load_pretrained_weights`.
        map_location: passed to ``torch.load`` (the run's device).
        run_outputs: the checkpoint files this training writes (its ``model.pt``, ``last.pt``).

    Refused when the handler is made (when the config builds the trainer, before it runs): a missing file, and
    a file among ``run_outputs``, which the run would overwrite with its own weights (fine-tuning a bundle's
    ``models/model.pt`` into that same ``models/`` folder would lose the weights it started from).
    """

    def __init__(
        self,
        load_path: str | os.PathLike | None,
        network: nn.Module,
        min_loaded_fraction: float = 0.5,
        map_location: str | torch.device | None = "cpu",
        run_outputs: Sequence[str | os.PathLike] = (),
    ) -> None:
        if not 0.0 <= min_loaded_fraction <= 1.0:
            raise ValueError(f"min_loaded_fraction must lie in [0, 1]; got {min_loaded_fraction}")
        self.load_path = None if load_path in (None, "") else os.fspath(load_path)
        if self.load_path is not None:
            install_excepthook()
            if not os.path.isfile(self.load_path):
                raise PretrainedWeightsNotFoundError(f"pretrained_ckpt: checkpoint file not found: {self.load_path}")
            if os.path.realpath(self.load_path) in {os.path.realpath(path) for path in run_outputs}:
                raise PretrainedWeightsError(
                    f"pretrained_ckpt {self.load_path} is a file this training writes, so the run would overwrite "
                    "the weights it starts from: give the run another --ckpt_dir (or copy the file elsewhere)"
                )
        self.network = network
        self.min_loaded_fraction = min_loaded_fraction
        self.map_location = map_location

    def attach(self, engine: Engine) -> None:
        if self.load_path is not None:
            engine.add_event_handler(Events.EPOCH_STARTED(once=1), self)

    def __call__(self, engine: Engine) -> None:
        if engine.state.iteration > 0:  # resumed inside the first epoch: last.pt's weights stay
            logger.info(f"resumed run: the weights of {self.load_path} are not applied")
            return
        install_excepthook()
        loaded, left_out = load_pretrained_weights(
            self.network, self.load_path, self.min_loaded_fraction, self.map_location
        )
        total = len(loaded) + len(left_out)
        logger.info(f"fine-tuning from {self.load_path}: {len(loaded)} of {total} network tensors loaded")
        for line in left_out:
            logger.warning(f"kept at initialisation (no match in {self.load_path}): {line}")

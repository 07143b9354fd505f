"""Ignite handlers the bundles use beyond MONAI's: resumable atomic checkpoints, non-finite guards,
the landmark mean radial error."""

from nnmamba_monai.handlers.checkpoint import (
    AtomicCheckpointSaver,
    CheckpointResumer,
    RNGState,
    TrainerScalerState,
    atomic_torch_save,
)
from nnmamba_monai.handlers.nonfinite import NonFiniteError, NonFiniteGuard
from nnmamba_monai.handlers.radial_error import MeanRadialError

__all__ = [
    "AtomicCheckpointSaver",
    "CheckpointResumer",
    "MeanRadialError",
    "NonFiniteError",
    "NonFiniteGuard",
    "RNGState",
    "TrainerScalerState",
    "atomic_torch_save",
]

"""Ignite handlers the bundles use beyond MONAI's: resumable atomic checkpoints, non-finite guards."""

from nnmamba_monai.handlers.checkpoint import AtomicCheckpointSaver, CheckpointResumer, RNGState, atomic_torch_save
from nnmamba_monai.handlers.nonfinite import NonFiniteError, NonFiniteGuard

__all__ = [
    "AtomicCheckpointSaver",
    "CheckpointResumer",
    "NonFiniteError",
    "NonFiniteGuard",
    "RNGState",
    "atomic_torch_save",
]

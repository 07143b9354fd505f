"""Ignite handlers the bundles use beyond MONAI's: resumable atomic checkpoints, fine-tuning from pretrained
weights, non-finite guards, the landmark mean radial error, per-region segmentation metrics."""

from nnmamba_monai.handlers.checkpoint import (
    AtomicCheckpointSaver,
    CheckpointResumer,
    RNGState,
    TrainerScalerState,
    atomic_torch_save,
)
from nnmamba_monai.handlers.nonfinite import NonFiniteError, NonFiniteGuard
from nnmamba_monai.handlers.pretrained import (
    PretrainedWeightsError,
    PretrainedWeightsLoader,
    PretrainedWeightsNotFoundError,
    load_pretrained_weights,
)
from nnmamba_monai.handlers.radial_error import MeanRadialError
from nnmamba_monai.handlers.region_metrics import region_metric_handlers

__all__ = [
    "AtomicCheckpointSaver",
    "CheckpointResumer",
    "MeanRadialError",
    "NonFiniteError",
    "NonFiniteGuard",
    "PretrainedWeightsError",
    "PretrainedWeightsLoader",
    "PretrainedWeightsNotFoundError",
    "RNGState",
    "TrainerScalerState",
    "atomic_torch_save",
    "load_pretrained_weights",
    "region_metric_handlers",
]

"""Data utilities MONAI does not provide."""

from nnmamba_monai.data.csv_saver import HeaderCSVSaver
from nnmamba_monai.data.distributed import validation_sampler

__all__ = ["HeaderCSVSaver", "validation_sampler"]

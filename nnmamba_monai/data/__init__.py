"""Data utilities MONAI does not provide."""

from nnmamba_monai.data.csv_saver import HeaderCSVSaver

__all__ = ["HeaderCSVSaver"]

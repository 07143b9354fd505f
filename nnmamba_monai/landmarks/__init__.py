"""Landmark detection by heatmap regression: landmark definitions, decoding, file reading."""

from nnmamba_monai.landmarks.decode import REFINEMENTS, heatmap_peaks, voxel_to_world
from nnmamba_monai.landmarks.io import FETAL_CEREBELLUM_LANDMARKS, read_landmark_file
from nnmamba_monai.landmarks.transforms import HeatmapToWorldLandmarksd

__all__ = [
    "FETAL_CEREBELLUM_LANDMARKS",
    "REFINEMENTS",
    "HeatmapToWorldLandmarksd",
    "heatmap_peaks",
    "read_landmark_file",
    "voxel_to_world",
]

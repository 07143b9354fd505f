"""MONAI transforms for the bundles: BraTS labels <-> evaluation regions, contrast inversion."""

from nnmamba_monai.transforms.brats import (
    BRATS_REGIONS,
    BratsLabelsToRegions,
    BratsLabelsToRegionsd,
    BratsRegionsToLabels,
    BratsRegionsToLabelsd,
    brats_case_name,
)
from nnmamba_monai.transforms.intensity import IntensityInversion, RandIntensityInversion, RandIntensityInversiond

__all__ = [
    "BRATS_REGIONS",
    "BratsLabelsToRegions",
    "BratsLabelsToRegionsd",
    "BratsRegionsToLabels",
    "BratsRegionsToLabelsd",
    "IntensityInversion",
    "RandIntensityInversion",
    "RandIntensityInversiond",
    "brats_case_name",
]

"""MONAI transforms for the bundles: BraTS labels <-> evaluation regions."""

from nnmamba_monai.transforms.brats import (
    BRATS_REGIONS,
    BratsLabelsToRegions,
    BratsLabelsToRegionsd,
    BratsRegionsToLabels,
    BratsRegionsToLabelsd,
    brats_case_name,
)

__all__ = [
    "BRATS_REGIONS",
    "BratsLabelsToRegions",
    "BratsLabelsToRegionsd",
    "BratsRegionsToLabels",
    "BratsRegionsToLabelsd",
    "brats_case_name",
]

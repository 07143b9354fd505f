"""MONAI transforms for the bundles: BraTS labels <-> evaluation regions; one reader for every scan format."""

from nnmamba_monai.transforms.brats import (
    BRATS_REGIONS,
    BratsLabelsToRegions,
    BratsLabelsToRegionsd,
    BratsRegionsToLabels,
    BratsRegionsToLabelsd,
    brats_case_name,
)
from nnmamba_monai.transforms.scan_reader import SCAN_FORMATS, ScanReader, UnsupportedScanError, scan_format

__all__ = [
    "BRATS_REGIONS",
    "BratsLabelsToRegions",
    "BratsLabelsToRegionsd",
    "BratsRegionsToLabels",
    "BratsRegionsToLabelsd",
    "brats_case_name",
    "SCAN_FORMATS",
    "ScanReader",
    "UnsupportedScanError",
    "scan_format",
]

"""MONAI transforms for the bundles: BraTS labels <-> evaluation regions; one reader for every scan format;
contrast inversion, random intensity curves and their two-region version; intensity scaling read from the head
only; mask clean-up (brain extraction)."""

from nnmamba_monai.transforms.brats import (
    BRATS_REGIONS,
    BratsLabelsToRegions,
    BratsLabelsToRegionsd,
    BratsRegionsToLabels,
    BratsRegionsToLabelsd,
    brats_case_name,
)
from nnmamba_monai.transforms.foreground_scale import ForegroundPercentileScale, ForegroundPercentileScaled
from nnmamba_monai.transforms.intensity import (
    IntensityInversion,
    RandIntensityInversion,
    RandIntensityInversiond,
    inverted_head_contrast,
)
from nnmamba_monai.transforms.intensity_curve import (
    IntensityCurve,
    RandIntensityCurve,
    RandIntensityCurved,
    RandRegionIntensityCurved,
)
from nnmamba_monai.transforms.mask import LargestComponentd, largest_component_filled
from nnmamba_monai.transforms.scan_reader import SCAN_FORMATS, ScanReader, UnsupportedScanError, scan_format

__all__ = [
    "BRATS_REGIONS",
    "BratsLabelsToRegions",
    "BratsLabelsToRegionsd",
    "BratsRegionsToLabels",
    "BratsRegionsToLabelsd",
    "ForegroundPercentileScale",
    "ForegroundPercentileScaled",
    "LargestComponentd",
    "IntensityCurve",
    "IntensityInversion",
    "RandIntensityCurve",
    "RandIntensityCurved",
    "RandIntensityInversion",
    "RandIntensityInversiond",
    "RandRegionIntensityCurved",
    "brats_case_name",
    "SCAN_FORMATS",
    "ScanReader",
    "UnsupportedScanError",
    "scan_format",
    "inverted_head_contrast",
    "largest_component_filled",
]

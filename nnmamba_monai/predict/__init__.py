"""Run a trained bundle on your own scans: ``python -m nnmamba_monai.predict --bundle NAME INPUT... --output DIR``.

The pieces every bundle's ``configs/inference.json`` uses: :func:`inference_cases` / :func:`find_scans` (what to
predict: ``--input_image``, ``--dataset_dir`` or the datalist) and :func:`check_inference` (the pre-flight check,
first entry of the config's ``run`` list).
"""

from nnmamba_monai.predict.inputs import find_scans, inference_cases
from nnmamba_monai.predict.preflight import (
    PredictionError,
    ScanLayout,
    check_inference,
    checkpoint_mismatch,
    scan_channels,
    scan_layout,
)

__all__ = [
    "PredictionError",
    "ScanLayout",
    "check_inference",
    "checkpoint_mismatch",
    "find_scans",
    "inference_cases",
    "scan_channels",
    "scan_layout",
]

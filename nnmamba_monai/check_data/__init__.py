"""Data checks before training: every case's files against what the bundle expects.

``python -m nnmamba_monai.check_data --bundle DIR --dataset_dir DIR`` prints a table of problems (missing or
unreadable files, channel count, shape/affine mismatch, label values, NaN/Inf, empty foreground, class labels,
landmarks); the train configs call :func:`require_clean_data` in ``initialize``.
"""

from nnmamba_monai.check_data.bundle import bundle_cases
from nnmamba_monai.check_data.case_checks import case_id, check_entries, check_entry
from nnmamba_monai.check_data.findings import Check, Finding, Severity
from nnmamba_monai.check_data.report import DataCheckError, render_table, require_clean_data, summary_line
from nnmamba_monai.check_data.spec import DEFAULT_MAX_VOXELS, DataSpec

__all__ = [
    "DEFAULT_MAX_VOXELS",
    "Check",
    "DataCheckError",
    "DataSpec",
    "Finding",
    "Severity",
    "bundle_cases",
    "case_id",
    "check_entries",
    "check_entry",
    "render_table",
    "require_clean_data",
    "summary_line",
]

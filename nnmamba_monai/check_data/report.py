"""The check table as text, and the gate training calls before it starts."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from nnmamba_monai.check_data.case_checks import check_entries
from nnmamba_monai.check_data.findings import Finding, Severity
from nnmamba_monai.check_data.spec import DEFAULT_MAX_VOXELS, DataSpec
from nnmamba_monai.datalist.schema import validate_entries
from nnmamba_monai.refusal import RefusalError, install_excepthook

__all__ = ["DataCheckError", "render_table", "require_clean_data", "summary_line"]

COLUMNS = ("file", "case", "check", "severity", "message")
MAX_COLUMN = 70  # file and case columns are cut (from the left) beyond this width; messages never are


def _cell(finding: Finding, column: str) -> str:
    value = getattr(finding, column)
    return value.value if hasattr(value, "value") else str(value)


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else "..." + text[-(width - 3) :]


def render_table(findings: Sequence[Finding]) -> str:
    """A fixed-width table with the columns file, case, check, severity, message (one row per finding)."""
    if not findings:
        return "no problems found"
    rows = [[_cell(f, c) for c in COLUMNS] for f in findings]
    widths = [min(MAX_COLUMN, max(len(c), *(len(r[i]) for r in rows))) for i, c in enumerate(COLUMNS[:-1])]
    lines = []
    for row in [list(COLUMNS), ["-" * w for w in widths] + ["-" * 7], *rows]:
        cells = [_fit(cell, w).ljust(w) for cell, w in zip(row, widths)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines)


def summary_line(findings: Sequence[Finding], num_cases: int) -> str:
    """E.g. ``3 error(s), 1 warning(s) in 12 case(s)``."""
    errors = sum(f.severity == Severity.ERROR for f in findings)
    return f"{errors} error(s), {len(findings) - errors} warning(s) in {num_cases} case(s)"


class DataCheckError(RefusalError, RuntimeError):
    """Training refused to start: the data check found errors (or warnings that were not allowed).

    The message's first line is the summary, the table follows; a bundle run prints the table and then the
    summary as its last line (:func:`nnmamba_monai.refusal.install_excepthook`).
    """

    def __init__(self, findings: Sequence[Finding], num_cases: int, allow_warnings: bool) -> None:
        self.findings = list(findings)
        hint = (
            "fix or remove these cases"
            if any(f.severity == Severity.ERROR for f in findings)
            else "fix them, or set allow_data_warnings=True to train anyway"
        )
        super().__init__(
            f"data check failed ({summary_line(findings, num_cases)}); {hint} "
            f"(check_data=False skips the check)\n{render_table(findings)}"
        )


def require_clean_data(
    entries: Sequence[Mapping[str, Any]],
    metadata: Mapping[str, Any],
    label_values: Sequence[int] | None = None,
    root: str | Path | None = None,
    allow_warnings: bool = False,
    headers_only: bool = False,
    max_voxels: int = DEFAULT_MAX_VOXELS,
    num_landmarks: int | None = None,
) -> list[Finding]:
    """Check every entry against the bundle's metadata; raise :class:`DataCheckError` with the table on an error
    (or on a warning unless ``allow_warnings``). Returns the (allowed) findings. Bundles call this from their
    train config's ``initialize``.

    First the entries' structure: each must hold the keys the bundle reads (image and label, or image and
    landmarks) with values of the right type, else :class:`~nnmamba_monai.datalist.schema.DatalistSchemaError`
    names the entry and key. A file whose header claims more than ``max_voxels`` voxels is an error found from
    the header alone (raise the limit in a bundle run with ``--data_check#max_voxels N``). ``num_landmarks``
    (landmark bundles whose config names the landmarks) replaces the metadata's heatmap channel count.
    """
    install_excepthook()
    spec = dataclasses.replace(DataSpec.from_metadata(metadata, label_values), max_voxels=int(max_voxels))
    if num_landmarks is not None and spec.num_landmarks is not None:
        spec = dataclasses.replace(spec, num_landmarks=int(num_landmarks))
    where = f"datalist of dataset_dir {root}" if root is not None else "datalist"
    validate_entries(entries, spec.required_keys, where, label_kind=spec.label_kind)
    findings = check_entries(entries, spec, headers_only, Path(root) if root is not None else None)
    blocking = [f for f in findings if f.severity == Severity.ERROR or not allow_warnings]
    if blocking:
        raise DataCheckError(findings, len(entries), allow_warnings)
    return findings

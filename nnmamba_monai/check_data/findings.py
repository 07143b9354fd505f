"""One data problem (a row of the check table) and the names of the checks that produce them."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

__all__ = ["Check", "Finding", "Severity"]


class Severity(str, Enum):
    """``error`` stops training; ``warning`` stops it unless warnings are allowed."""

    ERROR = "error"
    WARNING = "warning"


class Check(str, Enum):
    """The classes of bad input the checker reports (the ``check`` column of the table)."""

    MISSING_FILE = "missing_file"
    UNREADABLE = "unreadable"
    IMPLAUSIBLE_HEADER = "implausible_header"
    DATALIST_SCHEMA = "datalist_schema"
    CHANNELS = "channels"
    SHAPE_MISMATCH = "shape_mismatch"
    AFFINE_MISMATCH = "affine_mismatch"
    LABEL_VALUES = "label_values"
    NON_FINITE = "non_finite"
    EMPTY_FOREGROUND = "empty_foreground"
    CLASS_LABEL = "class_label"
    LANDMARKS = "landmarks"


@dataclass(frozen=True)
class Finding:
    """One problem: the file it is in, its case, which check found it, how bad it is, and a readable message."""

    file: str
    case: str
    check: Check
    severity: Severity
    message: str

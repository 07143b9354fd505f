"""Reading landmark files: world coordinates (mm) of named points, returned in RAS.

Three formats are read (chosen by content; a file starting with ``#`` is a Slicer fiducial CSV):

- ours::

    {"coordinate_system": "RAS", "landmarks": {"TCD1": [x, y, z], "TCD2": [x, y, z], ...}}

- 3D Slicer markups (``*.mrk.json``, Slicer >= 4.11): the control points of all markups in the file, matched by their
  ``label``; positions are in the markup's ``coordinateSystem`` (Slicer writes LPS by default).
- 3D Slicer fiducial CSV (``*.fcsv``, Markups fiducial file version 4.x): comment lines, among them
  ``# CoordinateSystem = RAS`` (or ``LPS``; older files write ``0`` for RAS and ``1`` for LPS; absent: RAS, the
  Slicer 4 default) and ``# columns = id,x,y,z,...,label,desc,...``, then one row per point. Points are matched by
  ``label``; a requested name that is no label is looked up in ``desc`` (AFIDs files, for instance, number the
  points in ``label`` and name them in ``desc``).

World space is the physical space of the image file: RAS+ millimetres as MONAI's ``LoadImage`` reports it
(``MetaTensor.affine``; NIfTI: the header's sform if set, else its qform). LPS points (DICOM/ITK convention,
Slicer files) are converted to RAS by negating x and y.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["COORDINATE_SYSTEMS", "FETAL_CEREBELLUM_LANDMARKS", "LandmarkFileError", "read_landmark_file"]

FETAL_CEREBELLUM_LANDMARKS = ("TCD1", "TCD2", "HDV1", "HDV2", "ADV1", "ADV2")
"""The paper's six fetal cerebellum landmarks, in heatmap-channel order: the two ends of the transverse cerebellar
diameter (TCD), of the height of the vermis (HDV) and of the anteroposterior diameter of the vermis (ADV)."""

COORDINATE_SYSTEMS = ("RAS", "LPS")
_LPS_TO_RAS = np.array([-1.0, -1.0, 1.0])


class LandmarkFileError(ValueError):
    """A landmark file that cannot be read; the message names the file and what is wrong."""


def _normalise(name: str) -> str:
    """'tcd_1', 'TCD 1', 'TCD-1' -> 'TCD1'."""
    return re.sub(r"[\s_\-]", "", str(name)).upper()


def _points_from_ours(content: Mapping[str, Any], path: Path) -> tuple[dict[str, Any], str]:
    system = content.get("coordinate_system")
    if system is None:
        raise LandmarkFileError(
            f"{path}: missing 'coordinate_system' (one of {COORDINATE_SYSTEMS}); it is required because RAS and LPS "
            "differ in the sign of x and y"
        )
    if not isinstance(content["landmarks"], Mapping):
        raise LandmarkFileError(f"{path}: 'landmarks' must be an object {{name: [x, y, z]}}")
    return dict(content["landmarks"]), str(system)


def _points_from_slicer(content: Mapping[str, Any], path: Path) -> tuple[dict[str, Any], str]:
    points: dict[str, Any] = {}
    systems = set()
    for markup in content["markups"]:
        systems.add(str(markup.get("coordinateSystem", "LPS")))
        for point in markup.get("controlPoints", []):
            if point.get("positionStatus", "defined") != "defined":
                continue  # placed-then-removed points: treat as absent
            label = str(point.get("label", ""))
            if label in points:
                raise LandmarkFileError(f"{path}: control point label {label!r} appears more than once")
            points[label] = point.get("position")
    if len(systems) > 1:
        raise LandmarkFileError(f"{path}: markups use different coordinate systems {sorted(systems)}")
    return points, systems.pop() if systems else "LPS"


_FCSV_SYSTEMS = {"0": "RAS", "1": "LPS", "RAS": "RAS", "LPS": "LPS"}
_FCSV_DEFAULT_COLUMNS = "id,x,y,z,ow,ox,oy,oz,vis,sel,lock,label,desc,associatedNodeID"


def _read_fcsv(path: Path) -> tuple[dict[str, Any], dict[str, Any], str]:
    """Points of a Slicer fiducial CSV by label and by description, and the coordinate system."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise LandmarkFileError(f"{path}: cannot read Slicer fiducial CSV ({err})") from err
    system, columns = "RAS", _FCSV_DEFAULT_COLUMNS.split(",")
    rows = []
    for line in lines:
        if line.startswith("#"):
            key, _, value = line[1:].partition("=")
            key, value = key.strip().lower(), value.strip()
            if key == "coordinatesystem":
                if value.upper() not in _FCSV_SYSTEMS:
                    raise LandmarkFileError(
                        f"{path}: CoordinateSystem {value!r} is not one of RAS, LPS, 0 (RAS), 1 (LPS)"
                    )
                system = _FCSV_SYSTEMS[value.upper()]
            elif key == "columns":
                columns = [c.strip() for c in value.split(",")]
        elif line.strip():
            rows.append(line)
    missing = [c for c in ("x", "y", "z", "label") if c not in columns]
    if missing:
        raise LandmarkFileError(f"{path}: '# columns =' header lacks {missing}")
    by_label: dict[str, Any] = {}
    by_desc: dict[str, Any] = {}
    for number, values in enumerate(csv.reader(rows), start=1):
        if len(values) <= max(columns.index(c) for c in ("x", "y", "z", "label")):
            raise LandmarkFileError(f"{path}: point row {number} has {len(values)} fields; columns are {columns}")
        row = dict(zip(columns, values))
        position = [row["x"], row["y"], row["z"]]
        label = row["label"]
        if label in by_label:
            raise LandmarkFileError(f"{path}: point label {label!r} appears more than once")
        by_label[label] = position
        desc = row.get("desc", "")
        if desc:
            by_desc[desc] = None if desc in by_desc else position  # None: ambiguous, never matched
    return by_label, by_desc, system


def _coordinate(value: Any, name: str, path: Path) -> np.ndarray:
    ok = isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 3
    if ok:
        try:
            ok = all(math.isfinite(float(v)) for v in value)
        except (TypeError, ValueError):
            ok = False
    if not ok:
        raise LandmarkFileError(f"{path}: landmark {name!r} must be three finite numbers [x, y, z]; got {value!r}")
    return np.asarray(value, dtype=np.float64)


def read_landmark_file(path: str | Path, names: Sequence[str] = FETAL_CEREBELLUM_LANDMARKS) -> np.ndarray:
    """World coordinates of the named landmarks in one file.

    Args:
        path: JSON file (our format or a 3D Slicer markups file) or a Slicer ``.fcsv`` (see the module docstring).
        names: landmarks to return, in this order. Matching ignores case, spaces, '_' and '-'
            ('tcd_1' matches 'TCD1'). Other points in the file are ignored.

    Returns:
        (len(names), 3) float64 RAS coordinates in mm.

    Raises:
        LandmarkFileError: unreadable JSON, unknown coordinate system, a missing, duplicated or malformed landmark;
            the message names the file and the landmark.
    """
    path = Path(path)
    aliases: dict[str, Any] = {}
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise LandmarkFileError(f"{path}: cannot read landmark file ({err})") from err
    if path.name.lower().endswith(".fcsv") or text.lstrip().startswith("#"):
        points, aliases, system = _read_fcsv(path)
        return _select(points, aliases, system, names, path)
    try:
        content = json.loads(text)
    except json.JSONDecodeError as err:
        raise LandmarkFileError(f"{path}: cannot read landmark JSON ({err})") from err
    if isinstance(content, Mapping) and "landmarks" in content:
        points, system = _points_from_ours(content, path)
    elif isinstance(content, Mapping) and isinstance(content.get("markups"), list):
        points, system = _points_from_slicer(content, path)
    else:
        raise LandmarkFileError(
            f"{path}: not a landmark file: expected {{'coordinate_system': 'RAS', 'landmarks': {{name: [x, y, z]}}}} "
            "or a 3D Slicer markups file with 'markups'"
        )
    return _select(points, aliases, system, names, path)


def _select(
    points: Mapping[str, Any], aliases: Mapping[str, Any], system: str, names: Sequence[str], path: Path
) -> np.ndarray:
    """The named points (looked up in ``points``, then in ``aliases``) as (N, 3) RAS; see read_landmark_file."""
    system = system.upper()
    if system not in COORDINATE_SYSTEMS:
        raise LandmarkFileError(f"{path}: coordinate system {system!r} is not one of {COORDINATE_SYSTEMS}")
    by_key: dict[str, tuple[str, Any]] = {}
    for name, value in points.items():
        key = _normalise(name)
        if key in by_key:
            raise LandmarkFileError(f"{path}: landmarks {by_key[key][0]!r} and {name!r} are the same name")
        by_key[key] = (name, value)
    for name, value in aliases.items():  # descriptions: only where no label has the name, and only unambiguous ones
        if value is not None:
            by_key.setdefault(_normalise(name), (name, value))
    missing = [name for name in names if _normalise(name) not in by_key]
    if missing:
        raise LandmarkFileError(
            f"{path}: missing landmark(s) {missing}; the file has {sorted(points)}"
            + (f" (descriptions {sorted(aliases)})" if aliases else "")
            + f"; all of {list(names)} are required"
        )
    coords = np.stack([_coordinate(by_key[_normalise(n)][1], n, path) for n in names])
    return coords * _LPS_TO_RAS if system == "LPS" else coords

"""Landmark files: our JSON format and 3D Slicer markups, RAS/LPS, errors that name the file and landmark."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nnmamba_monai.landmarks import FETAL_CEREBELLUM_LANDMARKS, read_landmark_file
from nnmamba_monai.landmarks.io import LandmarkFileError

POINTS = {name: [float(i), 2.0 * i, -3.0 * i + 0.5] for i, name in enumerate(FETAL_CEREBELLUM_LANDMARKS)}
EXPECTED = np.array(list(POINTS.values()))


def write(path, content):
    path.write_text(json.dumps(content))
    return path


def test_our_format_in_ras_is_returned_as_is_in_channel_order(tmp_path):
    shuffled = dict(reversed(list(POINTS.items())))
    path = write(tmp_path / "a.json", {"coordinate_system": "RAS", "landmarks": {**shuffled, "extra": [0, 0, 0]}})
    coords = read_landmark_file(path)
    assert coords.shape == (6, 3) and coords.dtype == np.float64
    np.testing.assert_array_equal(coords, EXPECTED)


def test_lps_is_converted_to_ras_and_names_are_matched_loosely(tmp_path):
    lps = {name.lower().replace("1", "_1"): [-x, -y, z] for name, (x, y, z) in POINTS.items()}  # 'tcd_1'
    path = write(tmp_path / "a.json", {"coordinate_system": "lps", "landmarks": lps})
    np.testing.assert_array_equal(read_landmark_file(path), EXPECTED)


def test_slicer_markups_file(tmp_path):
    control_points = [
        {"label": name, "position": [-x, -y, z], "positionStatus": "defined"} for name, (x, y, z) in POINTS.items()
    ]
    control_points.append({"label": "TCD1", "position": [0, 0, 0], "positionStatus": "undefined"})  # ignored
    content = {
        "@schema": "markups-schema-v1.0.3",
        "markups": [{"coordinateSystem": "LPS", "controlPoints": control_points}],
    }
    np.testing.assert_array_equal(read_landmark_file(write(tmp_path / "a.mrk.json", content)), EXPECTED)


@pytest.mark.parametrize(
    "content, message",
    [
        ({"landmarks": POINTS}, "missing 'coordinate_system'"),
        ({"coordinate_system": "XYZ", "landmarks": POINTS}, "'XYZ' is not one of"),
        ({"coordinate_system": "RAS", "landmarks": {k: v for k, v in POINTS.items() if k != "HDV2"}}, r"\['HDV2'\]"),
        ({"coordinate_system": "RAS", "landmarks": {**POINTS, "ADV1": [1, 2]}}, "'ADV1' must be three finite"),
        ({"coordinate_system": "RAS", "landmarks": {**POINTS, "ADV1": [1, "a", 3]}}, "'ADV1' must be three finite"),
        ({"coordinate_system": "RAS", "landmarks": {**POINTS, "tcd_1": [0, 0, 0]}}, "are the same name"),
        ({"points": []}, "not a landmark file"),
    ],
)
def test_errors_name_the_file_and_the_problem(tmp_path, content, message):
    path = write(tmp_path / "case_007.json", content)
    with pytest.raises(LandmarkFileError, match=message) as info:
        read_landmark_file(path)
    assert "case_007.json" in str(info.value)


def test_unreadable_json_names_the_file(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    with pytest.raises(LandmarkFileError, match="broken.json: cannot read"):
        read_landmark_file(path)


# ---------------------------------------------------------------- Slicer fiducial CSV (.fcsv)

FCSV_COLUMNS = "# columns = id,x,y,z,ow,ox,oy,oz,vis,sel,lock,label,desc,associatedNodeID"


def write_fcsv(path, system_line, rows, columns=FCSV_COLUMNS):
    """rows: (label, desc, (x, y, z)) written in the file's own coordinate system."""
    lines = ["# Markups fiducial file version = 4.6", *([system_line] if system_line else []), columns]
    for index, (label, desc, (x, y, z)) in enumerate(rows, start=1):
        lines.append(
            f"vtkMRMLMarkupsFiducialNode_{index},{x},{y},{z},0,0,0,1,1,1,0,{label},{desc},vtkMRMLScalarVolumeNode1"
        )
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(
    "system_line, to_file",
    [
        ("# CoordinateSystem = RAS", lambda p: p),
        ("# CoordinateSystem = 0", lambda p: p),  # Slicer 4 numeric form: 0 = RAS
        (None, lambda p: p),  # no header: RAS, Slicer 4's default
        ("# CoordinateSystem = LPS", lambda p: [-p[0], -p[1], p[2]]),
        ("# CoordinateSystem = 1", lambda p: [-p[0], -p[1], p[2]]),  # 1 = LPS
    ],
)
def test_fcsv_is_read_by_label_in_ras_or_lps(tmp_path, system_line, to_file):
    rows = [(name, "", to_file(point)) for name, point in reversed(POINTS.items())]
    path = write_fcsv(tmp_path / "case.fcsv", system_line, [*rows, ("other", "", (9, 9, 9))])
    np.testing.assert_allclose(read_landmark_file(path), EXPECTED)


def test_fcsv_names_fall_back_to_the_description_column_as_afids_files_write_them(tmp_path):
    # AFIDs: label is the point's number, desc its name
    rows = [("1", "AC", (0.5, 2.5, -4.5)), ("2", "PC", (0.0, -25.0, -2.0)), ("3", "genu of CC", (0.0, 33.0, 2.0))]
    path = write_fcsv(tmp_path / "afids.fcsv", "# CoordinateSystem = 0", rows)
    coords = read_landmark_file(path, ["genu of CC", "AC", "2"])  # by desc, by desc, by label
    np.testing.assert_allclose(coords, [[0.0, 33.0, 2.0], [0.5, 2.5, -4.5], [0.0, -25.0, -2.0]])


def test_fcsv_with_its_own_column_order(tmp_path):
    path = write_fcsv(tmp_path / "a.fcsv", "# CoordinateSystem = RAS", [], columns="# columns = label,z,y,x")
    path.write_text(path.read_text() + "A,3,2,1\n")
    np.testing.assert_allclose(read_landmark_file(path, ["A"]), [[1.0, 2.0, 3.0]])


@pytest.mark.parametrize(
    "system_line, rows, columns, message",
    [
        ("# CoordinateSystem = RAS", [("A", "", (1, 2, 3))], FCSV_COLUMNS, r"missing landmark\(s\) \['B'\]"),
        ("# CoordinateSystem = 2", [("B", "", (1, 2, 3))], FCSV_COLUMNS, "CoordinateSystem '2' is not one of"),
        ("# CoordinateSystem = RAS", [("B", "", (1, 2, 3))] * 2, FCSV_COLUMNS, "label 'B' appears more than once"),
        ("# CoordinateSystem = RAS", [("B", "", ("x", 2, 3))], FCSV_COLUMNS, "'B' must be three finite"),
        ("# CoordinateSystem = RAS", [], "# columns = id,label,desc", r"lacks \['x', 'y', 'z'\]"),
    ],
)
def test_fcsv_errors_name_the_file_and_the_label(tmp_path, system_line, rows, columns, message):
    path = write_fcsv(tmp_path / "case_003.fcsv", system_line, rows, columns)
    with pytest.raises(LandmarkFileError, match=message) as info:
        read_landmark_file(path, ["B"])
    assert "case_003.fcsv" in str(info.value)


def test_fcsv_short_row_names_the_row(tmp_path):
    path = tmp_path / "short.fcsv"
    path.write_text(FCSV_COLUMNS + "\nvtkMRMLMarkupsFiducialNode_1,1,2\n")
    with pytest.raises(LandmarkFileError, match="short.fcsv: point row 1 has 3 fields"):
        read_landmark_file(path, ["B"])

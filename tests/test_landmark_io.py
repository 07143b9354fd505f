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

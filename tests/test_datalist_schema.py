"""The datalist schema: sections are lists of objects holding the keys a bundle reads, with the right JSON types."""

from __future__ import annotations

import json

import pytest

from nnmamba_monai.check_data import DataSpec
from nnmamba_monai.datalist.schema import (
    DatalistSchemaError,
    load_checked_datalist,
    read_datalist_json,
    validate_datalist,
    validate_entries,
)
from tests.bundle_support import BUNDLES_DIR

GOOD = {
    "training": [{"image": ["a/t1.nii.gz", "a/t2.nii.gz"], "label": "a/seg.nii.gz", "fold": 0}],
    "validation": [{"image": ["b/t1.nii.gz", "b/t2.nii.gz"], "label": "b/seg.nii.gz", "fold": 1}],
    "test": ["c/t1.nii.gz"],  # MSD style: bare paths in the test list
}


def test_a_well_formed_datalist_passes():
    validate_datalist(GOOD, ("image", "label"), "d.json", label_kind="map")


@pytest.mark.parametrize(
    ("datalist", "message"),
    [
        ([1, 2], "d.json: entry 0 is int 1, an object"),
        ("text", 'd.json holds str "text"; a JSON object with a "training" list'),
        ({"validation": []}, "d.json has no 'training' list (keys: ['validation'])"),
        ({"training": [{"image": "x.nii.gz", "label": "y.nii.gz", "fold": "0"}]}, "key 'fold' is str \"0\""),
        ({"training": [{"image": [], "label": "y.nii.gz"}]}, "key 'image' is list []"),
        ({"training": [{"image": "x.nii.gz", "label": 1.0}]}, "training[0] (x.nii.gz) key 'label' is float 1.0"),
        ({"training": [{"case": "c7", "image": "x.nii.gz"}]}, "training[0] (case c7) has no key 'label'"),
        ({"training": [], "testing": [{"label": "x"}]}, "testing[0] has no key 'image'"),
    ],
)
def test_each_structural_problem_is_one_line_naming_entry_and_key(datalist, message):
    with pytest.raises(DatalistSchemaError) as raised:
        validate_datalist(datalist, ("image", "label"), "d.json", label_kind="map")
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_bundle_keys_come_from_the_metadata_output_format():
    def spec(bundle):
        return DataSpec.from_metadata(json.loads((BUNDLES_DIR / bundle / "configs" / "metadata.json").read_text()))

    assert (spec("brats_nnmamba_segmentation").required_keys, spec("brats_nnmamba_segmentation").label_kind) == (
        ("image", "label"),
        "map",
    )
    assert spec("adni_nnmamba_classification").label_kind == "class"
    assert spec("fetal_nnmamba_landmark").required_keys == ("image", "landmarks")
    validate_entries([{"image": "x.nii.gz", "label": 1}], ("image", "label"), label_kind="class")
    with pytest.raises(DatalistSchemaError, match="key 'landmarks' is list"):
        validate_entries([{"image": "x.nii.gz", "landmarks": [[1, 2]]}], ("image", "landmarks"))


def test_invalid_json_and_the_checked_loader(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text('{"training": [')
    with pytest.raises(DatalistSchemaError, match="broken.json is not valid JSON"):
        read_datalist_json(broken)
    good = tmp_path / "d.json"
    good.write_text(json.dumps(GOOD))
    entries = load_checked_datalist(good, "training", tmp_path, ("image", "label"))
    assert entries[0]["label"] == str(tmp_path / "a" / "seg.nii.gz")
    good.write_text(json.dumps({**GOOD, "training": "imagesTr"}))
    with pytest.raises(DatalistSchemaError, match="d.json: 'training' is str"):
        load_checked_datalist(good, "training", tmp_path, ("image", "label"))

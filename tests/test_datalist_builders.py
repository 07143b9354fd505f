"""``python -m nnmamba_monai.datalist adni|fetal``: layouts, folds, and errors naming the file/column/landmark."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from monai.data import load_decathlon_datalist

from nnmamba_monai.datalist.__main__ import main
from nnmamba_monai.datalist.adni import build_adni_datalist, parse_label
from nnmamba_monai.datalist.common import DatalistError, write_datalist
from nnmamba_monai.datalist.fetal import build_fetal_datalist
from nnmamba_monai.datalist.folds import grouped_stratified_folds, load_fold
from nnmamba_monai.datalist.schema import DatalistSchemaError
from nnmamba_monai.landmarks import FETAL_CEREBELLUM_LANDMARKS
from tests.bundles.synthetic import OBLIQUE_AFFINE, make_adni_dataset, make_fetal_dataset


def rewrite_csv(path, rows):
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


# ---------------------------------------------------------------- folds


def test_folds_keep_subjects_together_and_balance_labels():
    subjects = [f"s{i // 2}" for i in range(40)]  # two scans per subject
    labels = [int(s[1:]) % 2 for s in subjects]
    folds = grouped_stratified_folds(subjects, labels, num_folds=5, seed=3)
    assert folds == grouped_stratified_folds(subjects, labels, num_folds=5, seed=3)  # deterministic
    for subject in set(subjects):
        assert len({f for s, f in zip(subjects, folds) if s == subject}) == 1
    for fold in range(5):
        fold_labels = [label for label, f in zip(labels, folds) if f == fold]
        assert fold_labels.count(0) == fold_labels.count(1) == 4  # 20 subjects per class over 5 folds, 2 scans each
    with pytest.raises(DatalistError, match="at least 5 subjects per class"):
        grouped_stratified_folds(["a", "b", "c"], [0, 0, 1], num_folds=5)


# ---------------------------------------------------------------- ADNI


@pytest.mark.parametrize(
    "value, task, expected",
    [("CN", "nc_ad", 0), ("nc", "nc_ad", 0), (" AD ", "nc_ad", 1), ("Dementia", "nc_ad", 1), ("1.0", "nc_ad", 1),
     ("MCI", "nc_ad", None), ("sMCI", "smci_pmci", 0), ("PMCI", "smci_pmci", 1), ("AD", "smci_pmci", None)],
)  # fmt: skip
def test_adni_labels(value, task, expected):
    assert parse_label(value, task) == expected


def test_adni_datalist_loads_with_monai_and_groups_subjects(tmp_path):
    csv_path = make_adni_dataset(tmp_path / "ADNI", subjects_per_class=3)
    rows = read_csv(csv_path)
    rows.append({**rows[0], "image": "images/000_S_0000_rescan.nii.gz"})  # a second scan of subject 000_S_0000
    shutil.copy(tmp_path / "ADNI/images/000_S_0000.nii.gz", tmp_path / "ADNI/images/000_S_0000_rescan.nii.gz")
    rewrite_csv(csv_path, rows)
    output = tmp_path / "bundle" / "configs" / "datalist_nc_ad.json"
    datalist = build_adni_datalist(csv_path, subject_column="subject", num_folds=3)
    write_datalist(datalist, output)  # as python -m nnmamba_monai.datalist does
    assert datalist["labels"] == {"0": "NC", "1": "AD"} and len(datalist["training"]) == 7
    assert datalist["training"][0]["image"] == "images/000_S_0000.nii.gz"  # relative to the dataset folder
    loaded = load_decathlon_datalist(str(output), False, "training", str(tmp_path / "ADNI"))  # as the bundle does
    assert all(Path(e["image"]).is_file() for e in loaded)
    assert all((tmp_path / "ADNI").resolve() in Path(e["image"]).resolve().parents for e in loaded)
    folds = {e["image"].rsplit("/", 1)[-1]: e["fold"] for e in loaded}
    assert folds["000_S_0000.nii.gz"] == folds["000_S_0000_rescan.nii.gz"]
    for fold in range(3):
        assert sorted(e["label"] for e in loaded if e["fold"] == fold and "rescan" not in e["image"]) == [0, 1]


def test_adni_errors_name_the_column_rows_and_files(tmp_path):
    csv_path = make_adni_dataset(tmp_path, subjects_per_class=3)
    out = tmp_path / "d.json"
    with pytest.raises(DatalistError, match=r"column 'diagnosis' not found \(set it with --label_column\)"):
        build_adni_datalist(csv_path, label_column="diagnosis")
    rows = read_csv(csv_path)
    rows[1]["image"] = "images/missing.nii.gz"
    rows[4]["label"] = "MCI"
    rewrite_csv(csv_path, rows)
    with pytest.raises(DatalistError, match=r"line 6: label='MCI'"):
        build_adni_datalist(csv_path, num_folds=2)
    with pytest.raises(DatalistError, match=r"1 image file\(s\) not found.*\n  line 3: image='images/missing.nii.gz'"):
        build_adni_datalist(csv_path, num_folds=2, skip_other_labels=True)
    assert not out.exists()


def test_adni_skips_other_labels_on_request(tmp_path):
    csv_path = make_adni_dataset(tmp_path, subjects_per_class=3)
    rows = read_csv(csv_path)
    rewrite_csv(csv_path, [*rows, {**rows[0], "label": "MCI"}])
    datalist = build_adni_datalist(csv_path, num_folds=3, skip_other_labels=True)
    assert datalist["skipped_rows"] == 1 and len(datalist["training"]) == 6


# ---------------------------------------------------------------- fetal


def test_fetal_datalist_holds_ras_landmarks_in_channel_order(tmp_path):
    truth = make_fetal_dataset(tmp_path / "fetal", num_cases=4, coordinate_system="LPS")  # files written in LPS
    datalist = build_fetal_datalist(tmp_path / "fetal", num_folds=2)
    write_datalist(datalist, tmp_path / "datalist.json")
    assert datalist["landmark_names"] == list(FETAL_CEREBELLUM_LANDMARKS) and datalist["coordinate_system"] == "RAS"
    loaded = load_decathlon_datalist(str(tmp_path / "datalist.json"), False, "training", str(tmp_path / "fetal"))
    assert [e["case_id"] for e in loaded] == sorted(truth)
    for entry in loaded:
        np.testing.assert_allclose(entry["landmarks"], truth[entry["case_id"]], atol=1e-4)  # RAS, not LPS
        assert entry["image"] == str(tmp_path / "fetal" / "images" / f"{entry['case_id']}.nii.gz")
    assert sorted(e["fold"] for e in loaded) == [0, 0, 1, 1]


def test_fetal_errors_name_cases_files_and_landmarks(tmp_path):
    root = tmp_path / "fetal"
    make_fetal_dataset(root, num_cases=3)
    (root / "landmarks" / "fetus_001.json").rename(root / "landmarks" / "fetus_01.json")
    with pytest.raises(
        DatalistError, match=r"without a landmark file:\n  fetus_001.nii.gz: expected landmarks/fetus_001"
    ):
        build_fetal_datalist(root, num_folds=2)
    (root / "landmarks" / "fetus_01.json").rename(root / "landmarks" / "fetus_001.json")
    content = json.loads((root / "landmarks" / "fetus_002.json").read_text())
    del content["landmarks"]["ADV2"]
    (root / "landmarks" / "fetus_002.json").write_text(json.dumps(content))
    with pytest.raises(DatalistError, match=r"fetus_002.json: missing landmark\(s\) \['ADV2'\]"):
        build_fetal_datalist(root, num_folds=2)
    with pytest.raises(DatalistError, match="image folder not found"):
        build_fetal_datalist(tmp_path / "nowhere")
    assert not (tmp_path / "d.json").exists()


def test_fetal_bounds_check_catches_lps_written_as_ras(tmp_path):
    root = tmp_path / "fetal"
    truth = make_fetal_dataset(root, num_cases=2, affine=OBLIQUE_AFFINE)
    for case, world in truth.items():  # LPS numbers labelled RAS: the classic mix-up
        lps = {n: [-x, -y, z] for n, (x, y, z) in zip(FETAL_CEREBELLUM_LANDMARKS, world)}
        (root / "landmarks" / f"{case}.json").write_text(json.dumps({"coordinate_system": "RAS", "landmarks": lps}))
    with pytest.raises(DatalistError, match=r"lie outside fetus_000.nii.gz \(check the coordinate system"):
        build_fetal_datalist(root, num_folds=2)
    assert len(build_fetal_datalist(root, num_folds=2, check_bounds=False)["training"]) == 2


def test_fetal_landmark_names_test_split_and_one_fold_from_the_command_line(tmp_path, capsys):
    root = tmp_path / "fetal"
    truth = make_fetal_dataset(root, num_cases=5)
    # one case annotated in Slicer's fiducial CSV (LPS, numeric header) instead of JSON
    (root / "landmarks" / "fetus_004.json").unlink()
    rows = [
        f"p{i},{-x},{-y},{z},0,0,0,1,1,1,0,{name},,"
        for i, (name, (x, y, z)) in enumerate(zip(FETAL_CEREBELLUM_LANDMARKS, truth["fetus_004"]))
    ]
    header = ["# CoordinateSystem = 1", "# columns = id,x,y,z,ow,ox,oy,oz,vis,sel,lock,label,desc,associatedNodeID"]
    (root / "landmarks" / "fetus_004.fcsv").write_text("\n".join(header + rows) + "\n")
    output = tmp_path / "datalist.json"
    names = ["ADV1", "TCD1", "HDV2"]
    args = ["fetal", "--dataset_dir", str(root), "--output", str(output), "--landmark_names", *names]
    split = ["--num_folds", "1", "--validation_cases", "fetus_001", "--test_cases", "fetus_004", "fetus_000"]
    assert main(args + split) == 0
    assert "training: 2 cases (fold 0: 2), validation: 1 cases, testing: 2 cases" in capsys.readouterr().out
    datalist = json.loads(output.read_text())
    assert datalist["landmark_names"] == names and datalist["num_folds"] == 1
    order = [FETAL_CEREBELLUM_LANDMARKS.index(n) for n in names]
    for section in ("training", "validation", "testing"):
        for entry in datalist[section]:
            np.testing.assert_allclose(entry["landmarks"], truth[entry["case_id"]][order], atol=1e-4)
    # the bundles' run-time reading: every training entry trains, the explicit list validates, testing as written
    read = {key: load_fold(output, key, root, 0, False) for key in ("training", "validation", "testing")}
    assert [[e["case_id"] for e in read[k]] for k in read] == [["fetus_002", "fetus_003"], ["fetus_001"],
                                                               ["fetus_000", "fetus_004"]]  # fmt: skip
    assert "fold" not in read["testing"][0] and read["testing"][0]["image"] == str(root / "images/fetus_000.nii.gz")


def test_fetal_test_split_with_cross_validation_folds(tmp_path):
    make_fetal_dataset(tmp_path / "fetal", num_cases=5)
    datalist = build_fetal_datalist(tmp_path / "fetal", num_folds=2, test_cases=["fetus_002"])
    assert [e["case_id"] for e in datalist["testing"]] == ["fetus_002"] and "validation" not in datalist
    assert sorted(e["fold"] for e in datalist["training"]) == [0, 0, 1, 1]  # plain K-fold by case, no classes


@pytest.mark.parametrize(
    "options, message",
    [
        ({"num_folds": 1}, "--num_folds 1 .* needs --validation_cases"),
        ({"num_folds": 0}, "--num_folds must be at least 1"),
        ({"num_folds": 2, "validation_cases": ["fetus_000"]}, "--validation_cases needs --num_folds 1"),
        ({"num_folds": 2, "test_cases": ["fetus_9"]}, r"unknown case\(s\) \['fetus_9'\]"),
        ({"num_folds": 1, "test_cases": ["fetus_000"], "validation_cases": ["fetus_000"]}, "both in --test_cases"),
        ({"num_folds": 3, "test_cases": ["fetus_000"]}, "2 training case.* cannot fill 3 fold"),
    ],
)
def test_fetal_split_errors_name_the_option(tmp_path, options, message):
    make_fetal_dataset(tmp_path / "fetal", num_cases=3)
    with pytest.raises(DatalistError, match=message):
        build_fetal_datalist(tmp_path / "fetal", **options)


def test_one_fold_datalist_without_a_validation_list_is_refused_at_run_time(tmp_path):
    make_fetal_dataset(tmp_path / "fetal", num_cases=3)
    datalist = build_fetal_datalist(tmp_path / "fetal", num_folds=1, validation_cases=["fetus_000"])
    del datalist["validation"]
    path = write_datalist(datalist, tmp_path / "d.json")
    assert len(load_fold(path, "training", tmp_path / "fetal", 0, False)) == 2
    with pytest.raises(DatalistSchemaError, match="d.json: one fold .* needs a 'validation' list"):
        load_fold(path, "validation", tmp_path / "fetal", 0, False)


# ---------------------------------------------------------------- command line


def test_command_line_subcommands_and_error_exit(tmp_path, capsys):
    csv_path = make_adni_dataset(tmp_path, subjects_per_class=2)
    assert main(["adni", "--csv", str(csv_path), "--output", str(tmp_path / "d.json"), "--num_folds", "2"]) == 0
    assert "wrote" in capsys.readouterr().out and (tmp_path / "d.json").is_file()
    with pytest.raises(SystemExit) as info:
        main(["fetal", "--dataset_dir", str(tmp_path / "missing"), "--output", str(tmp_path / "f.json")])
    assert info.value.code == 1
    assert "nnmamba_monai.datalist fetal: error: image folder not found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    usage = capsys.readouterr().out
    assert "python -m nnmamba_monai.datalist" in usage and "adni" in usage and "fetal" in usage


# ---------------------------------------------------------------- the bundles' fold convention at run time


def test_load_fold_splits_by_val_fold_and_reads_hand_written_lists(tmp_path):
    from nnmamba_monai.datalist import load_fold

    entries = [{"image": f"s{i}.nii.gz", "label": i % 2, "fold": i % 3} for i in range(6)]
    folded = write_datalist({"training": entries, "testing": [{"image": "t.nii.gz"}]}, tmp_path / "folded.json")
    for val_fold in range(3):
        training = load_fold(folded, "training", tmp_path, val_fold, is_segmentation=False)
        validation = load_fold(folded, "validation", tmp_path, val_fold, is_segmentation=False)
        assert [e["fold"] for e in validation] == [val_fold, val_fold] and len(training) == 4
        assert all(e["fold"] != val_fold for e in training) and validation[0]["label"] in (0, 1)
        assert validation[0]["image"] == str(tmp_path / f"s{val_fold}.nii.gz")
    assert load_fold(folded, "testing", tmp_path) == [{"image": str(tmp_path / "t.nii.gz")}]
    # a datalist written by hand with its own validation list (the demo's) is read as written
    by_hand = write_datalist(
        {"training": [{"image": "a.nii.gz"}], "validation": [{"image": "b.nii.gz"}]}, tmp_path / "h.json"
    )
    assert load_fold(by_hand, "validation", tmp_path, 0) == [{"image": str(tmp_path / "b.nii.gz")}]
    assert load_fold(by_hand, "training", tmp_path, 0) == [{"image": str(tmp_path / "a.nii.gz")}]

"""``python -m nnmamba_monai.datalist``: BraTS 2023 and AMOS22 layouts, folds, CT/MR split, missing-file errors."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import pytest

from nnmamba_monai.datalist import MissingFilesError
from nnmamba_monai.datalist import __main__ as datalist_cli
from nnmamba_monai.datalist.amos import amos_case_id, build_amos_datalist, case_modality
from nnmamba_monai.datalist.brats import BRATS_MODALITIES, build_brats_datalist
from nnmamba_monai.datalist.schema import DatalistSchemaError
from tests.bundle_support import subprocess_env
from tests.bundles.standin_data import brats_case_id, make_amos_dataset, make_brats_dataset

SHAPE = (8, 8, 8)  # the builders only look at file names


@pytest.fixture(scope="module")
def brats_dir(tmp_path_factory):
    return make_brats_dataset(tmp_path_factory.mktemp("brats") / "TrainingData", range(1, 6), shape=SHAPE)


@pytest.fixture(scope="module")
def amos_dir(tmp_path_factory):
    return make_amos_dataset(
        tmp_path_factory.mktemp("amos") / "amos22",
        training=(1, 2, 410, 500, 501, 507),
        validation=(8, 508),
        test=(9, 509),
        shape=SHAPE,
    )


def split(datalist: dict, val_fold: int = 0) -> tuple[list[dict], list[dict]]:
    """(training, validation) entries for ``val_fold``, as the bundles' configs choose them."""
    entries = datalist["training"]
    return [e for e in entries if e["fold"] != val_fold], [e for e in entries if e["fold"] == val_fold]


# ---------------------------------------------------------------- BraTS


def test_brats_entries_follow_the_case_layout(brats_dir):
    datalist = build_brats_datalist(brats_dir, num_folds=5)
    entries = datalist["training"]
    assert sorted(e["label"] for e in entries) == [
        f"{brats_case_id(i)}/{brats_case_id(i)}-seg.nii.gz" for i in range(1, 6)
    ]
    for entry in entries:
        case = entry["label"].split("/")[0]
        assert entry["image"] == [f"{case}/{case}-{m}.nii.gz" for m in ("t1n", "t1c", "t2w", "t2f")]
        assert all((brats_dir / path).is_file() for path in [*entry["image"], entry["label"]])
    assert BRATS_MODALITIES == ("t1n", "t1c", "t2w", "t2f")


def test_brats_folds_partition_the_cases_deterministically(brats_dir):
    by_fold = {}
    datalist = build_brats_datalist(brats_dir, num_folds=5, seed=3)
    for fold in range(5):
        training, validation = split(datalist, fold)
        assert len(validation) == 1 and len(training) == 4
        assert all(e["fold"] == fold for e in validation)
        assert all(e["fold"] != fold for e in training)
        by_fold[fold] = validation[0]["label"]
    assert len(set(by_fold.values())) == 5, "each case validates in exactly one fold"
    assert build_brats_datalist(brats_dir, 5, seed=3) == build_brats_datalist(brats_dir, 5, seed=3)
    seeds = {json.dumps(split(build_brats_datalist(brats_dir, 5, seed=s))[1]) for s in range(6)}
    assert len(seeds) > 1, "the seed changes the split"


def test_brats_case_folders_are_found_below_a_parent_folder(brats_dir):
    datalist = build_brats_datalist(brats_dir.parent, num_folds=5)
    assert all(e["label"].startswith("TrainingData/BraTS-GLI-") for e in datalist["training"])


def test_brats_missing_files_are_named(tmp_path):
    make_brats_dataset(
        tmp_path,
        (1, 2, 3),
        shape=SHAPE,
        omit=("BraTS-GLI-00002-000-t2f.nii.gz", "BraTS-GLI-00003-000-seg.nii.gz", "BraTS-GLI-00003-000-t1n.nii.gz"),
    )
    with pytest.raises(MissingFilesError) as raised:
        build_brats_datalist(tmp_path, num_folds=3)
    message = str(raised.value)
    assert "case BraTS-GLI-00002-000: missing BraTS-GLI-00002-000-t2f.nii.gz" in message
    assert "case BraTS-GLI-00003-000: missing BraTS-GLI-00003-000-t1n.nii.gz" in message
    assert "case BraTS-GLI-00003-000: missing BraTS-GLI-00003-000-seg.nii.gz" in message
    assert "3 missing file(s)" in message and len(raised.value.problems) == 3


def test_brats_unlabelled_data_becomes_testing(tmp_path):
    make_brats_dataset(tmp_path, (7, 8), shape=SHAPE, with_labels=False)
    datalist = build_brats_datalist(tmp_path, unlabelled=True)
    assert list(datalist) == ["testing"]
    assert [e["image"][0] for e in datalist["testing"]] == [
        f"{brats_case_id(i)}/{brats_case_id(i)}-t1n.nii.gz" for i in (7, 8)
    ]
    with pytest.raises(MissingFilesError, match="missing BraTS-GLI-00007-000-seg.nii.gz"):
        build_brats_datalist(tmp_path, num_folds=2)


def test_brats_folder_without_cases_or_too_few_cases(tmp_path, brats_dir):
    with pytest.raises(FileNotFoundError, match="no case folders named BraTS-GLI-xxxxx-yyy"):
        build_brats_datalist(tmp_path)
    with pytest.raises(ValueError, match="5 case\\(s\\) cannot fill 6 folds"):
        build_brats_datalist(brats_dir, num_folds=6)
    with pytest.raises(SystemExit):  # the command line still checks --fold, which suggests the run's --val_fold
        datalist_cli.main(
            ["brats", "--dataset_dir", str(brats_dir), "--output", str(tmp_path / "d.json"), "--fold", "5"]
        )


# ---------------------------------------------------------------- AMOS


def test_amos_case_ids_split_ct_from_mr():
    assert amos_case_id("imagesTr/amos_0507.nii.gz") == 507
    assert amos_case_id("scan.nii.gz") is None
    assert [case_modality(i) for i in (1, 410, 500, 501, 600)] == ["ct", "ct", "ct", "mr", "mr"]


def test_amos_ct_and_mr_datalists(amos_dir):
    ct = build_amos_datalist(amos_dir, "ct")
    mr = build_amos_datalist(amos_dir, "mr")
    (ct_training, ct_validation), (mr_training, mr_validation) = split(ct), split(mr)  # val_fold 0: the release's
    assert [e["image"] for e in ct_training] == [f"imagesTr/amos_{i:04d}.nii.gz" for i in (1, 2, 410, 500)]
    assert [e["label"] for e in ct_training] == [f"labelsTr/amos_{i:04d}.nii.gz" for i in (1, 2, 410, 500)]
    assert ct_validation == [{"image": "imagesVa/amos_0008.nii.gz", "label": "labelsVa/amos_0008.nii.gz", "fold": 0}]
    assert ct["testing"] == [{"image": "imagesTs/amos_0009.nii.gz"}]
    assert [e["image"] for e in mr_training] == ["imagesTr/amos_0501.nii.gz", "imagesTr/amos_0507.nii.gz"]
    assert mr_validation == [{"image": "imagesVa/amos_0508.nii.gz", "label": "labelsVa/amos_0508.nii.gz", "fold": 0}]
    assert mr["testing"] == [{"image": "imagesTs/amos_0509.nii.gz"}]
    everything = split(build_amos_datalist(amos_dir, "all"))
    assert len(everything[0]) == 6 and len(everything[1]) == 2


def test_amos_without_dataset_json_scans_the_folders(amos_dir, tmp_path):
    copy = tmp_path / "amos22"
    shutil.copytree(amos_dir, copy)
    (copy / "dataset.json").unlink()
    for modality in ("ct", "mr"):
        assert build_amos_datalist(copy, modality) == build_amos_datalist(amos_dir, modality)


def test_amos_missing_files_are_named(tmp_path):
    make_amos_dataset(
        tmp_path,
        training=(1, 2),
        validation=(8,),
        test=(9,),
        shape=SHAPE,
        omit=("labelsTr/amos_0002.nii.gz", "imagesVa/amos_0008.nii.gz"),
    )
    with pytest.raises(MissingFilesError) as raised:
        build_amos_datalist(tmp_path, "ct")
    assert "case amos_0002: missing labelsTr/amos_0002.nii.gz" in str(raised.value)
    assert "case amos_0008: missing imagesVa/amos_0008.nii.gz" in str(raised.value)
    assert len(raised.value.problems) == 2


def test_amos_errors_for_wrong_folders_and_names(tmp_path, amos_dir):
    with pytest.raises(FileNotFoundError, match="neither dataset.json nor imagesTr"):
        build_amos_datalist(tmp_path, "ct")
    with pytest.raises(ValueError, match="modality must be one of"):
        build_amos_datalist(amos_dir, "pet")
    (tmp_path / "imagesTr").mkdir()
    (tmp_path / "imagesTr" / "patient1.nii.gz").write_bytes(b"")
    (tmp_path / "labelsTr").mkdir()
    (tmp_path / "labelsTr" / "patient1.nii.gz").write_bytes(b"")
    with pytest.raises(ValueError, match="cannot tell CT from MR for 'imagesTr/patient1.nii.gz'"):
        build_amos_datalist(tmp_path, "ct")
    assert build_amos_datalist(tmp_path, "all")["training"] == [
        {"image": "imagesTr/patient1.nii.gz", "label": "labelsTr/patient1.nii.gz", "fold": 1}
    ]
    with pytest.raises(ValueError, match="no MR training case"):
        build_amos_datalist(make_amos_dataset(tmp_path / "ct_only", (1,), (), (), shape=SHAPE), "mr")


# ---------------------------------------------------------------- command line


def test_cli_writes_the_datalist(amos_dir, brats_dir, tmp_path, capsys):
    output = tmp_path / "configs" / "datalist.json"
    assert datalist_cli.main(["amos", "--dataset_dir", str(amos_dir), "--output", str(output), "--modality", "mr"]) == 0
    assert json.loads(output.read_text()) == build_amos_datalist(amos_dir, "mr")
    assert "training: 3 cases (fold 0: 1, fold 1: 2), testing: 1 cases" in capsys.readouterr().out
    arguments = ["brats", "--dataset_dir", str(brats_dir), "--output", str(output), "--num_folds", "5", "--fold", "1"]
    datalist_cli.main(arguments)
    assert json.loads(output.read_text()) == build_brats_datalist(brats_dir, num_folds=5)
    assert "--val_fold 1" in capsys.readouterr().out


def test_cli_reports_missing_files_and_exits_1(tmp_path, capsys):
    make_brats_dataset(tmp_path / "data", (1, 2), shape=SHAPE, omit=("BraTS-GLI-00001-000-t2f.nii.gz",))
    with pytest.raises(SystemExit) as exited:
        datalist_cli.main(["brats", "--dataset_dir", str(tmp_path / "data"), "--output", str(tmp_path / "d.json")])
    assert exited.value.code == 1
    assert "case BraTS-GLI-00001-000: missing BraTS-GLI-00001-000-t2f.nii.gz" in capsys.readouterr().err
    assert not (tmp_path / "d.json").exists()


def test_cli_help_lists_the_datasets():
    result = subprocess.run(
        [sys.executable, "-m", "nnmamba_monai.datalist", "--help"],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        check=True,
    )
    assert "brats" in result.stdout and "amos" in result.stdout


def test_absent_dataset_modules_are_skipped_but_broken_ones_are_reported(monkeypatch):
    monkeypatch.setattr(datalist_cli, "DATASET_MODULES", ("brats", "no_such_dataset"))
    assert [m.__name__ for m in datalist_cli._dataset_modules()] == ["nnmamba_monai.datalist.brats"]

    real_import = datalist_cli.importlib.import_module

    def import_with_missing_dependency(name):
        if name == "nnmamba_monai.datalist.brats":
            raise ModuleNotFoundError("No module named 'some_dependency'", name="some_dependency")
        return real_import(name)

    monkeypatch.setattr(datalist_cli.importlib, "import_module", import_with_missing_dependency)
    with pytest.raises(ModuleNotFoundError, match="some_dependency"):
        datalist_cli._dataset_modules()


# ---------------------------------------------------------------- malformed manifests, symbolic links


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda m: m.update(training="imagesTr"), "'training' is str \"imagesTr\"; it must be a list of entries"),
        (lambda m: m.update(training={"image": "a"}), "'training' is dict"),
        (lambda m: m["training"][1].update(image=5), "training[1] key 'image' is int 5; it must be a file path"),
        (lambda m: m["validation"][0].pop("label"), "validation[0] (amos_0008.nii.gz) has no key 'label'"),
    ],
    ids=["training_str", "training_dict", "image_int", "missing_label"],
)
def test_amos_malformed_dataset_json_is_one_line_naming_entry_and_key(amos_dir, tmp_path, capsys, edit, expected):
    copy = tmp_path / "amos22"
    shutil.copytree(amos_dir, copy)
    manifest = json.loads((copy / "dataset.json").read_text())
    edit(manifest)
    (copy / "dataset.json").write_text(json.dumps(manifest))
    with pytest.raises(DatalistSchemaError, match=re.escape(expected)):
        build_amos_datalist(copy, "all")
    with pytest.raises(SystemExit) as exited:
        datalist_cli.main(["amos", "--dataset_dir", str(copy), "--output", str(tmp_path / "d.json")])
    assert exited.value.code == 1
    message = capsys.readouterr().err.strip()
    assert "\n" not in message and str(copy / "dataset.json") in message and expected in message
    assert not (tmp_path / "d.json").exists()


def test_symlinked_inputs_are_written_relative_to_the_dataset_dir(brats_dir, tmp_path):
    """A case folder and a single file that are links into another store keep their paths under dataset_dir."""
    store, data = tmp_path / "store", tmp_path / "data"
    shutil.copytree(brats_dir, data)
    store.mkdir()
    linked_case = brats_case_id(1)
    (data / linked_case).rename(store / linked_case)
    (data / linked_case).symlink_to(store / linked_case, target_is_directory=True)
    other = brats_case_id(2)
    linked_file = data / other / f"{other}-t2f.nii.gz"
    linked_file.rename(store / linked_file.name)
    linked_file.symlink_to(store / linked_file.name)
    datalist = build_brats_datalist(data, num_folds=5)
    entries = {e["label"].split("/")[0]: e for e in datalist["training"]}
    assert entries[linked_case]["label"] == f"{linked_case}/{linked_case}-seg.nii.gz"
    assert entries[other]["image"][3] == f"{other}/{other}-t2f.nii.gz"
    assert not any(str(store) in json.dumps(e) for e in entries.values())

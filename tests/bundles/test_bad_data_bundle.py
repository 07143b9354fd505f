"""A NaN planted in a training case stops ``python -m monai.bundle run`` with a message naming the file.

Twice: by the data check in the train config's ``initialize`` (before any training), and, with
``check_data=False``, by the NonFiniteGuard handler on the first batch holding the case, which must leave the
rolling checkpoint as it was. A malformed datalist entry and a bundle folder another training holds are refused
too. Every refusal exits with status 1 and ends with one readable line (no MONAI traceback as the last line).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from nnmamba_monai.datalist import __main__ as datalist_cli
from nnmamba_monai.folder_lock import FolderLock
from tests.bundle_support import copy_bundle, run_bundle, run_checked
from tests.bundles.standin_data import BRATS_TINY_TRAINING as TINY
from tests.bundles.standin_data import make_brats_dataset, write_absurd_header
from tests.helpers import PEAK_RSS_KIB

BUNDLE = "brats_nnmamba_segmentation"


def last_line(result) -> str:
    """The last line a user reads: stderr's (the run's logging goes to stdout)."""
    return result.stderr.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def poisoned(tmp_path_factory):
    """Stand-in BraTS data whose first training case has one NaN voxel in its t1n image."""
    root = tmp_path_factory.mktemp("bad_data")
    data = make_brats_dataset(root / "data", (1, 2, 3))
    datalist = root / "datalist.json"
    datalist_cli.main(["brats", "--dataset_dir", str(data), "--output", str(datalist), "--num_folds", "3"])
    training = [e for e in json.loads(datalist.read_text())["training"] if e["fold"] != 0]  # default val_fold 0
    bad = data / training[0]["image"][0]
    image = nib.load(bad)
    voxels = np.asarray(image.dataobj).copy()
    voxels[16, 16, 16] = np.nan
    nib.save(nib.Nifti1Image(voxels, image.affine), str(bad))
    return {**TINY, "dataset_dir": str(data), "datalist_file": str(datalist)}, bad


def test_data_check_refuses_to_train(tmp_path, poisoned):
    overrides, bad = poisoned
    result = run_bundle(
        copy_bundle(BUNDLE, tmp_path), ["configs/train.json"], expect_success=False, max_epochs=1, **overrides
    )
    log = result.stdout + result.stderr
    assert result.returncode == 1
    assert last_line(result).startswith("DataCheckError: data check failed (1 error(s), 0 warning(s) in 3 case(s))")
    assert f"{bad.parent.name}/{bad.name}" in log and "non_finite" in log and "1 NaN and 0 Inf" in log
    assert "Epoch: 1/" not in log, "no training step ran"


def test_non_finite_guard_stops_training_and_keeps_the_last_good_checkpoint(tmp_path, poisoned):
    overrides, bad = poisoned
    bundle = copy_bundle(BUNDLE, tmp_path)
    result = run_bundle(
        bundle, ["configs/train.json"], expect_success=False, check_data=False, max_epochs=2, **overrides
    )
    log = result.stdout + result.stderr
    assert result.returncode == 1
    assert last_line(result).startswith("NonFiniteError: ") and "NaN/Inf values in batch key 'image'" in log
    assert bad.name in log, "the message names the input file"
    assert not (bundle / "models" / "last.pt").exists(), "stopped in epoch 1, before any checkpoint"


@pytest.mark.parametrize("check_data", [True, False], ids=["data_check", "guard_without_data_check"])
def test_entry_without_label_is_refused_naming_the_entry_and_key(tmp_path, poisoned, check_data):
    overrides, _ = poisoned
    content = json.loads(Path(overrides["datalist_file"]).read_text())
    del content["training"][1]["label"]
    case = Path(content["training"][1]["image"][0]).name
    datalist = tmp_path / "datalist.json"
    datalist.write_text(json.dumps(content))
    result = run_bundle(
        copy_bundle(BUNDLE, tmp_path),
        ["configs/train.json"],
        expect_success=False,
        max_epochs=1,
        check_data=check_data,
        **{**overrides, "datalist_file": str(datalist)},
    )
    assert result.returncode == 1
    # the entry is named by its image (its index is the one in the loaded training fold)
    line = last_line(result)
    assert re.match(rf"DatalistSchemaError: .*entry \d+ \({re.escape(case)}\) has no key 'label'", line), line


@pytest.mark.parametrize("training", ["case_0001", {"image": "a.nii.gz"}], ids=["string", "object"])
def test_training_section_that_is_not_a_list_is_refused_in_one_line(tmp_path, poisoned, training):
    overrides, _ = poisoned
    datalist = tmp_path / "datalist.json"
    datalist.write_text(json.dumps({"training": training}))
    result = run_bundle(
        copy_bundle(BUNDLE, tmp_path),
        ["configs/train.json"],
        expect_success=False,
        max_epochs=1,
        **{**overrides, "datalist_file": str(datalist)},
    )
    assert result.returncode == 1
    line = last_line(result)
    assert line.startswith("DatalistSchemaError: ") and str(datalist) in line and "'training'" in line, line


def test_second_training_into_the_same_bundle_is_refused(tmp_path, poisoned):
    overrides, _ = poisoned
    bundle = copy_bundle(BUNDLE, tmp_path)
    with FolderLock(bundle / "models"):  # this process plays the first training
        result = run_bundle(
            bundle, ["configs/train.json"], expect_success=False, check_data=False, max_epochs=1, **overrides
        )
    assert result.returncode == 1
    line = last_line(result)
    assert line.startswith("FolderLockedError: ") and f"pid {os.getpid()}" in line and "started " in line
    assert not (bundle / "models" / "last.pt").exists()


PEAK_RSS_RUN = f"""
import atexit, runpy, sys
atexit.register(lambda: print("peak_rss_kib", {PEAK_RSS_KIB}, flush=True))
sys.argv = ["monai.bundle", *sys.argv[1:]]
runpy.run_module("monai.bundle", run_name="__main__")
"""


def test_absurd_header_is_refused_by_training_under_1_gib(tmp_path, poisoned):
    """A header claiming 2^31 voxels: the run stops in the data check, from the header, using < 1 GiB."""
    overrides, _ = poisoned
    data = tmp_path / "data"
    shutil.copytree(overrides["dataset_dir"], data)
    entry = json.loads(Path(overrides["datalist_file"]).read_text())["training"][1]
    absurd = data / entry["image"][1]
    write_absurd_header(absurd)
    bundle = copy_bundle(BUNDLE, tmp_path)
    arguments = ["run", "--meta_file", bundle / "configs/metadata.json", "--config_file", bundle / "configs/train.json"]
    arguments += ["--bundle_root", bundle, "--max_epochs", "1"]
    for key, value in {**overrides, "dataset_dir": str(data)}.items():
        arguments += [f"--{key}", value if isinstance(value, str) else repr(value)]
    result = run_checked([sys.executable, "-c", PEAK_RSS_RUN, *arguments], expect_success=False)
    assert result.returncode == 1
    assert last_line(result).startswith("DataCheckError: data check failed (2 error(s)")
    assert "implausible_header" in result.stderr and absurd.name in result.stderr
    peak_kib = int(result.stdout.split("peak_rss_kib")[1].split()[0])
    assert peak_kib < 2**20, f"{peak_kib / 1024:.0f} MiB"

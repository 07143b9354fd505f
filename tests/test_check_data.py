"""The data check: each class of bad input, written as a real file, gives its own message naming the file.

Cases are tiny generated volumes in the real BraTS / AMOS / ADNI / fetal layouts (tests/bundles/standin_data.py,
tests/bundles/synthetic.py); one case is spoilt per test and the findings for it are compared with the check class.
"""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from nnmamba_monai.check_data import (
    Check,
    DataCheckError,
    DataSpec,
    Severity,
    check_entry,
    render_table,
    require_clean_data,
)
from nnmamba_monai.check_data.__main__ import main as check_data_main
from nnmamba_monai.check_data.nifti import read_voxels
from nnmamba_monai.datalist import __main__ as datalist_cli
from nnmamba_monai.datalist.schema import DatalistSchemaError
from tests.bundle_support import BUNDLES_DIR
from tests.bundles.standin_data import BRATS_AFFINE, brats_case_id, make_brats_dataset, write_absurd_header
from tests.bundles.synthetic import make_adni_dataset, make_fetal_dataset
from tests.helpers import PEAK_RSS_KIB

BRATS_SPEC = DataSpec(num_channels=4, label_values=(0, 1, 2, 3))
CASE = brats_case_id(1)
SHAPE = (16, 16, 16)


@pytest.fixture
def brats(tmp_path) -> tuple[Path, dict]:
    """One stand-in BraTS case and its datalist entry (absolute paths, as the bundle loads them)."""
    root = make_brats_dataset(tmp_path / "data", (1,), shape=SHAPE)
    folder = root / CASE
    entry = {
        "image": [str(folder / f"{CASE}-{m}.nii.gz") for m in ("t1n", "t1c", "t2w", "t2f")],
        "label": str(folder / f"{CASE}-seg.nii.gz"),
    }
    return root, entry


def findings_of(entry: dict, spec: DataSpec = BRATS_SPEC, **kwargs) -> list:
    return check_entry(entry, spec, **kwargs)


def only(findings: list, check: Check, file_name: str, severity: Severity = Severity.ERROR):
    """The single finding of ``check``; it names ``file_name`` in its file column and message."""
    matching = [f for f in findings if f.check == check]
    assert len(matching) == 1, render_table(findings)
    finding = matching[0]
    assert finding.file.endswith(file_name) and file_name in finding.message, finding
    assert finding.severity == severity and finding.case == CASE
    return finding


def save(path: str, array: np.ndarray, affine: np.ndarray = BRATS_AFFINE) -> None:
    nib.save(nib.Nifti1Image(array, affine), path)


def test_clean_case_has_no_findings(brats):
    assert findings_of(brats[1]) == []


@pytest.mark.parametrize("modality", ["t2f", "seg"])
def test_missing_modality_or_label(brats, modality):
    name = f"{CASE}-{modality}.nii.gz"
    Path(brats[0], CASE, name).unlink()
    finding = only(findings_of(brats[1]), Check.MISSING_FILE, name)
    assert ("label" if modality == "seg" else "image") + " file is missing" in finding.message


def test_garbage_file_is_unreadable(brats):
    path = Path(brats[1]["image"][1])
    path.write_bytes(gzip.compress(b"this is not a NIfTI header" * 20))
    finding = only(findings_of(brats[1]), Check.UNREADABLE, path.name)
    assert "cannot read the NIfTI header" in finding.message


def test_truncated_file_is_unreadable_but_only_when_voxels_are_read(brats):
    path = Path(brats[1]["image"][2])
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    finding = only(findings_of(brats[1]), Check.UNREADABLE, path.name)
    assert "truncated or corrupt" in finding.message
    assert findings_of(brats[1], headers_only=True) == []  # the header alone is intact


def test_channel_count_differs_from_metadata(brats):
    entry = {**brats[1], "image": brats[1]["image"][:3]}
    finding = only(findings_of(entry), Check.CHANNELS, f"{CASE}-t1n.nii.gz")
    assert "give 3 channel(s)" in finding.message and "expects 4" in finding.message


def test_four_dimensional_file_counts_its_channels(tmp_path):
    path = tmp_path / "amos_0001.nii.gz"
    save(str(path), np.zeros((*SHAPE, 2), np.float32))
    findings = findings_of({"image": str(path)}, DataSpec(num_channels=1))
    assert [f.check for f in findings] == [Check.CHANNELS] and "give 2 channel(s)" in findings[0].message


def test_label_shape_mismatch(brats):
    save(brats[1]["label"], np.zeros((16, 16, 12), np.uint8))
    finding = only(findings_of(brats[1]), Check.SHAPE_MISMATCH, f"{CASE}-seg.nii.gz")
    assert "(16, 16, 12)" in finding.message


def test_modality_affine_mismatch(brats):
    shifted = BRATS_AFFINE.copy()
    shifted[0, 3] += 2.0
    path = brats[1]["image"][3]
    save(path, np.asarray(nib.load(path).dataobj), shifted)
    finding = only(findings_of(brats[1]), Check.AFFINE_MISMATCH, f"{CASE}-t2f.nii.gz")
    assert "by up to 2 (mm)" in finding.message


def test_labels_outside_the_label_set(brats):
    labels = np.asarray(nib.load(brats[1]["label"]).dataobj).copy()
    labels[0, 0, 0] = 4  # BraTS 2021 numbering, not 2023's
    save(brats[1]["label"], labels)
    finding = only(findings_of(brats[1]), Check.LABEL_VALUES, f"{CASE}-seg.nii.gz")
    assert "values 4 outside the bundle's label set [0, 1, 2, 3]" in finding.message


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_intensities(brats, bad):
    path = brats[1]["image"][0]
    image = np.asarray(nib.load(path).dataobj).copy()
    image[3, 4, 5] = bad
    save(path, image)
    finding = only(findings_of(brats[1]), Check.NON_FINITE, f"{CASE}-t1n.nii.gz")
    assert ("1 NaN and 0 Inf" if np.isnan(bad) else "0 NaN and 1 Inf") in finding.message


def test_empty_foreground_is_a_warning(brats):
    save(brats[1]["label"], np.zeros(SHAPE, np.uint8))
    only(findings_of(brats[1]), Check.EMPTY_FOREGROUND, f"{CASE}-seg.nii.gz", Severity.WARNING)


def test_classification_label_outside_the_classes(tmp_path):
    make_adni_dataset(tmp_path, subjects_per_class=1, shape=(8, 8, 8))
    entry = {"image": str(tmp_path / "images" / "000_S_0000.nii.gz"), "label": 2, "subject": "000_S_0000"}
    findings = findings_of(entry, DataSpec(num_channels=1, label_values=(0, 1)))
    assert [f.check for f in findings] == [Check.CLASS_LABEL]
    assert findings[0].file.endswith("000_S_0000.nii.gz")
    assert "class label 2 is not one of [0, 1]" in findings[0].message


def test_landmark_outside_the_image(tmp_path):
    truth = make_fetal_dataset(tmp_path, num_cases=1, shape=(12, 14, 10))
    points = truth["fetus_000"].copy()
    entry = {"image": str(tmp_path / "images" / "fetus_000.nii.gz"), "landmarks": points.tolist(), "case": "fetus_000"}
    spec = DataSpec(num_channels=1, num_landmarks=6)
    assert findings_of(entry, spec) == []
    points[4] += 500.0
    findings = findings_of({**entry, "landmarks": points.tolist()}, spec)
    assert [f.check for f in findings] == [Check.LANDMARKS] and "landmark(s) [4] lie outside" in findings[0].message
    assert findings[0].file.endswith("fetus_000.nii.gz")


def test_training_gate_raises_with_the_table_and_allows_warnings(brats):
    metadata = json.loads((BUNDLES_DIR / "brats_nnmamba_segmentation" / "configs" / "metadata.json").read_text())
    save(brats[1]["label"], np.zeros(SHAPE, np.uint8))
    with pytest.raises(DataCheckError, match=r"(?s)0 error\(s\), 1 warning\(s\).*allow_data_warnings.*-seg.nii.gz"):
        require_clean_data([brats[1]], metadata, [0, 1, 2, 3], root=brats[0])
    assert len(require_clean_data([brats[1]], metadata, [0, 1, 2, 3], allow_warnings=True)) == 1
    Path(brats[1]["image"][0]).unlink()
    with pytest.raises(DataCheckError, match="1 error"):
        require_clean_data([brats[1]], metadata, [0, 1, 2, 3], allow_warnings=True)


def test_cli_reads_the_bundle_datalist_and_exits_non_zero(tmp_path, capsys):
    data = make_brats_dataset(tmp_path / "data", (1, 2, 3), shape=SHAPE)
    datalist = tmp_path / "datalist.json"
    datalist_cli.main(["brats", "--dataset_dir", str(data), "--output", str(datalist), "--num_folds", "3"])
    bundle = BUNDLES_DIR / "brats_nnmamba_segmentation"
    arguments = ["--bundle", str(bundle), "--dataset_dir", str(data), "--datalist_file", str(datalist)]
    assert check_data_main(arguments) == 0
    assert "0 error(s), 0 warning(s) in 3 case(s)" in capsys.readouterr().out
    bad = data / brats_case_id(2) / f"{brats_case_id(2)}-t2w.nii.gz"
    image = np.asarray(nib.load(bad).dataobj).copy()
    image[..., 0] = np.nan
    save(str(bad), image)
    assert check_data_main(arguments) == 1
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["file", "case", "check", "severity", "message"]
    row = next(line for line in out.splitlines() if "non_finite" in line)
    assert row.startswith(f"{brats_case_id(2)}/{bad.name}") and "error" in row
    assert check_data_main([*arguments, "--headers_only"]) == 0  # NaN needs the voxels


def test_absurd_header_is_refused_without_reading_voxels(brats, monkeypatch):
    path = Path(brats[1]["image"][0])
    write_absurd_header(path)

    def read_small_voxels(image):
        assert image.shape == SHAPE, f"voxels of {image.shape} read"
        return read_voxels(image)

    monkeypatch.setattr("nnmamba_monai.check_data.case_checks.read_voxels", read_small_voxels)
    finding = only(findings_of(brats[1]), Check.IMPLAUSIBLE_HEADER, path.name)
    assert "(2048, 1024, 1024) = 2147483648 voxels" in finding.message and "--max_voxels" in finding.message
    spec = DataSpec(num_channels=4, label_values=(0, 1, 2, 3), max_voxels=2**32)
    assert Check.IMPLAUSIBLE_HEADER not in {f.check for f in findings_of(brats[1], spec, headers_only=True)}


def test_cli_rejects_an_absurd_header_under_1_gib(tmp_path):
    """The whole check_data command, in its own process: exit 1, the file named, peak memory (VmHWM) < 1 GiB."""
    data = make_brats_dataset(tmp_path / "data", (1, 2), shape=SHAPE)
    datalist = tmp_path / "datalist.json"
    datalist_cli.main(["brats", "--dataset_dir", str(data), "--output", str(datalist), "--num_folds", "2"])
    bad = data / brats_case_id(2) / f"{brats_case_id(2)}-t1c.nii.gz"
    write_absurd_header(bad)
    arguments = ["--bundle", str(BUNDLES_DIR / "brats_nnmamba_segmentation"), "--dataset_dir", str(data)]
    arguments += ["--datalist_file", str(datalist)]
    script = (
        "import sys\n"
        "from nnmamba_monai.check_data.__main__ import main\n"
        f"status = main({arguments!r})\n"
        f"print('peak_rss_kib', {PEAK_RSS_KIB})\n"
        "sys.exit(status)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert result.returncode == 1, result.stdout + result.stderr
    row = next(line for line in result.stdout.splitlines() if "implausible_header" in line)
    assert row.startswith(f"{brats_case_id(2)}/{bad.name}")
    peak_kib = int(result.stdout.split("peak_rss_kib")[1].split()[0])
    print(f"check_data peak RSS rejecting a 2^31-voxel header: {peak_kib / 1024:.0f} MiB")
    assert peak_kib < 2**20, f"{peak_kib / 1024:.0f} MiB"


def _brats_cli(tmp_path, edit) -> tuple[list[str], Path]:
    """check_data arguments for a stand-in BraTS dataset whose datalist JSON was changed by ``edit(content)``."""
    data = make_brats_dataset(tmp_path / "data", (1, 2, 3), shape=SHAPE)
    datalist = tmp_path / "datalist.json"
    datalist_cli.main(["brats", "--dataset_dir", str(data), "--output", str(datalist), "--num_folds", "3"])
    content = json.loads(datalist.read_text())
    edit(content)
    datalist.write_text(json.dumps(content))
    bundle = BUNDLES_DIR / "brats_nnmamba_segmentation"
    return ["--bundle", str(bundle), "--dataset_dir", str(data), "--datalist_file", str(datalist)], datalist


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            lambda d: d["training"][1].pop("label"),
            r"training\[1\] \(BraTS-GLI-\d+-000-t1n.nii.gz\) has no key 'label'",
        ),
        (lambda d: d["training"][0].update(image=5), r"training\[0\] key 'image' is int 5; it must be a file path"),
        (lambda d: d.update(training="imagesTr"), r"'training' is str \"imagesTr\"; it must be a list of entries"),
        (lambda d: d.update(training={"image": "a"}), r"'training' is dict .*; it must be a list of entries"),
        (
            lambda d: d["training"][2].update(label=3),
            r"training\[2\] .*key 'label' is int 3; it must be a label-map",
        ),
    ],
    ids=["missing_label", "image_int", "training_str", "training_dict", "class_label_in_segmentation"],
)
def test_cli_datalist_schema_errors_are_one_line_naming_entry_and_key(tmp_path, capsys, edit, expected):
    arguments, datalist = _brats_cli(tmp_path, edit)
    with pytest.raises(SystemExit) as exited:
        check_data_main(arguments)
    assert exited.value.code == 1
    message = capsys.readouterr().err.strip()
    assert "\n" not in message and str(datalist) in message
    assert re.search(expected, message), message


def test_training_gate_checks_entry_structure(brats):
    metadata = json.loads((BUNDLES_DIR / "brats_nnmamba_segmentation" / "configs" / "metadata.json").read_text())
    entry = {key: value for key, value in brats[1].items() if key != "label"}
    with pytest.raises(DatalistSchemaError, match=r"entry 0 \(.*-t1n.nii.gz\) has no key 'label'") as raised:
        require_clean_data([entry], metadata, [0, 1, 2, 3], root=brats[0])
    assert "\n" not in str(raised.value)
    with pytest.raises(DatalistSchemaError, match="key 'image' is int 5"):
        require_clean_data([{**brats[1], "image": 5}], metadata, [0, 1, 2, 3])


def test_check_entry_reports_a_malformed_entry_instead_of_crashing():
    findings = check_entry({"image": 5, "label": "x.nii.gz"}, BRATS_SPEC)
    assert [f.check for f in findings] == [Check.DATALIST_SCHEMA] and "key 'image' is int 5" in findings[0].message

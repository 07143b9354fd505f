"""The one-command demo: its helpers, and one tiny end-to-end run of ``python -m nnmamba_monai.demo``."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import matplotlib.image as mpimg
import nibabel as nib
import numpy as np
import pytest
import torch
from ignite.engine import Engine, Events
from monai.bundle import ConfigParser

from nnmamba_monai.demo.evaluation import METRIC_COLUMNS, binary_metrics, evaluate_files, write_metrics
from nnmamba_monai.demo.figures import orthogonal_slices, plot_overlay, plot_training_curve
from nnmamba_monai.demo.history import EpochHistory, read_history
from nnmamba_monai.demo.presets import FAMILIES, network_def
from nnmamba_monai.demo.run import DATA_DIR, _validation_interval, find_bundle, write_datalist
from tests.conftest import REPO_ROOT

AFFINE_2MM = np.diag([2.0, 2.0, 2.0, 1.0])


def _cube(shape=(20, 20, 20), low=5, high=15, shift=0) -> np.ndarray:
    mask = np.zeros(shape, dtype=np.uint8)
    mask[low + shift : high + shift, low:high, low:high] = 1
    return mask


def _assert_png(path: Path, min_size: int = 200) -> None:
    image = mpimg.imread(str(path))
    assert image.ndim == 3 and min(image.shape[:2]) >= min_size, image.shape
    assert float(image.std()) > 0.01, f"{path} looks blank"


# ---------------------------------------------------------------- helpers


def test_binary_metrics_identical_masks():
    mask = _cube()
    metrics = binary_metrics(mask, mask, AFFINE_2MM)
    assert metrics["dice"] == pytest.approx(1.0)
    assert metrics["nsd"] == pytest.approx(1.0)
    assert metrics["hd95_mm"] == pytest.approx(0.0)
    assert metrics["pred_volume_ml"] == pytest.approx(1000 * 8 / 1000)  # 1000 voxels of 8 mm^3


def test_binary_metrics_shift_in_millimetres():
    reference = _cube()
    prediction = _cube(shift=1)  # one voxel = 2 mm along x
    metrics = binary_metrics(prediction, reference, AFFINE_2MM, nsd_tolerance_mm=2.0)
    assert metrics["dice"] == pytest.approx(0.9)
    assert metrics["hd95_mm"] == pytest.approx(2.0)
    assert metrics["nsd"] == pytest.approx(1.0)  # every boundary point within 2 mm


def test_binary_metrics_empty_prediction_is_finite():
    reference = _cube()
    metrics = binary_metrics(np.zeros_like(reference), reference, AFFINE_2MM)
    assert metrics["dice"] == 0.0
    assert metrics["hd95_mm"] == pytest.approx(2.0 * math.sqrt(3 * 20**2))


def test_evaluate_files_and_write_metrics(tmp_path):
    for name, mask in (("pred", _cube(shift=1)), ("ref", _cube())):
        nib.save(nib.Nifti1Image(mask, AFFINE_2MM), str(tmp_path / f"{name}.nii.gz"))
    row = {"case": "cube", **evaluate_files(tmp_path / "pred.nii.gz", tmp_path / "ref.nii.gz")}
    write_metrics([row], tmp_path / "m.csv", tmp_path / "m.json")
    with (tmp_path / "m.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == METRIC_COLUMNS
    assert float(rows[0]["dice"]) == pytest.approx(0.9)
    assert json.loads((tmp_path / "m.json").read_text())[0]["case"] == "cube"
    nib.save(nib.Nifti1Image(_cube(), np.eye(4)), str(tmp_path / "other.nii.gz"))
    with pytest.raises(ValueError, match="different affines"):
        evaluate_files(tmp_path / "other.nii.gz", tmp_path / "ref.nii.gz")


def test_orthogonal_slices_orientation():
    volume = np.arange(4 * 5 * 6).reshape(4, 5, 6)
    axial, coronal, sagittal = orthogonal_slices(volume, (1, 2, 3))
    assert axial.shape == (5, 4) and coronal.shape == (6, 4) and sagittal.shape == (6, 5)
    assert axial[2, 1] == volume[1, 2, 3]


def test_figures_are_written(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.random((30, 36, 30)).astype(np.float32)
    reference = _cube((30, 36, 30), 8, 22)
    overlay = plot_overlay(image, _cube((30, 36, 30), 9, 22), reference, tmp_path / "o.png", title="Dice 0.9")
    _assert_png(overlay)
    records = [{"epoch": e, "loss": 1.0 / e} for e in range(1, 6)]
    records[-1]["val_mean_dice"] = 0.8
    _assert_png(plot_training_curve(records, tmp_path / "c.png", title="curve"))


def test_epoch_history_records_loss_and_validation(tmp_path):
    validator = Engine(lambda engine, batch: None)
    validator.state.metrics = {}

    def step(engine, batch):
        return [{"loss": torch.tensor(float(batch))}]

    trainer = Engine(step)

    @trainer.on(Events.EPOCH_COMPLETED)
    def validate(engine):  # stands in for MONAI's ValidationHandler, attached before the history
        if engine.state.epoch == 2:
            validator.state.epoch = 2
            validator.state.metrics = {"val_mean_dice": torch.tensor(0.75)}

    history = EpochHistory(tmp_path / "history.json", validator=validator)
    history.attach(trainer)
    trainer.run([1.0, 3.0], max_epochs=2)
    records = read_history(tmp_path / "history.json")
    assert [r["epoch"] for r in records] == [1, 2]
    assert records[0]["loss"] == pytest.approx(2.0)
    assert "val_mean_dice" not in records[0]
    assert records[1]["val_mean_dice"] == pytest.approx(0.75)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_network_presets_build(family):
    net = ConfigParser({"net": network_def(family)}).get_parsed_content("net").eval()
    with torch.no_grad():
        out = net(torch.zeros(1, 1, 16, 16, 16))
    assert tuple(out.shape) == (1, 2, 16, 16, 16)


def test_network_def_unknown_family():
    with pytest.raises(ValueError, match="unknown network family"):
        network_def("unet9000")


def test_validation_interval_divides_epochs():
    assert _validation_interval(40, 5) == 5
    assert _validation_interval(7, 5) == 1
    assert _validation_interval(12, 5) == 4
    assert _validation_interval(2, 5) == 2


def test_find_bundle(tmp_path):
    assert find_bundle().name == "amos_mr_nnmamba_segmentation"
    with pytest.raises(FileNotFoundError, match="--bundle PATH"):
        find_bundle(tmp_path / "missing")


def test_datalist_cases_exist(tmp_path):
    datalist = json.loads(write_datalist(tmp_path / "d.json").read_text())
    for section in ("training", "validation", "testing"):
        for entry in datalist[section]:
            assert all(Path(path).is_file() for path in entry.values())
    assert datalist["training"][0]["image"] != datalist["testing"][0]["image"]


# ---------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory) -> tuple[Path, dict]:
    output = tmp_path_factory.mktemp("demo")
    command = [
        sys.executable,
        "-m",
        "nnmamba_monai.demo",
        "--epochs=2",
        "--samples-per-epoch=2",
        "--patch-size=32",
        "--val-interval=1",
        "--threads=1",
        f"--output={output}",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    # the demo's progress bars are UTF-8 whatever locale this process was left in by an earlier test
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, encoding="utf-8", timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "epoch   1/2" in result.stdout and "Dice" in result.stdout, result.stdout[-3000:]
    return output, json.loads((output / "summary.json").read_text())


def test_demo_checkpoint_loads_strictly(demo_run):
    _, summary = demo_run
    state = torch.load(summary["files"]["checkpoint"], map_location="cpu", weights_only=True)
    state = state.get("model", state)
    net = ConfigParser({"net": network_def("nnmamba")}).get_parsed_content("net")
    net.load_state_dict(state, strict=True)
    assert sum(p.numel() for p in net.parameters()) == summary["parameters"]
    # the override file that serves this checkpoint through MONAI Label (docs/monailabel.md)
    override = json.loads(Path(summary["files"]["monailabel_override"]).read_text())
    assert override["network_def"] == network_def("nnmamba")
    assert Path(override["ckpt_dir"]) == Path(summary["files"]["checkpoint"]).parent
    assert override["_meta_::network_data_format::outputs::pred::channel_def"] == {"0": "background", "1": "brain"}


def test_demo_prediction_on_input_grid(demo_run):
    _, summary = demo_run
    prediction = nib.load(summary["files"]["prediction"])
    image = nib.load(str(DATA_DIR / "colin27_t1.nii.gz"))
    assert prediction.shape == image.shape
    np.testing.assert_allclose(prediction.affine, image.affine, atol=1e-4)
    assert set(np.unique(np.asarray(prediction.dataobj))) <= {0, 1}


def test_predict_with_the_demo_model_reproduces_its_prediction_from_an_mgz(demo_run, tmp_path):
    """``python -m nnmamba_monai.predict --ckpt_dir <demo>/models`` layers the demo's models/network.json, so the
    demo's checkpoint on Colin27 (here converted to .mgz) gives the demo's own prediction, voxel for voxel."""
    from nnmamba_monai.predict.cli import predict

    _, summary = demo_run
    models = Path(summary["files"]["checkpoint"]).parent
    settings = json.loads(Path(summary["files"]["network_settings"]).read_text())
    assert Path(summary["files"]["network_settings"]) == models / "network.json"
    assert settings["network_def"] == network_def("nnmamba") and settings["num_classes"] == 2
    image = nib.load(str(DATA_DIR / "colin27_t1.nii.gz"))
    mgz = tmp_path / "colin27.mgz"
    nib.save(nib.MGHImage(np.asarray(image.dataobj, dtype=np.float32), image.affine), str(mgz))
    predict("amos_mr_nnmamba_segmentation", [str(mgz)], tmp_path / "out", ckpt_dir=models, device="cpu")
    predicted = nib.load(str(tmp_path / "out" / "colin27_seg.nii.gz"))
    demo = nib.load(summary["files"]["prediction"])
    np.testing.assert_allclose(predicted.affine, demo.affine, atol=1e-4)
    np.testing.assert_array_equal(np.asarray(predicted.dataobj), np.asarray(demo.dataobj))


def test_demo_metrics_tables(demo_run):
    output, summary = demo_run
    with (output / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == METRIC_COLUMNS and rows[0]["case"] == "colin27"
    metrics = json.loads((output / "metrics.json").read_text())[0]
    assert 0.0 <= metrics["dice"] <= 1.0 and 0.0 <= metrics["nsd"] <= 1.0
    assert math.isfinite(metrics["hd95_mm"]) and metrics["hd95_mm"] >= 0.0
    assert metrics["ref_volume_ml"] > 1000  # an adult brain at 2 mm
    assert summary["metrics"]["dice"] == pytest.approx(metrics["dice"])


def test_demo_history_and_figures(demo_run):
    _, summary = demo_run
    records = read_history(summary["files"]["history"])
    assert [r["epoch"] for r in records] == [1, 2]
    assert all(math.isfinite(r["loss"]) and "val_mean_dice" in r for r in records)
    _assert_png(Path(summary["files"]["overlay_png"]), min_size=300)
    _assert_png(Path(summary["files"]["training_curve_png"]), min_size=300)


def test_demo_help_mentions_options():
    result = subprocess.run(
        [sys.executable, "-m", "nnmamba_monai.demo", "--help"],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0
    for option in ("--output", "--epochs", "--network", "--seed", "--device", "--bundle"):
        assert option in result.stdout


def test_demo_missing_bundle_is_a_clear_error(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "nnmamba_monai.demo", f"--bundle={tmp_path / 'nope'}", f"--output={tmp_path}"],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "not found" in result.stderr and "Traceback" not in result.stderr


def test_epoch_line_reports_a_missing_metric_as_missing_not_zero():
    line = EpochHistory._line({"epoch": 1, "loss": 0.5, "val_mean_dice": 0.0, "seconds": 2.0}, 2, ["val_mean_hd95"])
    assert "val_mean_hd95 n/a" in line and "val_mean_hd95 0.0000" not in line


def test_demo_predicts_and_scores_the_out_of_distribution_case(demo_run):
    output, summary = demo_run
    ood = summary["ood_metrics"]
    assert ood["case"] == "colin27_inverted" and 0.0 <= ood["dice"] <= 1.0 and math.isfinite(ood["hd95_mm"])
    rows = json.loads((output / "metrics.json").read_text())
    assert [r["case"] for r in rows] == ["colin27", "colin27_inverted"]
    assert rows[1]["ref_volume_ml"] == pytest.approx(rows[0]["ref_volume_ml"])  # Colin27's mask for both
    image = nib.load(str(output / "ood" / "colin27_inverted_t1.nii.gz"))
    t1 = nib.load(str(DATA_DIR / "colin27_t1.nii.gz"))
    np.testing.assert_allclose(image.affine, t1.affine)
    inverted, original = np.asarray(image.dataobj), np.asarray(t1.dataobj, dtype=np.float32)
    head = inverted > 0
    # inside the head the order of intensities is reversed: the brightest T1 voxels are now among the darkest
    assert np.corrcoef(inverted[head], original[head])[0, 1] < -0.9
    prediction = nib.load(summary["files"]["ood_prediction"])
    assert prediction.shape[:3] == t1.shape

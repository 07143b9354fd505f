"""brats_nnmamba_segmentation run as users run it (``python -m monai.bundle ...``) on stand-in BraTS 2023 files.

Three generated 32^3 cases in the real case-folder layout: two train (2 iterations of batch 1), one validates.
The network is shrunk (``network_def#channels`` 8) and the patch is 32^3 to keep CPU time small.
"""

from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest
import torch

from nnmamba_monai import nnMambaSeg
from nnmamba_monai.datalist import __main__ as datalist_cli
from tests.bundle_support import (
    assert_trained_export_matches_eager,
    check_workflow_properties,
    copy_bundle,
    read_csv_rows,
    run_bundle,
    verify_metadata,
    verify_net_in_out,
)
from tests.bundles.standin_data import make_brats_dataset

BUNDLE = "brats_nnmamba_segmentation"
TINY = {"num_workers": 0, "patch_size": [32, 32, 32], "network_def#channels": 8, "sw_batch_size": 1}
REGIONS = ("wt", "tc", "et")


def region_masks(label_map: np.ndarray) -> dict[str, np.ndarray]:
    """BraTS 2023 label map -> WT, TC, ET boolean masks."""
    return {"wt": label_map > 0, "tc": np.isin(label_map, (1, 3)), "et": label_map == 3}


def dice(prediction: np.ndarray, truth: np.ndarray) -> float:
    """Dice with MONAI's ignore_empty=False convention (both empty = 1)."""
    total = prediction.sum() + truth.sum()
    return 1.0 if total == 0 else 2.0 * np.logical_and(prediction, truth).sum() / total


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Stand-in data, datalists, a copy of the bundle, and one training run (1 epoch, 2 iterations)."""
    root = tmp_path_factory.mktemp("brats_bundle")
    data = make_brats_dataset(root / "TrainingData", (1, 2, 3))
    datalist = root / "datalist.json"
    datalist_cli.main(["brats", "--dataset_dir", str(data), "--output", str(datalist), "--num_folds", "3"])
    bundle = copy_bundle(BUNDLE, root)
    common = {**TINY, "dataset_dir": str(data), "datalist_file": str(datalist)}
    result = run_bundle(bundle, ["configs/train.json"], max_epochs=1, val_interval=1, batch_size=1, **common)
    return SimpleNamespace(root=root, data=data, datalist=datalist, bundle=bundle, common=common, log=result)


@pytest.fixture(scope="module")
def evaluated(trained):
    """``configs/train.json`` + ``configs/evaluate.json`` on the validation case."""
    run_bundle(trained.bundle, ["configs/train.json", "configs/evaluate.json"], **trained.common)
    return trained.bundle / "eval"


def validation_case(trained) -> str:
    import json

    entries = json.loads(trained.datalist.read_text())["training"]
    return [e for e in entries if e["fold"] == 0][0]["label"].split("/")[0]  # the bundle's default val_fold


def test_training_writes_a_checkpoint_of_the_configured_network(trained):
    log = trained.log.stdout + trained.log.stderr
    assert "Epoch: 1/1, Iter: 2/2" in log, "two training iterations"
    assert "val_mean_dice" in log and "val_hd95_et" in log, "validation ran with per-region metrics"
    state = torch.load(trained.bundle / "models" / "model.pt", map_location="cpu", weights_only=True)
    expected = nnMambaSeg(3, 4, 3, channels=8, out_relu=False).state_dict()
    assert {k: tuple(v.shape) for k, v in state.items()} == {k: tuple(v.shape) for k, v in expected.items()}
    assert list((trained.bundle / "eval").glob("events.out.tfevents.*")), "TensorBoard event files"
    # the network's settings beside its weights: inference.json's network_def with this run's width
    written = json.loads((trained.bundle / "models" / "network.json").read_text())["network_def"]
    inference = json.loads((trained.bundle / "configs" / "inference.json").read_text())["network_def"]
    assert written == {**inference, "channels": 8}


def test_predict_layers_the_trained_settings_on_a_case_of_four_files(trained, tmp_path):
    """The checkpoint trained with channels 8: ``monai.bundle run`` of inference.json with models/network.json
    layered and one case as ``--input_image`` (a list of its four files), no datalist."""
    case = validation_case(trained)
    files = [str(trained.data / case / f"{case}-{s}.nii.gz") for s in ("t1n", "t1c", "t2w", "t2f")]
    run_bundle(
        trained.bundle,
        ["configs/inference.json", "models/network.json"],
        input_image=files,
        datalist_file=str(tmp_path / "none.json"),
        output_dir=str(tmp_path),
        num_workers=0,
        patch_size=[32, 32, 32],
        sw_batch_size=1,
    )
    saved = nib.load(tmp_path / f"{case}.nii.gz")
    reference = nib.load(files[0])
    assert saved.shape == reference.shape
    np.testing.assert_allclose(saved.affine, reference.affine)


def test_evaluation_metrics_match_the_saved_label_maps(trained, evaluated):
    case = validation_case(trained)
    lines = (evaluated / "metrics.csv").read_text().split()
    metrics = {name: float(value) for name, value in (line.split(",") for line in lines)}
    expected_names = {"val_mean_dice", "val_mean_hd95"} | {f"val_{m}_{r}" for m in ("dice", "hd95") for r in REGIONS}
    assert set(metrics) == expected_names
    saved = nib.load(evaluated / f"{case}.nii.gz")
    reference = nib.load(trained.data / case / f"{case}-t1n.nii.gz")
    np.testing.assert_allclose(saved.affine, reference.affine)
    prediction = np.asarray(saved.dataobj)
    assert prediction.shape == reference.shape and saved.get_data_dtype() == np.uint8
    assert set(np.unique(prediction)) <= {0, 1, 2, 3}
    truth = np.asarray(nib.load(trained.data / case / f"{case}-seg.nii.gz").dataobj)
    predicted, expected = region_masks(prediction), region_masks(truth)
    for region in REGIONS:
        assert metrics[f"val_dice_{region}"] == pytest.approx(dice(predicted[region], expected[region]), abs=1e-5)
        assert metrics[f"val_hd95_{region}"] >= 0.0 and np.isfinite(metrics[f"val_hd95_{region}"])
    assert metrics["val_mean_dice"] == pytest.approx(np.mean([metrics[f"val_dice_{r}"] for r in REGIONS]), abs=1e-5)
    rows = read_csv_rows(evaluated / "val_mean_dice_raw.csv")
    assert len(rows) == 1 and rows[0]["filename"].endswith(f"{case}-t1n.nii.gz")
    assert [float(rows[0][f"class{i}"]) for i in range(3)] == pytest.approx(
        [metrics[f"val_dice_{r}"] for r in REGIONS], abs=1e-4
    )


def test_inference_on_unlabelled_cases_writes_label_maps_on_the_input_grid(trained, evaluated, tmp_path):
    # an unlabelled folder (like the challenge's validation data) holding a copy of the validation case
    case = validation_case(trained)
    unlabelled = tmp_path / "ValidationData"
    shutil.copytree(trained.data / case, unlabelled / case, ignore=shutil.ignore_patterns("*-seg.nii.gz"))
    datalist = tmp_path / "test_datalist.json"
    datalist_cli.main(["brats", "--dataset_dir", str(unlabelled), "--output", str(datalist), "--unlabelled"])
    output_dir = tmp_path / "predictions"
    # exactly the README's command, run from the bundle folder (bundle_root ".")
    run_bundle(
        trained.bundle,
        ["configs/inference.json"],
        from_bundle_dir=True,
        **{**TINY, "dataset_dir": str(unlabelled), "datalist_file": str(datalist), "output_dir": str(output_dir)},
    )
    saved = nib.load(output_dir / f"{case}.nii.gz")
    reference = nib.load(unlabelled / case / f"{case}-t1n.nii.gz")
    np.testing.assert_allclose(saved.affine, reference.affine)
    assert saved.shape == reference.shape
    # inference and evaluation post-process identically
    np.testing.assert_array_equal(np.asarray(saved.dataobj), np.asarray(nib.load(evaluated / f"{case}.nii.gz").dataobj))


def test_metadata_verifies_against_the_schema(trained):
    verify_metadata(trained.bundle)


def test_network_input_output_match_the_metadata(trained):
    verify_net_in_out(trained.bundle, n=2, **{"network_def#channels": 8})


def test_torchscript_export_of_the_trained_network_matches_eager(trained, tmp_path):
    assert_trained_export_matches_eager(trained.bundle, tmp_path, (1, 4, 32, 32, 32), (1, 4, 48, 32, 64))


@pytest.mark.parametrize(
    ("configs", "workflow_type"), [(["configs/train.json"], "train"), (["configs/inference.json"], "infer")]
)
def test_workflow_properties_are_complete(trained, configs, workflow_type):
    overrides = {**trained.common, "datalist_key": "validation"} if workflow_type == "infer" else trained.common
    assert check_workflow_properties(trained.bundle, configs, workflow_type, **overrides) == []

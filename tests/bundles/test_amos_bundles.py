"""amos_ct_nnmamba_segmentation and amos_mr_nnmamba_segmentation run as users run them, on stand-in AMOS22 files.

The stand-in release holds CT (ids <= 500, Hounsfield units) and MR (ids > 500) cases of 40x40x16 voxels at
0.8 x 0.8 x 2.5 mm with a flipped (LPS-like) affine, so reorientation, resampling to 1.5 x 1.5 x 2 mm and
the inversion back to the input grid are all exercised. Each bundle trains 2 iterations on its own modality.
"""

from __future__ import annotations

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
from tests.bundles.standin_data import make_amos_dataset

TINY = {"num_workers": 0, "patch_size": [32, 32, 32], "network_def#channels": 8, "sw_batch_size": 1}
CASES = {  # modality -> (validation case, test case)
    "ct": ("amos_0008", "amos_0009"),
    "mr": ("amos_0508", "amos_0509"),
}
NUM_ORGANS = 15


@pytest.fixture(scope="module")
def amos_release(tmp_path_factory):
    return make_amos_dataset(
        tmp_path_factory.mktemp("amos") / "amos22", training=(1, 2, 507, 510), validation=(8, 508), test=(9, 509)
    )


@pytest.fixture(scope="module", params=["ct", "mr"])
def trained(request, amos_release, tmp_path_factory):
    """The modality's datalist, a copy of its bundle, and one training run (1 epoch, 2 iterations)."""
    modality = request.param
    root = tmp_path_factory.mktemp(f"amos_{modality}")
    datalist = root / "datalist.json"
    datalist_cli.main(["amos", "--dataset_dir", str(amos_release), "--output", str(datalist), "--modality", modality])
    bundle = copy_bundle(f"amos_{modality}_nnmamba_segmentation", root)
    common = {**TINY, "dataset_dir": str(amos_release), "datalist_file": str(datalist)}
    log = run_bundle(bundle, ["configs/train.json"], max_epochs=1, val_interval=1, batch_size=1, **common)
    run_bundle(bundle, ["configs/train.json", "configs/evaluate.json"], **common)
    return SimpleNamespace(modality=modality, root=root, bundle=bundle, common=common, log=log, data=amos_release)


def dice_per_organ(prediction: np.ndarray, truth: np.ndarray) -> list[float]:
    """Dice per organ 1..15 with MONAI's ignore_empty convention (NaN where the organ is absent)."""
    scores = []
    for organ in range(1, NUM_ORGANS + 1):
        predicted, expected = prediction == organ, truth == organ
        if not expected.any():
            scores.append(float("nan"))
            continue
        scores.append(2.0 * np.logical_and(predicted, expected).sum() / (predicted.sum() + expected.sum()))
    return scores


def test_training_writes_a_checkpoint_and_validates_with_surface_metrics(trained):
    log = trained.log.stdout + trained.log.stderr
    assert "Epoch: 1/1, Iter: 2/2" in log, "two training iterations on this modality's two cases"
    assert all(name in log for name in ("val_mean_dice", "val_mean_nsd", "val_mean_hd95"))
    state = torch.load(trained.bundle / "models" / "model.pt", map_location="cpu", weights_only=True)
    expected = nnMambaSeg(3, 1, 16, channels=8, out_relu=False).state_dict()
    assert {k: tuple(v.shape) for k, v in state.items()} == {k: tuple(v.shape) for k, v in expected.items()}
    assert list((trained.bundle / "eval").glob("events.out.tfevents.*")), "TensorBoard event files"


def test_evaluation_is_on_the_original_grid_against_the_original_label(trained):
    case = CASES[trained.modality][0]
    evaluated = trained.bundle / "eval"
    saved = nib.load(evaluated / f"{case}_seg.nii.gz")
    image = nib.load(trained.data / "imagesVa" / f"{case}.nii.gz")
    np.testing.assert_allclose(saved.affine, image.affine, atol=1e-5)
    prediction = np.asarray(saved.dataobj)
    assert prediction.shape == image.shape and saved.get_data_dtype() == np.uint8
    assert set(np.unique(prediction)) <= set(range(NUM_ORGANS + 1))
    truth = np.asarray(nib.load(trained.data / "labelsVa" / f"{case}.nii.gz").dataobj)
    rows = {row["filename"]: row for row in read_csv_rows(evaluated / "val_mean_dice_raw.csv")}
    row = rows[str(trained.data / "imagesVa" / f"{case}.nii.gz")]
    reported = [float(row[f"class{i}"]) for i in range(NUM_ORGANS)]
    np.testing.assert_allclose(reported, dice_per_organ(prediction, truth), atol=1e-4)
    metrics = dict(line.split(",") for line in (evaluated / "metrics.csv").read_text().split())
    assert set(metrics) == {"val_mean_dice", "val_mean_nsd", "val_mean_hd95"}
    assert 0.0 <= float(metrics["val_mean_dice"]) <= 1.0 and 0.0 <= float(metrics["val_mean_nsd"]) <= 1.0
    for name in ("val_mean_nsd", "val_mean_hd95"):
        columns = read_csv_rows(evaluated / f"{name}_raw.csv")[0]
        assert list(columns)[1 : NUM_ORGANS + 1] == [f"class{i}" for i in range(NUM_ORGANS)], "one column per organ"


def test_inference_writes_label_maps_on_the_input_grid(trained, tmp_path):
    case = CASES[trained.modality][1]
    run_bundle(trained.bundle, ["configs/inference.json"], output_dir=str(tmp_path), **trained.common)
    written = sorted(p.name for p in tmp_path.glob("*.nii.gz"))
    assert written == [f"{case}_seg.nii.gz"], "exactly this modality's test case"
    saved = nib.load(tmp_path / f"{case}_seg.nii.gz")
    image = nib.load(trained.data / "imagesTs" / f"{case}.nii.gz")
    np.testing.assert_allclose(saved.affine, image.affine, atol=1e-5)
    assert saved.shape == image.shape
    assert set(np.unique(np.asarray(saved.dataobj))) <= set(range(NUM_ORGANS + 1))


def test_metadata_verifies_against_the_schema(trained):
    # the same monai.bundle.verify_metadata the CLI calls (test_brats_bundle runs the CLI itself)
    verify_metadata(trained.bundle, cli=False)


def test_network_input_output_match_the_metadata(trained):
    verify_net_in_out(trained.bundle, n=2, **{"network_def#channels": 8})


def test_torchscript_export_of_the_trained_network_matches_eager(trained, tmp_path):
    assert_trained_export_matches_eager(trained.bundle, tmp_path, (1, 1, 32, 32, 32), (1, 1, 32, 48, 32))


@pytest.mark.parametrize(
    ("configs", "workflow_type"), [(["configs/train.json"], "train"), (["configs/inference.json"], "infer")]
)
def test_workflow_properties_are_complete(trained, configs, workflow_type):
    assert check_workflow_properties(trained.bundle, configs, workflow_type, **trained.common) == []

"""brain_nnmamba_extraction in the model zoo's unit-test pattern: train, train + evaluate, inference, each through
MONAI's ``ConfigWorkflow`` / ``monai.bundle run`` with its properties checked.

Data: the demo's two real 2 mm T1 volumes (ICBM 2009c template to train, Colin27 to validate) with their brain
masks; a small network (8 channels, 32³ crops, one epoch of two crops) keeps it to seconds on a CPU.
"""

from __future__ import annotations

import json
import shutil

import nibabel as nib
import numpy as np
import pytest
import torch

from nnmamba_monai.demo.run import DATA_DIR
from tests.bundle_support import BUNDLES_DIR, assert_weights_kept, check_workflow_properties, copy_bundle, run_bundle

NAME = "brain_nnmamba_extraction"
SMALL = {
    "num_workers": 0,
    "cache_rate": 0.0,
    "patch_size": [32, 32, 32],
    "sw_batch_size": 1,
    "network_def#channels": 8,
}
ONE_EPOCH = {"max_epochs": 1, "samples_per_epoch": 2, "batch_size": 1, "val_interval": 1}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("brain")
    data = root / "data"
    data.mkdir()
    for case in ("icbm2009c", "colin27"):
        for kind in ("t1", "brainmask"):
            shutil.copyfile(DATA_DIR / f"{case}_{kind}.nii.gz", data / f"{case}_{kind}.nii.gz")
    bundle = copy_bundle(NAME, root)
    datalist = {
        "training": [
            {"image": "icbm2009c_t1.nii.gz", "label": "icbm2009c_brainmask.nii.gz", "fold": 1},
            {"image": "colin27_t1.nii.gz", "label": "colin27_brainmask.nii.gz", "fold": 0},
        ],
        # evaluate.json scores the labelled held-out list ("testing"), as the bundle's own evaluation does
        "testing": [{"image": "colin27_t1.nii.gz", "label": "colin27_brainmask.nii.gz"}],
    }
    (bundle / "configs" / "datalist.json").write_text(json.dumps(datalist))
    common = {"dataset_dir": str(data), **SMALL}
    assert check_workflow_properties(bundle, ["configs/train.json"], "train", **common, **ONE_EPOCH) == []
    log = run_bundle(bundle, ["configs/train.json"], **common, **ONE_EPOCH).stdout
    return bundle, data, common, log


def test_training_writes_the_checkpoint_and_its_network_settings(trained):
    bundle, _, _, log = trained
    assert "Epoch: 1/1, Iter: 2/2" in log
    settings = json.loads((bundle / "models" / "network.json").read_text())["network_def"]
    assert settings["channels"] == 8 and settings["out_channels"] == 2
    state = torch.load(bundle / "models" / "model.pt", map_location="cpu", weights_only=True)
    assert state["in_conv.conv.0.weight"].shape[:2] == (8, 1)


def test_evaluation_scores_the_held_out_list(trained):
    bundle, _, common, _ = trained
    configs = ["configs/train.json", "configs/evaluate.json"]
    assert check_workflow_properties(bundle, configs, "train", **common) == []
    run_bundle(bundle, configs, **common)
    rows = (bundle / "eval" / "val_mean_dice_raw.csv").read_text().splitlines()
    assert len(rows) == 2 and "colin27_t1" in rows[1]  # header + the one held-out case


def test_inference_writes_a_mask_on_the_input_grid(trained, tmp_path):
    bundle, data, common, _ = trained
    configs = ["configs/inference.json", "models/network.json"]  # the trained widths travel with the checkpoint
    # inference reads no cache and builds the trained network from network.json
    small = {k: v for k, v in common.items() if not k.startswith("network_def") and k != "cache_rate"}
    assert check_workflow_properties(bundle, configs, "infer", **small) == []
    run_bundle(bundle, configs, input_image=str(data / "colin27_t1.nii.gz"), output_dir=str(tmp_path), **small)
    (written,) = tmp_path.glob("colin27_t1*.nii.gz")
    mask, image = nib.load(str(written)), nib.load(str(data / "colin27_t1.nii.gz"))
    assert mask.shape == image.shape and np.allclose(mask.affine, image.affine)
    assert set(np.unique(np.asarray(mask.dataobj))) <= {0, 1}


def test_fine_tuning_starts_from_the_shipped_weights(trained, tmp_path):
    """``--pretrained_ckpt`` fine-tunes the shipped weights: every tensor loads, and with a learning rate of 0 the
    new checkpoint's weights are exactly the shipped ones (a run from scratch would start elsewhere)."""
    bundle, _, common, _ = trained
    shipped = BUNDLES_DIR / NAME / "models" / "model.pt"
    finetuned = tmp_path / "models"
    result = run_bundle(
        bundle,
        ["configs/train.json"],
        **common,
        **ONE_EPOCH,
        pretrained_ckpt=str(shipped),
        learning_rate=0.0,
        ckpt_dir=str(finetuned),
        output_dir=str(tmp_path / "eval"),
    )
    expected = torch.load(shipped, map_location="cpu", weights_only=True)
    total = len(expected)
    assert f"fine-tuning from {shipped}: {total} of {total} network tensors loaded" in result.stdout + result.stderr
    assert_weights_kept(finetuned / "model.pt", shipped)


def test_a_missing_pretrained_file_ends_the_run_with_one_line(trained, tmp_path):
    bundle, _, common, _ = trained
    missing = tmp_path / "no_such_model.pt"
    result = run_bundle(
        bundle,
        ["configs/train.json"],
        expect_success=False,
        **common,
        **ONE_EPOCH,
        check_data=False,
        pretrained_ckpt=str(missing),
        ckpt_dir=str(tmp_path / "models"),
        output_dir=str(tmp_path / "eval"),
    )
    assert result.returncode == 1
    last_line = result.stderr.strip().splitlines()[-1]  # the run's logging goes to stdout
    assert last_line == f"PretrainedWeightsNotFoundError: pretrained_ckpt: checkpoint file not found: {missing}"
    assert "Epoch: 1/" not in result.stdout + result.stderr

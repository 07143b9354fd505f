"""fetal_nnmamba_landmark: metadata, network I/O, workflow properties, landmark targets through the bundle's own
transforms, train / evaluate / infer with world-coordinate CSVs, TorchScript export. CPU, tiny generated cases in the
real layout (images/<case>.nii.gz + landmarks/<case>.json, oblique anisotropic affines)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser

from nnmamba_monai.datalist.__main__ import main as datalist_main
from nnmamba_monai.landmarks import FETAL_CEREBELLUM_LANDMARKS, HeatmapToWorldLandmarksd
from nnmamba_monai.networks import nnMambaSeg
from tests.bundle_support import (
    assert_trained_export_matches_eager,
    check_workflow_properties,
    copy_bundle,
    network_overrides_for,
    parse_bundle_configs,
    read_csv_rows,
    run_bundle,
    verify_metadata,
    verify_net_in_out,
)
from tests.bundles.synthetic import OBLIQUE_AFFINE, make_fetal_dataset
from tests.conftest import REPO_ROOT

NAME = "fetal_nnmamba_landmark"
SOURCE = REPO_ROOT / "bundles" / NAME
IMAGE_SIZE = [32, 32, 32]
CASE_SHAPE = (24, 28, 20)  # generated volumes: voxels of 0.8 x 1.2 x 1.5 mm, axes permuted and flipped
TINY = {"image_size": IMAGE_SIZE, "network_def#channels": 8, "num_workers": 0, "cache_rate": 0.0, "heatmap_sigma": 1.5}
COLUMNS = ["image", *[f"{name}_{axis}_mm" for name in FETAL_CEREBELLUM_LANDMARKS for axis in "xyz"]]


def landmark_table(path: Path) -> dict[str, np.ndarray]:
    """landmarks.csv -> {case id: (6, 3) RAS mm}; checks the header."""
    rows = read_csv_rows(path)
    assert rows and list(rows[0]) == COLUMNS
    return {
        Path(r["image"]).name.removesuffix(".nii.gz"): np.array([float(r[c]) for c in COLUMNS[1:]]).reshape(6, 3)
        for r in rows
    }


def voxel_error(world_error: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Lengths, in voxels of the grid with ``affine``, of world-space error vectors (..., 3)."""
    return np.linalg.norm(world_error @ np.linalg.inv(affine[:3, :3]).T, axis=-1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The bundle copied to a tmp dir, 6 generated cases (3 folds), and one training run (2 iterations)."""
    root = tmp_path_factory.mktemp("fetal")
    dataset_dir = root / "fetal"
    truth = make_fetal_dataset(dataset_dir, num_cases=6, shape=CASE_SHAPE)
    bundle = copy_bundle(NAME, root)
    datalist_file = bundle / "configs" / "datalist.json"
    args = ["fetal", "--dataset_dir", str(dataset_dir), "--output", str(datalist_file), "--num_folds", "3"]
    assert datalist_main(args) == 0
    overrides = {**TINY, "val_interval": 1, "train#trainer#max_epochs": 2}
    # as the README writes it: from inside the bundle folder, relative config paths, bundle_root "."
    result = run_bundle(bundle, ["configs/train.json"], from_bundle_dir=True, dataset_dir=dataset_dir, **overrides)
    datalist = json.loads(datalist_file.read_text())
    return SimpleNamespace(
        root=root, dataset_dir=dataset_dir, bundle=bundle, truth=truth, datalist=datalist, log=result.stdout
    )


def test_metadata_verifies_against_the_schema():
    # in-process: the function behind `python -m monai.bundle verify_metadata` (the ADNI test runs the CLI)
    verify_metadata(SOURCE, cli=False)


def test_network_in_out_with_the_published_configuration():
    verify_net_in_out(SOURCE, n=2)  # the full network (C=32), 32^3 input, six heatmaps out


def test_configs_agree_on_network_preprocessing_and_landmark_order():
    train, infer, meta = (
        ConfigParser.load_config_file(SOURCE / "configs" / f) for f in ("train.json", "inference.json", "metadata.json")
    )
    assert "inference_network_def(@bundle_root" in train["network_def"] and infer["network_def"]["out_relu"] is False
    # training reads the datalist's NIfTI files; inference reads any scan format (nnmamba_monai.transforms.ScanReader)
    assert infer["image_size"] == train["image_size"] and "ScanReader" in infer["image_reader"]
    image_transforms = [t for t in train["train"]["deterministic_transforms"] if t["keys"] == "image"]
    assert infer["preprocessing"]["transforms"] == image_transforms
    names = list(FETAL_CEREBELLUM_LANDMARKS)
    assert train["landmark_names"] == infer["landmark_names"] == names
    assert list(meta["network_data_format"]["outputs"]["pred"]["channel_def"].values()) == names
    assert (
        train["learning_rate"] == 0.002
        and train["optimizer"]["lr"] == "@learning_rate"
        and train["optimizer"]["weight_decay"] == 0.001
        and train["batch_size"] == 2
    )
    assert train["train"]["trainer"]["max_epochs"] == 100
    # the two bundles share one multi-GPU override (run under torchrun in test_adni_bundle.py)
    adni = REPO_ROOT / "bundles" / "adni_nnmamba_classification" / "configs" / "multi_gpu_train.json"
    assert (SOURCE / "configs" / "multi_gpu_train.json").read_text() == adni.read_text()


def test_workflow_properties_complete_for_train_and_infer(trained):
    data = {"dataset_dir": str(trained.dataset_dir), **TINY}
    assert check_workflow_properties(trained.bundle, ["configs/train.json"], "train", **data) == []
    assert check_workflow_properties(trained.bundle, ["configs/inference.json"], "infer", **data) == []


@pytest.mark.parametrize("section", ["validate", "train"])
def test_heatmap_targets_decode_to_the_world_landmarks_within_one_voxel(trained, section):
    """The bundle's own preprocessing (reorientation, resizing, random affine for training) then GenerateHeatmapd:
    decoding the target heatmaps with the final affine gives back the landmark file's world coordinates."""
    overrides = {"dataset_dir": str(trained.dataset_dir), **network_overrides_for("configs/train.json", TINY)}
    overrides["train#random_transforms#0#prob"] = 1.0  # always rotate / scale
    parser = parse_bundle_configs(trained.bundle, "train.json", **overrides)
    preprocessing = parser.get_parsed_content(f"{section}#preprocessing")
    preprocessing.set_random_state(seed=0)  # deterministic test (40 seeds were checked once, worst 0.81 voxel)
    decode = HeatmapToWorldLandmarksd(keys="label", ref_image_keys="image", output_keys="decoded")
    for entry in parser.get_parsed_content("datalist"):
        item = decode(preprocessing(entry))
        assert tuple(item["label"].shape) == (6, *IMAGE_SIZE)
        assert (item["label"].amax(dim=(1, 2, 3)) == 1.0).all()  # every landmark inside the grid
        truth = trained.truth[entry["case_id"]]
        errors = voxel_error(item["decoded"].numpy() - truth, item["image"].affine.numpy())
        # GenerateHeatmapd centres each Gaussian on the nearest voxel: up to sqrt(3)/2 voxel, never more
        assert errors.max() < math.sqrt(3) / 2 + 0.05, (entry["case_id"], errors)


def test_training_runs_two_epochs_and_saves_a_loadable_checkpoint(trained):
    assert "Epoch: 2/2, Iter: 2/2" in trained.log and "val_mre" in trained.log
    state = torch.load(trained.bundle / "models" / "model.pt", map_location="cpu", weights_only=True)
    nnMambaSeg(in_channels=1, out_channels=6, channels=8, out_relu=False).load_state_dict(state, strict=True)
    events = list((trained.bundle / "eval").glob("events.out.tfevents.*"))
    assert events and max(e.stat().st_size for e in events) > 100


def test_learning_rate_follows_the_poly_schedule_and_is_checkpointed(trained):
    """Poly decay (nnU-Net's default): lr_e = 2e-3 * (1 - e / max_epochs) ** 0.9 after epoch e, logged every epoch;
    the scheduler's state is part of the resumable checkpoint."""
    train = ConfigParser.load_config_file(SOURCE / "configs" / "train.json")
    assert train["lr_scheduler"]["_target_"] == "torch.optim.lr_scheduler.PolynomialLR"
    assert train["lr_scheduler"]["total_iters"] == "@train#trainer#max_epochs"
    rates = [float(r) for r in re.findall(r"Current learning rate: ([0-9.eE+-]+)", trained.log)]
    assert rates == pytest.approx([0.002 * 0.5**0.9, 0.0])  # max_epochs 2: halfway, then zero after the last epoch
    assert rates[0] < 0.002 and rates[1] < rates[0]
    state = torch.load(trained.bundle / "models" / "last.pt", map_location="cpu", weights_only=True)
    assert state["lr_scheduler"]["last_epoch"] == 2


def test_training_augments_contrast_including_a_t2_like_inversion():
    train = ConfigParser.load_config_file(SOURCE / "configs" / "train.json")
    targets = [t["_target_"] for t in train["train"]["random_transforms"]]
    assert targets[0] == "RandAffined"
    for name in ("nnmamba_monai.transforms.RandIntensityInversiond", "nnmamba_monai.transforms.RandIntensityCurved",
                 "RandAdjustContrastd", "RandHistogramShiftd", "RandBiasFieldd"):  # fmt: skip
        assert name in targets, name
    curve = next(t for t in train["train"]["random_transforms"] if t["_target_"].endswith("RandIntensityCurved"))
    assert curve["prob"] == "@contrast_curve_prob" and train["contrast_curve_prob"] > 0
    assert all(t["keys"] == "image" for t in train["train"]["random_transforms"])  # landmarks move via the affine


def test_three_landmarks_from_the_config_trained_and_scored_on_a_test_split(trained, tmp_path):
    """landmark_names with three names (a subset, reordered) drives the heatmaps, decoding, metric and CSV columns;
    a one-fold datalist validates on its explicit list, and evaluate_split "test" scores the testing list."""
    names = ["HDV2", "TCD1", "ADV1"]
    bundle = copy_bundle(NAME, tmp_path)
    datalist = bundle / "configs" / "datalist.json"
    split = ["--num_folds", "1", "--validation_cases", "fetus_001", "--test_cases", "fetus_004", "fetus_005"]
    args = ["fetal", "--dataset_dir", str(trained.dataset_dir), "--output", str(datalist), "--landmark_names", *names]
    assert datalist_main(args + split) == 0
    common = {**TINY, "landmark_names": names}  # network_def's out_channels is "@num_landmarks": one per name
    log = run_bundle(bundle, ["configs/train.json"], dataset_dir=trained.dataset_dir, val_interval=1,
                     **{**common, "train#trainer#max_epochs": 1}).stdout  # fmt: skip
    assert "Epoch: 1/1, Iter: 2/2" in log and "val_mre" in log  # 4 training cases, batch 2
    state = torch.load(bundle / "models" / "model.pt", map_location="cpu", weights_only=True)
    nnMambaSeg(in_channels=1, out_channels=3, channels=8, out_relu=False).load_state_dict(state, strict=True)
    configs = ["configs/train.json", "configs/evaluate.json"]
    run_bundle(bundle, configs, dataset_dir=trained.dataset_dir, evaluate_split="test", **common)
    rows = read_csv_rows(bundle / "eval" / "landmarks.csv")
    assert list(rows[0]) == ["image", *[f"{n}_{a}_mm" for n in names for a in "xyz"]]
    assert sorted(Path(r["image"]).name for r in rows) == ["fetus_004.nii.gz", "fetus_005.nii.gz"]
    per_case = read_csv_rows(bundle / "eval" / "val_mre_raw.csv")
    assert list(per_case[0])[1:] == ["class0", "class1", "class2", "mean"]
    order = [FETAL_CEREBELLUM_LANDMARKS.index(n) for n in names]
    for row, case in zip(rows, per_case):
        name = Path(row["image"]).name.removesuffix(".nii.gz")
        assert Path(case["filename"]).name == f"{name}.nii.gz"
        coords = np.array([float(row[f"{n}_{a}_mm"]) for n in names for a in "xyz"]).reshape(3, 3)
        errors = np.linalg.norm(coords - trained.truth[name][order], axis=-1)
        assert [float(case[f"class{i}"]) for i in range(3)] == pytest.approx(errors, abs=1e-3)


def test_evaluate_split_names_a_datalist_section(trained):
    result = run_bundle(trained.bundle, ["configs/train.json", "configs/evaluate.json"], expect_success=False,
                        dataset_dir=trained.dataset_dir, evaluate_split="test", **TINY)  # fmt: skip
    assert "datalist.json has no 'testing' list (keys: " in result.stdout + result.stderr


def test_evaluate_writes_mre_and_landmark_tables_that_agree(trained):
    configs = ["configs/train.json", "configs/evaluate.json"]
    run_bundle(trained.bundle, configs, from_bundle_dir=True, dataset_dir=trained.dataset_dir, **TINY)
    out = trained.bundle / "eval"
    validation = sorted(e["case_id"] for e in trained.datalist["training"] if e["fold"] == 0)
    predicted = landmark_table(out / "landmarks.csv")
    assert sorted(predicted) == validation
    mre = float((out / "metrics.csv").read_text().split(",")[1])
    per_case = read_csv_rows(out / "val_mre_raw.csv")
    assert len(per_case) == len(validation) and list(per_case[0])[1:] == [*(f"class{i}" for i in range(6)), "mean"]
    recomputed = []
    for case, coords in predicted.items():
        assert np.isfinite(coords).all()
        corners = np.array(np.meshgrid(*[[0, s - 1] for s in CASE_SHAPE], indexing="ij")).reshape(3, -1).T
        world_corners = corners @ OBLIQUE_AFFINE[:3, :3].T + OBLIQUE_AFFINE[:3, 3]
        assert (coords >= world_corners.min(0) - 1.0).all() and (coords <= world_corners.max(0) + 1.0).all()
        recomputed.append(np.linalg.norm(coords - trained.truth[case], axis=-1).mean())
    # the metric, the per-case table and the coordinates in landmarks.csv describe the same predictions
    assert mre == pytest.approx(float(np.mean(recomputed)), abs=1e-3)
    assert [float(r["mean"]) for r in per_case] == pytest.approx(recomputed, abs=1e-3)


def test_inference_writes_world_coordinates_that_hit_the_landmark(trained, tmp_path):
    """An oracle network (1x1x1 convolution copying the image into six channels) on cases whose image has one blob,
    at TCD1: every decoded landmark must land on that blob's world position. This checks the inference chain end to
    end: NIfTI affine, reorientation, resizing, heatmap decoding, voxel->world, CSV."""
    oracle_dir = tmp_path / "oracle"
    truth = make_fetal_dataset(oracle_dir, num_cases=3, shape=CASE_SHAPE, seed=5, blob_landmarks=[0])
    oracle = torch.nn.Conv3d(1, 6, kernel_size=1)
    torch.nn.init.ones_(oracle.weight)
    torch.nn.init.zeros_(oracle.bias)
    torch.save(oracle.state_dict(), tmp_path / "oracle.pt")
    run_bundle(
        trained.bundle,
        ["configs/inference.json"],
        dataset_dir=oracle_dir,
        output_dir=tmp_path / "out",
        ckpt_path=tmp_path / "oracle.pt",
        image_size=IMAGE_SIZE,
        num_workers=0,
        network_def={"_target_": "torch.nn.Conv3d", "in_channels": 1, "out_channels": 6, "kernel_size": 1},
    )
    predicted = landmark_table(tmp_path / "out" / "landmarks.csv")
    assert sorted(predicted) == sorted(truth)
    for case, coords in predicted.items():
        errors_mm = np.linalg.norm(coords - truth[case][0], axis=-1)
        assert errors_mm.max() < 0.3, (case, errors_mm)  # sub-voxel (original voxels are 0.8 x 1.2 x 1.5 mm)
        assert voxel_error(coords - truth[case][0], OBLIQUE_AFFINE).max() < 0.3


def test_torchscript_export_of_the_trained_network_matches_eager(trained, tmp_path):
    assert_trained_export_matches_eager(trained.bundle, tmp_path, (1, 1, 32, 32, 32), (1, 1, 48, 32, 32))

"""The brain-extraction bundle: layout, metadata, the shipped weights (hash, strict load) and a real inference.

The inference test runs the bundle's ``configs/inference.json`` unchanged on the demo's real 2 mm Colin27
scan (held out of the bundle's training), and on the same scan inside a larger box of air, and scores the saved
masks against Colin27's reference brain mask.
"""

from __future__ import annotations

import hashlib
import json

import nibabel as nib
import numpy as np
import torch
import yaml
from monai.bundle import ConfigWorkflow

from nnmamba_monai.demo.run import DATA_DIR
from tests.bundle_support import BUNDLES_DIR, parse_bundle_configs, verify_metadata
from tests.conftest import REPO_ROOT

BUNDLE = BUNDLES_DIR / "brain_nnmamba_extraction"
CONFIGS = ("train.json", "evaluate.json", "inference.json", "multi_gpu_train.json", "metadata.json")


def test_layout_licence_and_docs():
    for name in ("LICENSE", "large_files.yml", "models/model.pt", "docs/README.md", "docs/data_license.txt"):
        assert (BUNDLE / name).is_file(), name
    for name in (*CONFIGS, "logging.conf"):
        assert (BUNDLE / "configs" / name).is_file(), name
    assert (BUNDLE / "LICENSE").read_bytes() == (REPO_ROOT / "LICENSE").read_bytes()
    for shared in ("logging.conf", "multi_gpu_train.json"):
        assert (BUNDLE / "configs" / shared).is_symlink(), f"{shared} is the shared layer"
    readme = (BUNDLE / "docs" / "README.md").read_text()
    for needle in ("not a clinical tool", "Colin27", "scripts/train_brain_extraction.py", "configs/inference.json"):
        assert needle in readme, needle
    licences = (BUNDLE / "docs" / "data_license.txt").read_text()
    assert "McConnell Brain" in licences and "BSD-3" in licences


def test_metadata_is_valid_and_says_what_it_is():
    verify_metadata(BUNDLE, cli=False)
    meta = json.loads((BUNDLE / "configs" / "metadata.json").read_text())
    assert "NOT a clinical" in meta["intended_use"]
    assert meta["network_data_format"]["outputs"]["pred"]["channel_def"] == {"0": "background", "1": "brain"}


def test_large_files_hash_matches_the_shipped_weights_and_they_load_strictly():
    entries = yaml.safe_load((BUNDLE / "large_files.yml").read_text())["large_files"]
    assert [(e["path"], e["hash_type"]) for e in entries] == [("models/model.pt", "sha256")]
    weights = BUNDLE / "models" / "model.pt"
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == entries[0]["hash_val"]
    assert weights.stat().st_size < 3 * 1024**2  # 0.71 M float32 parameters
    state = torch.load(weights, map_location="cpu", weights_only=True)
    assert all(v.dtype == torch.float32 for v in state.values() if v.is_floating_point())
    for config in ("train.json", "inference.json"):
        network = parse_bundle_configs(BUNDLE, config).get_parsed_content("network_def")
        network.load_state_dict(state, strict=True)
    train, inference = (json.loads((BUNDLE / "configs" / n).read_text()) for n in ("train.json", "inference.json"))
    assert isinstance(inference["network_def"], dict)  # the one definition; train.json builds it from there
    assert train["network_def"].startswith("$nnmamba_monai.bundle_config.inference_network_def(@bundle_root")


def test_training_holds_colin27_out_and_augments_pose_contrast_and_resolution():
    train = parse_bundle_configs(BUNDLE, "train.json")
    random = [t["_target_"].split(".")[-1] for t in train.get("train#random_transforms")]
    # the demo's recipe, which scored best on Colin27 (bundle README, ablations), with a border of air before the
    # crop: the zoom-out, contrast inversion and intensity-curve families are in docs/ablation_*.json
    for kind in ("BorderPadd", "RandAffined", "RandFlipd", "RandCropByPosNegLabeld", "RandAdjustContrastd",
                 "RandBiasFieldd", "RandGaussianSmoothd", "RandGaussianNoised"):  # fmt: skip
        assert kind in random, kind
    assert random.index("BorderPadd") < random.index("RandCropByPosNegLabeld") and train.get("fov_border_voxels") > 0
    assert train.get("contrast_curve_prob") == 0.0
    curve = json.loads((BUNDLE / "docs" / "ablation_contrast_curve.json").read_text())
    assert curve["contrast_curve_prob"] > 0
    # the two-region curves take the global curve's slot (index 5), so the rest of the random stream is the same
    region = json.loads((BUNDLE / "docs" / "ablation_region_curve.json").read_text())
    assert random[5] == "RandIntensityCurved" and list(region) == ["train#random_transforms#5"]
    layered = parse_bundle_configs(BUNDLE, "train.json", "../docs/ablation_region_curve.json")
    transforms = layered.get_parsed_content("train#random_transforms")
    assert [type(t).__name__ for t in transforms][5] == "RandRegionIntensityCurved" and transforms[5].prob == 0.5
    # the same curves fine-tuning the shipped weights (bundle README): slot 5, a third of the learning rate
    finetune = parse_bundle_configs(BUNDLE, "train.json", "../docs/ablation_finetune_region_curve.json")
    assert type(finetune.get_parsed_content("train#random_transforms")[5]).__name__ == "RandRegionIntensityCurved"
    assert finetune.get_parsed_content("pretrained_ckpt") == f"{BUNDLE}/models/model.pt"
    assert (finetune.get("learning_rate"), finetune.get("max_epochs")) == (train.get("learning_rate") / 3, 90)
    for name in ("ablation_zoom_inversion.json", "ablation_inversion.json"):
        ablation = json.loads((BUNDLE / "docs" / name).read_text())["train#random_transforms"]
        assert "nnmamba_monai.transforms.RandIntensityInversiond" in [t["_target_"] for t in ablation], name
    inference = parse_bundle_configs(BUNDLE, "inference.json")
    assert train.get("intensity_percentiles") == inference.get("intensity_percentiles")
    script = (REPO_ROOT / "scripts" / "brain_extraction_data.py").read_text()
    assert 'TRAINING = ("icbm2009c_t1",)' in script  # Colin27 and the ICBM T2 stay out of training


def _dice(prediction: np.ndarray, reference: np.ndarray) -> float:
    return float(2 * (prediction & reference).sum() / (prediction.sum() + reference.sum()))


def _in_larger_field_of_view(image: nib.Nifti1Image, border: tuple[int, ...]) -> nib.Nifti1Image:
    """The same head, at the same world position, inside a box ``border`` voxels larger on each side (zeros)."""
    data = np.pad(np.asarray(image.dataobj), [(b, b) for b in border])
    affine = image.affine.copy()
    affine[:3, 3] -= affine[:3, :3] @ np.asarray(border, dtype=float)
    return nib.Nifti1Image(data, affine)


def test_shipped_weights_segment_the_held_out_colin27_scan_on_its_grid_and_in_a_larger_field_of_view(tmp_path):
    image = DATA_DIR / "colin27_t1.nii.gz"  # real, 2 mm, never seen in training
    border = (10, 8, 24)  # 2 mm voxels: the box grows from 18x22x18 cm to 22x25x28 cm, mostly below the head
    nib.save(_in_larger_field_of_view(nib.load(str(image)), border), str(tmp_path / "colin27_t1_fov.nii.gz"))
    workflow = ConfigWorkflow(
        config_file=str(BUNDLE / "configs" / "inference.json"),
        meta_file=str(BUNDLE / "configs" / "metadata.json"),
        workflow_type="inference",
        bundle_root=str(BUNDLE),
        datalist=[{"image": str(image)}, {"image": str(tmp_path / "colin27_t1_fov.nii.gz")}],
        output_dir=str(tmp_path / "out"),
        device="$torch.device('cpu')",
        sw_progress=False,
    )
    workflow.initialize()
    workflow.run()
    workflow.finalize()
    saved = nib.load(str(tmp_path / "out" / "colin27_t1_seg.nii.gz"))
    reference = nib.load(str(DATA_DIR / "colin27_brainmask.nii.gz"))
    assert saved.shape == reference.shape and np.allclose(saved.affine, reference.affine)
    pred, ref = np.asarray(saved.dataobj) > 0, np.asarray(reference.dataobj) > 0
    # regression guards below what the shipped weights reach: 0.963 on this 2 mm copy, 0.961 in the larger box (the
    # bundle README: 0.963 and 0.954 at 1 mm); the 0.2.0 weights with MONAI's whole-volume percentiles: 0.954, 0.835
    assert _dice(pred, ref) >= 0.94, f"Dice {_dice(pred, ref):.3f} on the held-out Colin27 scan"
    larger = nib.load(str(tmp_path / "out" / "colin27_t1_fov_seg.nii.gz"))
    assert larger.shape == tuple(s + 2 * b for s, b in zip(ref.shape, border))
    ref_larger = np.pad(ref, [(b, b) for b in border])
    dice_larger = _dice(np.asarray(larger.dataobj) > 0, ref_larger)
    assert dice_larger >= 0.93, f"Dice {dice_larger:.3f} on Colin27 in a larger field of view"

"""``python -m nnmamba_monai.predict`` and the inference configs' inputs, readers and pre-flight checks.

A random-weight copy of the demo's small network stands in for a trained model (these tests check where and how
predictions are written, not their quality): ``models/model.pt`` plus the ``models/network.json`` the demo writes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from monai.transforms import LoadImage

from nnmamba_monai.bundle_config import bundles_dir, find_bundle
from nnmamba_monai.bundle_overrides import UnknownOverrideError
from nnmamba_monai.demo.presets import network_def
from nnmamba_monai.demo.run import write_network_settings
from nnmamba_monai.predict import PredictionError, check_inference, checkpoint_mismatch, find_scans, inference_cases
from nnmamba_monai.predict.cli import expand_inputs, parse_setting, predict
from nnmamba_monai.transforms import ScanReader, UnsupportedScanError, scan_format
from tests.bundle_support import BUNDLES_DIR, check_workflow_properties, copy_bundle, subprocess_env
from tests.conftest import REPO_ROOT
from tests.scan_files import COLIN27_T1, write_scans

BUNDLE = "amos_mr_nnmamba_segmentation"
ALL_BUNDLES = sorted(p.name for p in BUNDLES_DIR.iterdir() if (p / "configs" / "metadata.json").is_file())


@pytest.fixture(scope="module")
def scans(tmp_path_factory) -> dict:
    return write_scans(tmp_path_factory.mktemp("scans"))


@pytest.fixture(scope="module")
def demo_model(tmp_path_factory) -> Path:
    """``models/`` as the demo leaves it: model.pt (random weights, seed 0) and network.json."""
    models = tmp_path_factory.mktemp("demo") / "models"
    write_network_settings(models / "network.json", {"patch_size": [64, 64, 64], "network_def": network_def("nnmamba")})
    torch.manual_seed(0)
    network = ConfigParser({"net": network_def("nnmamba")}).get_parsed_content("net")
    torch.save(network.state_dict(), models / "model.pt")
    return models


def test_scan_reader_puts_every_format_on_its_grid(scans):
    load = LoadImage(reader=ScanReader(), image_only=True)
    for kind, (path, affine, shape) in scans.items():
        image = load(str(path))
        assert tuple(image.shape) == shape, kind
        np.testing.assert_allclose(np.asarray(image.affine), affine, atol=1e-4, err_msg=kind)
    # the DICOM series keeps its 10 degree tilt about x (2 mm voxels)
    tilted = scans["dicom"][1][:3, :3]
    assert abs(tilted[2, 1]) == pytest.approx(2 * np.sin(np.deg2rad(10)), abs=1e-4)


def test_scan_format_and_refusal_of_other_types(tmp_path, scans):
    assert [scan_format(scans[k][0]) for k in ("nifti", "mgz", "nrrd", "mha", "dicom")] == [
        ".nii.gz",
        ".mgz",
        ".nrrd",
        ".mha",
        "dicom",
    ]
    png = tmp_path / "scan.png"
    png.write_bytes(b"\x89PNG")
    assert scan_format(png) is None and scan_format(tmp_path / "empty_folder") is None
    with pytest.raises(UnsupportedScanError, match=r"scan\.png: unsupported scan format"):
        ScanReader().read(str(png))


def test_find_scans_lists_a_folder_and_takes_one_input(scans):
    folder = scans["nifti"][0].parent
    found = find_scans(dataset_dir=str(folder))
    assert [Path(p).name for p in found] == [
        "crop_dicom",
        "crop_mgz.mgz",
        "crop_mha.mha",
        "crop_nifti.nii.gz",
        "crop_nrrd.nrrd",
    ]
    assert find_scans("one.mgz", str(folder)) == ["one.mgz"]
    assert find_scans(dataset_dir="/no/such/folder") == []


def test_expand_inputs_takes_folders_of_scans_and_keeps_series_and_files(scans, tmp_path):
    folder = scans["nifti"][0].parent
    dicom, mgz = str(scans["dicom"][0]), str(scans["mgz"][0])
    assert expand_inputs([dicom, mgz]) == [dicom, mgz]
    assert (
        expand_inputs([str(folder)]) == find_scans(dataset_dir=str(folder)) and len(expand_inputs([str(folder)])) == 5
    )
    (tmp_path / "empty").mkdir()
    assert expand_inputs([str(tmp_path / "empty")]) == [str(tmp_path / "empty")]  # named by the pre-flight check


def test_predict_every_format_and_a_real_scan_on_the_input_grid(tmp_path, scans, demo_model):
    """One run over the five file types and the full Colin27 scan: each output is NIfTI, on its input's grid."""
    inputs = [str(scans[k][0]) for k in ("nifti", "mgz", "nrrd", "mha", "dicom")] + [str(COLIN27_T1)]
    result = predict(BUNDLE, inputs, tmp_path / "out", ckpt_dir=demo_model, device="cpu")
    assert result["cases"] == 6
    colin = nib.load(str(COLIN27_T1))
    grids = {f"crop_{kind}_seg.nii.gz": scans[kind][1:] for kind in ("nifti", "mgz", "nrrd", "mha", "dicom")}
    grids["colin27_t1_seg.nii.gz"] = (colin.affine, colin.shape)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(grids)
    for name, (affine, shape) in grids.items():
        written = nib.load(str(tmp_path / "out" / name))
        assert written.shape[:3] == tuple(shape), name
        np.testing.assert_allclose(written.affine, affine, atol=1e-3, err_msg=name)
        assert set(np.unique(np.asarray(written.dataobj))) <= {0, 1}, name


def _refusal(tmp_path, inputs, ckpt_dir) -> str:
    with pytest.raises(Exception) as caught:
        predict(BUNDLE, inputs, tmp_path / "out", ckpt_dir=ckpt_dir, device="cpu")
    from nnmamba_monai.refusal import find_refusal

    refusal = find_refusal(caught.value)
    assert isinstance(refusal, PredictionError), caught.value
    assert "\n" not in str(refusal)
    return str(refusal)


def test_bad_inputs_get_one_line_naming_the_file(tmp_path, scans, demo_model):
    missing = tmp_path / "missing.nii.gz"
    assert _refusal(tmp_path, [str(missing)], demo_model) == f"input not found: {missing}"
    text = tmp_path / "notes.txt"
    text.write_text("not a scan")
    assert _refusal(tmp_path, [str(text)], demo_model).startswith(f"{text}: unsupported scan type; use .nii.gz")
    broken = tmp_path / "broken.mgz"
    broken.write_bytes(b"no header here")
    assert _refusal(tmp_path, [str(broken)], demo_model).startswith(f"{broken}: cannot be read as .mgz (")
    two_channels = tmp_path / "two.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8, 2), np.float32), np.eye(4)), str(two_channels))
    assert _refusal(tmp_path, [str(two_channels)], demo_model).startswith(
        f"{two_channels}: 2 channel(s), but the network takes 1 (network_def#in_channels)"
    )
    no_model = tmp_path / "no_model"
    assert _refusal(tmp_path, [str(scans["nifti"][0])], no_model).startswith(
        f"checkpoint not found: {no_model / 'model.pt'}; train the bundle first"
    )


def test_a_slice_is_refused_naming_its_shape_and_a_single_volume_4d_file_runs(tmp_path, scans, demo_model):
    """2-D images (a slice as NIfTI, a 3-D NIfTI one voxel thick, a 2-D MetaImage) would end in MONAI's sliding
    window traceback; a 4-D NIfTI holding one volume is a 3-D scan with one channel and is predicted."""
    import itk

    volume = np.asarray(nib.load(str(scans["nifti"][0])).dataobj, dtype=np.float32)
    flat = tmp_path / "slice.nii.gz"
    nib.save(nib.Nifti1Image(volume[:, :, 5], np.eye(4)), str(flat))
    thin = tmp_path / "thin.nii.gz"
    nib.save(nib.Nifti1Image(volume[:, :, 5:6], np.eye(4)), str(thin))
    meta_image = tmp_path / "slice.mha"
    itk.imwrite(itk.image_from_array(np.ascontiguousarray(volume[:, :, 5])), str(meta_image))
    x, y = volume.shape[:2]
    advice = "but the network takes 3-D volumes; pass the whole volume (all its slices in one file or one DICOM "
    advice += "series folder)"
    assert _refusal(tmp_path, [str(flat)], demo_model) == f"{flat}: a 2-D image ({x} x {y} voxels), {advice}"
    assert _refusal(tmp_path, [str(thin)], demo_model) == f"{thin}: a 2-D image ({x} x {y} x 1 voxels), {advice}"
    # ITK reads arrays in reverse axis order: the MetaImage's first axis is the array's last
    assert (
        _refusal(tmp_path, [str(meta_image)], demo_model) == f"{meta_image}: a 2-D image ({y} x {x} voxels), {advice}"
    )
    single = tmp_path / "single.nii.gz"
    source = nib.load(str(scans["nifti"][0]))
    nib.save(nib.Nifti1Image(volume[..., None], source.affine), str(single))
    predict(BUNDLE, [str(single)], tmp_path / "out", ckpt_dir=demo_model, device="cpu")
    written = nib.load(str(tmp_path / "out" / "single_seg.nii.gz"))
    assert written.shape == volume.shape and np.allclose(written.affine, source.affine)


def test_checkpoint_of_other_settings_names_the_setting(tmp_path, demo_model):
    """The demo's checkpoint (channels 8, blocks 2, ...) against the bundle's own network_def (channels 32)."""
    models = tmp_path / "models"
    models.mkdir()
    (models / "model.pt").write_bytes((demo_model / "model.pt").read_bytes())
    network = ConfigParser.load_config_file(str(find_bundle(BUNDLE) / "configs" / "inference.json"))["network_def"]
    built = ConfigParser({"n": {**network, "out_channels": 2}}).get_parsed_content("n")
    checkpoint = torch.load(models / "model.pt", weights_only=True)
    line = checkpoint_mismatch(checkpoint, built.state_dict(), "models/model.pt")
    assert line.startswith("models/model.pt was trained with channels 8 (config: 32), blocks 2 (config: 3)")
    assert line.endswith("pass --network_def#channels 8 --network_def#blocks 2 --network_def#d_state 8")
    (models / "network.json").write_text((demo_model / "network.json").read_text())
    with pytest.raises(PredictionError, match=r"its settings are in .*network\.json: add it, --config_file"):
        check_inference([str(COLIN27_T1)], models / "model.pt", built, 1)


def test_monai_bundle_run_ends_with_the_refusal_line(tmp_path, scans):
    """The plain ``python -m monai.bundle run`` of inference.json: missing checkpoint, exit 1, one last line."""
    bundle = copy_bundle(BUNDLE, tmp_path)
    command = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(bundle / "configs/inference.json")]
    command += ["--meta_file", str(bundle / "configs/metadata.json"), "--bundle_root", str(bundle)]
    command += ["--input_image", str(scans["mgz"][0]), "--num_workers", "0"]
    result = subprocess.run(command, capture_output=True, text=True, env=subprocess_env(), timeout=300)
    assert result.returncode == 1, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last == (
        f"PredictionError: checkpoint not found: {bundle / 'models' / 'model.pt'}; train the bundle first "
        "(configs/train.json) or pass --ckpt_dir DIR (the folder holding model.pt)"
    )


def test_wrong_datalist_path_is_named(tmp_path, demo_model):
    network = ConfigParser({"n": network_def("nnmamba")}).get_parsed_content("n")
    wrong = tmp_path / "configs" / "datalist.json"
    with pytest.raises(PredictionError) as caught:
        check_inference([], demo_model / "model.pt", network, 1, str(tmp_path / "data"), str(wrong))
    assert str(caught.value) == (
        f"no scans to predict: datalist {wrong} not found and {tmp_path / 'data'} holds none; pass --input_image PATH "
        "(a file or a DICOM series folder) or --dataset_dir DIR (a folder of scans)"
    )


def test_predict_command_exits_1_with_one_line(tmp_path, demo_model):
    missing = tmp_path / "scan.mgz"
    command = [sys.executable, "-m", "nnmamba_monai.predict", "--bundle", BUNDLE, "--ckpt_dir", str(demo_model)]
    command += [str(missing), "--output", str(tmp_path / "out")]
    result = subprocess.run(command, capture_output=True, text=True, env=subprocess_env(), timeout=300)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == f"PredictionError: input not found: {missing}"


@pytest.mark.parametrize("bundle", ALL_BUNDLES)
def test_inference_config_passes_check_properties_without_a_datalist(tmp_path, bundle):
    copy = copy_bundle(bundle, tmp_path)
    assert not (copy / "configs" / "datalist.json").exists()
    assert check_workflow_properties(copy, ["configs/inference.json"], "infer", num_workers=0) == []


def test_bundles_are_found_in_the_source_tree():
    """A checkout or an editable install: the repository's bundles/ (a wheel: tests/test_wheel_install.py)."""
    assert bundles_dir() == REPO_ROOT / "bundles"
    assert find_bundle(BUNDLE) == (REPO_ROOT / "bundles" / BUNDLE).resolve()
    with pytest.raises(FileNotFoundError, match=r"bundle 'nope' not found .* bundles: adni_nnmamba_classification"):
        find_bundle("nope")
    assert json.loads((bundles_dir() / BUNDLE / "configs" / "inference.json").read_text())["input_image"] == ""


def test_brats_predicts_a_four_channel_file_and_a_case_of_four_files(tmp_path):
    """BraTS takes 4 channels: one 4-channel NIfTI (predict), or a case's four files (``--input_image`` list)."""
    bundle = find_bundle("brats_nnmamba_segmentation")
    network = {**ConfigParser.load_config_file(str(bundle / "configs" / "inference.json"))["network_def"]}
    network.update(channels=4, blocks=1, d_state=4)
    models = tmp_path / "models"
    models.mkdir()
    (models / "network.json").write_text(json.dumps({"network_def": network, "patch_size": [32, 32, 32]}))
    torch.save(ConfigParser({"n": network}).get_parsed_content("n").state_dict(), models / "model.pt")
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    affine[:3, 3] = [-10.0, 5.0, 2.0]
    volume = np.random.default_rng(0).random((24, 20, 16, 4), dtype=np.float32)
    nib.save(nib.Nifti1Image(volume, affine), str(tmp_path / "case.nii.gz"))
    predict(bundle, [str(tmp_path / "case.nii.gz")], tmp_path / "one_file", ckpt_dir=models, device="cpu")
    written = nib.load(str(tmp_path / "one_file" / "case.nii.gz"))
    assert written.shape[:3] == (24, 20, 16)
    np.testing.assert_allclose(written.affine, affine)
    assert set(np.unique(np.asarray(written.dataobj))) <= {0, 1, 2, 3}  # BraTS labels from the three regions

    files = []
    for index, sequence in enumerate(("t1n", "t1c", "t2w", "t2f")):
        files.append(str(tmp_path / f"BraTS-GLI-00001-000-{sequence}.nii.gz"))
        nib.save(nib.Nifti1Image(volume[..., index], affine), files[-1])
    cases = inference_cases(files, dataset_dir="", datalist_file=str(tmp_path / "no_datalist.json"))
    assert cases == [{"image": files}]
    assert check_inference(cases, models / "model.pt", ConfigParser({"n": network}).get_parsed_content("n"), 4)
    with pytest.raises(PredictionError, match=r"t1n\.nii\.gz: 1 channel\(s\), but the network takes 4"):
        check_inference(
            [{"image": files[0]}], models / "model.pt", ConfigParser({"n": network}).get_parsed_content("n"), 4
        )


def test_checkpoint_of_another_network_class_names_the_class():
    from nnmamba_monai import nnMambaCls, nnMambaSeg

    segmentation = nnMambaSeg(3, 1, 2, channels=4, blocks=1, d_state=4).state_dict()
    classification = nnMambaCls(3, 1, 2, channels=4, blocks=1, d_state=4).state_dict()
    assert checkpoint_mismatch(segmentation, classification, "m.pt") == (
        "m.pt was trained with _target_ nnMambaSeg (config: nnMambaCls); "
        "pass --network_def#_target_ nnmamba_monai.networks.nnMambaSeg"
    )
    assert checkpoint_mismatch(segmentation, segmentation, "m.pt") is None


def test_cpu_preset_gives_the_same_brain_mask(tmp_path, scans):
    """--cpu_preset on the shipped brain-extraction weights (fused network, C++ scan where it builds): the mask of
    the plain inference config, up to voxels where float rounding tips the argmax."""
    crop = [str(scans["nifti"][0])]
    plain = predict("brain_nnmamba_extraction", crop, tmp_path / "plain", device="cpu")
    preset = predict("brain_nnmamba_extraction", crop, tmp_path / "preset", device="cpu", cpu_preset=True)
    assert plain["cases"] == preset["cases"] == 1
    a, b = (np.asarray(nib.load(str(tmp_path / d / "crop_nifti_seg.nii.gz")).dataobj) for d in ("plain", "preset"))
    assert a.shape == b.shape and a.any()
    assert (a != b).mean() <= 1e-4


def test_cpu_preset_of_a_bundle_without_one_is_named(tmp_path, scans):
    bundle = copy_bundle("brain_nnmamba_extraction", tmp_path)
    (bundle / "configs" / "inference_cpu.json").unlink()
    message = r"--cpu_preset: brain_nnmamba_extraction has no configs/inference_cpu\.json"
    with pytest.raises(FileNotFoundError, match=message):
        predict(bundle, [str(scans["nifti"][0])], tmp_path / "out", device="cpu", cpu_preset=True)


def test_brain_image_is_the_input_masked_on_its_grid(tmp_path, scans):
    """``--set save_brain_image=true`` on the brain bundle: ``<name>_brain.nii.gz`` beside the mask, the input's
    own voxels inside the mask and 0 outside, on the input's grid; without it only the mask is written."""
    crop = scans["nifti"][0]
    bundle = "brain_nnmamba_extraction"
    predict(bundle, [str(crop)], tmp_path / "both", device="cpu", settings={"save_brain_image": True})
    predict(bundle, [str(crop)], tmp_path / "mask", device="cpu")
    assert sorted(p.name for p in (tmp_path / "both").iterdir()) == ["crop_nifti_brain.nii.gz", "crop_nifti_seg.nii.gz"]
    assert [p.name for p in (tmp_path / "mask").iterdir()] == ["crop_nifti_seg.nii.gz"]
    source, brain = nib.load(str(crop)), nib.load(str(tmp_path / "both" / "crop_nifti_brain.nii.gz"))
    mask = np.asarray(nib.load(str(tmp_path / "both" / "crop_nifti_seg.nii.gz")).dataobj) > 0
    assert brain.shape == source.shape and np.allclose(brain.affine, source.affine)
    assert 0 < mask.mean() < 1
    expected = np.asarray(source.dataobj, dtype=np.float32) * mask
    np.testing.assert_array_equal(np.asarray(brain.dataobj), expected)


def test_set_reads_values_as_json_and_refuses_unknown_ids(tmp_path, scans):
    assert parse_setting("save_brain_image=true") == ("save_brain_image", True)
    assert parse_setting("sw_overlap=0.5") == ("sw_overlap", 0.5)
    assert parse_setting("patch_size=[32, 32, 32]") == ("patch_size", [32, 32, 32])
    assert parse_setting("output_postfix=mask") == ("output_postfix", "mask")
    with pytest.raises(argparse.ArgumentTypeError, match="--set takes ID=VALUE, got 'save_brain_image'"):
        parse_setting("save_brain_image")
    inputs = [str(scans["nifti"][0])]
    with pytest.raises(UnknownOverrideError) as refused:
        predict("brain_nnmamba_extraction", inputs, tmp_path / "out", device="cpu", settings={"save_brain": True})
    assert refused.value.summary == (
        "'--set save_brain=true' sets the config id 'save_brain', which no config file of this run defines, so it "
        "would change nothing; did you mean --set save_brain_image=...?"
    )
    assert not (tmp_path / "out").exists()


def test_predict_command_names_an_unknown_setting_in_its_last_line(tmp_path, scans):
    command = [sys.executable, "-m", "nnmamba_monai.predict", "--bundle", "brain_nnmamba_extraction"]
    command += [str(scans["nifti"][0]), "--output", str(tmp_path / "out"), "--set", "fold=1"]
    result = subprocess.run(command, capture_output=True, encoding="utf-8", env=subprocess_env(), timeout=300)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("UnknownOverrideError: '--set fold=1' sets the config id 'fold'")
    assert last.endswith("did you mean --set val_fold=...?")


def test_replace_non_finite_gives_the_lowest_finite_value_and_says_so(caplog):
    from nnmamba_monai.transforms.scan_reader import replace_non_finite

    array = np.array([[3.0, np.nan], [np.inf, -np.inf], [-2.0, 5.0]], dtype=np.float32)
    with caplog.at_level("WARNING", logger="nnmamba_monai.transforms.scan_reader"):
        replaced = replace_non_finite(array, "scan.nii.gz")
    np.testing.assert_array_equal(replaced, [[3.0, -2.0], [-2.0, -2.0], [-2.0, 5.0]])
    assert replaced.dtype == np.float32 and np.isnan(array[0, 1])  # the input is left as it was
    assert caplog.messages == [
        "scan.nii.gz: 3 of 6 voxels are NaN or infinite; set to the scan's lowest finite value -2 (its background)"
    ]
    finite, integers = np.ones(4, np.float64), np.arange(4)
    assert replace_non_finite(finite) is finite and replace_non_finite(integers) is integers
    np.testing.assert_array_equal(replace_non_finite(np.full(3, np.nan)), [0.0, 0.0, 0.0])


def test_a_scan_with_nan_background_still_gets_its_brain_mask(tmp_path, caplog):
    """NaN outside the head (as SPM writes it) made the intensity range NaN and the mask silently empty; the
    reader now gives those voxels the background value. Shipped weights, the real 2 mm Colin27."""
    from nnmamba_monai.demo.evaluation import binary_metrics
    from nnmamba_monai.demo.run import DATA_DIR

    source = nib.load(str(DATA_DIR / "colin27_t1.nii.gz"))
    volume = np.asarray(source.dataobj, dtype=np.float32)
    volume[volume < 0.05 * volume.max()] = np.nan  # the air around the head
    scan = tmp_path / "spm_style.nii.gz"
    nib.save(nib.Nifti1Image(volume, source.affine), str(scan))
    with caplog.at_level("WARNING", logger="nnmamba_monai.transforms.scan_reader"):
        predict("brain_nnmamba_extraction", [str(scan)], tmp_path / "out", device="cpu")
    assert any(message.startswith(f"{scan}: ") and "NaN or infinite" in message for message in caplog.messages)
    mask = np.asarray(nib.load(str(tmp_path / "out" / "spm_style_seg.nii.gz")).dataobj) > 0
    reference = np.asarray(nib.load(str(DATA_DIR / "colin27_brainmask.nii.gz")).dataobj) > 0
    assert binary_metrics(mask, reference, source.affine)["dice"] >= 0.95
    kept = ScanReader(replace_non_finite=False)
    array, _ = kept.get_data(kept.read(str(scan)))
    assert np.isnan(array).any()

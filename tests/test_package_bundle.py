"""The distribution path of a pretrained bundle: package -> publish -> ``monai.bundle download`` -> run.

A copy of the BraTS bundle is packaged with random weights of a small network (``network_def#channels`` 8):
the point is the path, not the weights. Downloads go through MONAI's own CLI from a ``file://`` URL and from
a loopback HTTP server started here; ``download_large_files`` fetches weights shipped beside the zip.
"""

from __future__ import annotations

import hashlib
import json
import sys
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml

from nnmamba_monai import nnMambaSeg
from nnmamba_monai.file_digest import file_digest
from nnmamba_monai.package_bundle import (
    WEIGHTS_RELPATH,
    allowed_member,
    check_state_dict_file,
    package_bundle,
)
from tests.bundle_support import (
    build_network,
    copy_bundle,
    monai_bundle,
    run_bundle,
    run_checked,
    verify_metadata,
    verify_net_in_out,
)
from tests.bundles.conftest import single_thread  # noqa: F401 - one CPU thread in this module
from tests.pretrained_support import assert_prediction_on_input_grid, brats_unlabelled_cases, serve_directory

BUNDLE = "brats_nnmamba_segmentation"
SMALL = {"network_def#channels": 8}
NETWORK_SETTINGS_CHANNELS_8 = {"_target_": "nnmamba_monai.networks.nnMambaSeg", "in_channels": 4, "channels": 8}
TINY_INFERENCE = {**SMALL, "num_workers": 0, "patch_size": [32, 32, 32], "sw_batch_size": 1}


def _random_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    net = nnMambaSeg(3, 4, 3, channels=8, out_relu=False)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.1)
    return net.state_dict()


def _assert_same_weights(path: Path, expected: dict[str, torch.Tensor]) -> None:
    loaded = torch.load(path, map_location="cpu", weights_only=True)
    assert list(loaded) == list(expected)
    for key, value in expected.items():
        assert torch.equal(loaded[key], value), key


# what a trained bundle folder holds besides the release: none of it may be in the zip
PRIVATE = [
    "configs/datalist.json",
    "configs/datalist_fold0.json",
    "models/last.pt",
    "models/model.ts",
    "models/smci_pmci/last.pt",
    "models/smci_pmci/model.pt",
    "models/.train.lock",
    "eval/case_0001_seg.nii.gz",
    "logs/train.log",
    "notes.txt",
    "docs/.~lock.README.md#",
]
# everything the BraTS bundle's zip may hold (the weights only in the full zip)
RELEASED = [
    "LICENSE",
    "large_files.yml",
    "docs/README.md",
    "docs/data_license.txt",
    "configs/evaluate.json",
    "configs/inference.json",
    "configs/inference_cpu.json",
    "configs/logging.conf",
    "configs/metadata.json",
    "configs/multi_gpu_evaluate.json",
    "configs/multi_gpu_train.json",
    "configs/train.json",
    "models/network.json",  # the settings the weights were trained with, from beside the weights file
]


def _leave_private_files(bundle: Path) -> None:
    for relpath in PRIVATE:
        (bundle / relpath).parent.mkdir(parents=True, exist_ok=True)
        (bundle / relpath).write_text('{"training": [{"image": "/home/me/ADNI/sub-0001.nii.gz"}]}')
    torch.save(_random_state_dict(seed=1), bundle / "models" / "model.pt")  # an older model.pt, replaced


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """A bundle copy, weights, the zip made by the CLI, a weights-less zip, all served over loopback HTTP."""
    root = tmp_path_factory.mktemp("pretrained")
    bundle = copy_bundle(BUNDLE, root / "source")
    _leave_private_files(bundle)
    weights = root / "trained" / "model.pt"
    weights.parent.mkdir()
    state = _random_state_dict()
    torch.save(state, weights)
    (weights.parent / "network.json").write_text(json.dumps({"network_def": NETWORK_SETTINGS_CHANNELS_8}))
    (bundle / "models" / "network.json").write_text("{}")  # a stale one in the folder: the weights' one wins
    with serve_directory(root) as base_url:
        weights_url = f"{base_url}/trained/model.pt"
        result = run_checked(
            [sys.executable, "-m", "nnmamba_monai.package_bundle", "--bundle", bundle, "--weights", weights]
            + ["--output", root / "dist", "--url", weights_url]
        )
        version = json.loads((bundle / "configs" / "metadata.json").read_text())["version"]
        full_zip = root / "dist" / f"{BUNDLE}_v{version}.zip"
        light_zip = package_bundle(bundle, weights, root / "dist_light", url=weights_url, exclude_weights=True)
        yield SimpleNamespace(
            root=root, bundle=bundle, weights=weights, state=state, base_url=base_url, weights_url=weights_url,
            full_zip=full_zip, light_zip=light_zip, cli_output=result.stdout,
        )  # fmt: skip


def test_zip_holds_only_the_allow_list(published, tmp_path):
    with zipfile.ZipFile(published.full_zip) as archive:
        full = sorted(archive.namelist())
        archive.extractall(tmp_path)
        meta = json.loads(archive.read(f"{BUNDLE}/configs/metadata.json"))
    with zipfile.ZipFile(published.light_zip) as archive:
        light = sorted(archive.namelist())
        light_meta = json.loads(archive.read(f"{BUNDLE}/configs/metadata.json"))
    assert full == sorted(f"{BUNDLE}/{relpath}" for relpath in [*RELEASED, WEIGHTS_RELPATH])
    # --exclude_weights: no weights file of any kind
    assert light == sorted(f"{BUNDLE}/{relpath}" for relpath in RELEASED)
    # the metadata says which weights belong to the zip, not that there are none
    digest = file_digest(published.weights)
    expected = {"path": WEIGHTS_RELPATH, "sha256": digest, "included": True, "url": published.weights_url}
    assert meta["trained_weights"] == expected
    assert light_meta["trained_weights"]["included"] is False and light_meta["trained_weights"]["sha256"] == digest
    assert f"sha256 {digest}, inside the zip" in meta["description"]
    texts = json.dumps({k: v for k, v in meta.items() if k != "changelog"})
    assert "no trained weights" not in texts.lower(), texts
    verify_metadata(tmp_path / BUNDLE, cli=False)  # still valid against MONAI's schema
    settings = json.loads((tmp_path / BUNDLE / "models" / "network.json").read_text())
    assert settings == {"network_def": NETWORK_SETTINGS_CHANNELS_8}


def test_allowed_member_refuses_datalists_and_every_weights_file_but_one():
    assert allowed_member("models/model.pt") and not allowed_member("models/model.pt", with_weights=False)
    for relpath in ["configs/datalist.json", "configs/Datalist_adni.json", "configs/model.pt", "models/last.pt"]:
        assert not allowed_member(relpath), relpath
    for relpath in ["models/model.ts", "models/smci_pmci/model.pt", "docs/weights.pth", "scripts/x.pyc", "x.py"]:
        assert not allowed_member(relpath), relpath
    assert allowed_member("configs/train_smci_pmci.json") and allowed_member("scripts/utils/io.py")


def test_cli_writes_one_top_level_folder_with_hashed_weights(published):
    zip_path = published.full_zip
    assert f"wrote {zip_path}" in published.cli_output
    with zipfile.ZipFile(zip_path) as archive:
        names = archive.namelist()
        weights = archive.read(f"{BUNDLE}/{WEIGHTS_RELPATH}")
        large_files = yaml.safe_load(archive.read(f"{BUNDLE}/large_files.yml"))
    assert {name.split("/")[0] for name in names} == {BUNDLE}, "single top-level folder named after the bundle"
    assert f"{BUNDLE}/configs/inference.json" in names and f"{BUNDLE}/configs/metadata.json" in names
    assert not [n for n in names if "/eval/" in n or n.endswith((".zip", ".pyc"))], names
    assert weights == published.weights.read_bytes()
    (entry,) = [e for e in large_files["large_files"] if e["path"] == WEIGHTS_RELPATH]
    assert entry == {
        "path": WEIGHTS_RELPATH,
        "url": published.weights_url,
        "hash_val": hashlib.sha256(weights).hexdigest(),
        "hash_type": "sha256",
    }
    digest, name = (zip_path.parent / f"{zip_path.name}.sha256").read_text().split()
    assert (digest, name) == (file_digest(zip_path), zip_path.name)


@pytest.mark.parametrize("scheme", ["file", "http"])
def test_monai_download_gives_the_packaged_bundle(published, tmp_path, scheme):
    url = published.full_zip.as_uri() if scheme == "file" else f"{published.base_url}/dist/{published.full_zip.name}"
    monai_bundle("download", name=BUNDLE, bundle_dir=str(tmp_path), url=url, progress=False)
    downloaded = tmp_path / BUNDLE
    _assert_same_weights(downloaded / WEIGHTS_RELPATH, published.state)
    network = build_network(downloaded, **SMALL)
    network.load_state_dict(torch.load(downloaded / WEIGHTS_RELPATH, weights_only=True), strict=True)
    verify_net_in_out(downloaded, n=2, **SMALL)
    if scheme == "http":  # the whole inference from the downloaded folder, as its README says
        data, datalist = brats_unlabelled_cases(tmp_path / "cases")
        output = tmp_path / "predictions"
        run_bundle(
            downloaded,
            ["configs/inference.json"],
            from_bundle_dir=True,
            **{**TINY_INFERENCE, "dataset_dir": str(data), "datalist_file": str(datalist), "output_dir": str(output)},
        )
        assert_prediction_on_input_grid(output, data, 7)


def test_download_large_files_fetches_and_verifies_the_weights(published, tmp_path):
    with zipfile.ZipFile(published.light_zip) as archive:
        assert f"{BUNDLE}/{WEIGHTS_RELPATH}" not in archive.namelist()
        archive.extractall(tmp_path)
    bundle = tmp_path / BUNDLE
    monai_bundle("download_large_files", bundle_path=str(bundle))
    assert file_digest(bundle / WEIGHTS_RELPATH) == file_digest(published.weights)
    _assert_same_weights(bundle / WEIGHTS_RELPATH, published.state)


def test_download_large_files_rejects_a_wrong_hash(published, tmp_path):
    from monai.apps.utils import HashCheckError
    from monai.bundle import download_large_files

    with zipfile.ZipFile(published.light_zip) as archive:
        archive.extractall(tmp_path)
    bundle = tmp_path / BUNDLE
    listing = yaml.safe_load((bundle / "large_files.yml").read_text())
    listing["large_files"][0]["hash_val"] = "0" * 64
    (bundle / "large_files.yml").write_text(yaml.safe_dump(listing))
    with pytest.raises(HashCheckError, match="sha256 hash check of downloaded file failed"):
        download_large_files(bundle_path=str(bundle))
    assert not (bundle / WEIGHTS_RELPATH).exists(), "a file failing its hash is not kept"


def test_weights_must_be_a_plain_state_dict(tmp_path):
    trainer_file = tmp_path / "checkpoint.pt"
    torch.save({"epoch": 3, "state_dict": {"w": torch.zeros(1)}}, trainer_file)
    with pytest.raises(ValueError, match="expected a plain state_dict"):
        check_state_dict_file(trainer_file)
    with pytest.raises(ValueError, match="needs a url"):
        package_bundle(copy_bundle(BUNDLE, tmp_path), trainer_file, tmp_path / "dist", exclude_weights=True)

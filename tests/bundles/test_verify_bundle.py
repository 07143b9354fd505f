"""The model zoo's minimal checks (``nnmamba_monai.verify_bundle``) on every bundle, offline."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys

import pytest
import yaml

from nnmamba_monai.verify_bundle import NO_WEIGHTS_REASON, BundleVerificationError, verify_bundle
from tests.bundle_support import META_SCHEMA
from tests.conftest import REPO_ROOT

BUNDLES_DIR = REPO_ROOT / "bundles"
ALL_BUNDLES = sorted(p.name for p in BUNDLES_DIR.iterdir() if (p / "configs" / "metadata.json").is_file())
UNRELEASED = [name for name in ALL_BUNDLES if not (BUNDLES_DIR / name / "models" / "model.pt").is_file()]


def _copy(name: str, tmp_path):
    return shutil.copytree(BUNDLES_DIR / name, tmp_path / name, symlinks=False)


def _release(bundle, weights: bytes = b"weights") -> str:
    """Put a stand-in models/model.pt in ``bundle`` and list it as package_bundle does; returns its sha256."""
    (bundle / "models").mkdir(exist_ok=True)
    (bundle / "models" / "model.pt").write_bytes(weights)
    sha256 = hashlib.sha256(weights).hexdigest()
    entry = {
        "path": "models/model.pt",
        "url": "https://example.org/model.pt",
        "hash_val": sha256,
        "hash_type": "sha256",
    }
    (bundle / "large_files.yml").write_text(yaml.safe_dump({"large_files": [entry]}))
    return sha256


@pytest.mark.parametrize("name", UNRELEASED)
def test_unreleased_bundle_fails_only_for_missing_weights(name):
    passed: list[str] = []
    with pytest.raises(BundleVerificationError) as raised:
        verify_bundle(BUNDLES_DIR / name, META_SCHEMA, report=passed.append)
    assert str(raised.value) == f"{BUNDLES_DIR / name / 'models' / 'model.pt'} is missing: {NO_WEIGHTS_REASON}"
    assert [line.split(":")[0] for line in passed] == ["large files", "necessary files"]
    assert passed[0] == "large files: large_files lists no files"


@pytest.mark.parametrize("name", ["brats_nnmamba_segmentation", "adni_nnmamba_classification"])
def test_bundle_with_listed_weights_passes_every_check(name, tmp_path):
    bundle = _copy(name, tmp_path)
    _release(bundle)
    passed: list[str] = []
    verify_bundle(bundle, META_SCHEMA, report=passed.append)
    assert [line.split(":")[0] for line in passed] == [
        "large files",
        "necessary files",
        "preferred files",
        "version",
        "metadata schema",
    ]
    assert passed[0] == "large files: 1 large file(s) present with matching hashes"


def test_weights_that_do_not_match_their_hash_are_named(tmp_path):
    bundle = _copy("brats_nnmamba_segmentation", tmp_path)
    _release(bundle)
    (bundle / "models" / "model.pt").write_bytes(b"other weights")
    with pytest.raises(BundleVerificationError, match=r"models/model\.pt: sha256 does not match hash_val"):
        verify_bundle(bundle, META_SCHEMA)


def test_placeholder_entry_is_refused(tmp_path):
    bundle = _copy("fetal_nnmamba_landmark", tmp_path)
    entry = {"path": "models/model.pt", "url": "not-yet-released", "hash_val": "", "hash_type": "md5"}
    (bundle / "large_files.yml").write_text(yaml.safe_dump({"large_files": [entry]}))
    with pytest.raises(BundleVerificationError, match=r"entry 0 \(models/model\.pt\).*'not-yet-released' cannot be"):
        verify_bundle(bundle, META_SCHEMA)


def test_changelog_must_hold_the_version(tmp_path):
    bundle = _copy("adni_nnmamba_classification", tmp_path)
    _release(bundle)
    metadata = bundle / "configs" / "metadata.json"
    metadata.write_text(metadata.read_text().replace('"version": "', '"version": "9.9.9-', 1))
    with pytest.raises(
        BundleVerificationError, match=r"metadata\.json: version 9\.9\.9-.* has no entry in 'changelog'"
    ):
        verify_bundle(bundle, META_SCHEMA)


def test_cli_exit_codes(tmp_path):
    unreleased = subprocess.run(
        [sys.executable, "-m", "nnmamba_monai.verify_bundle", str(BUNDLES_DIR / UNRELEASED[0])],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
    )
    assert unreleased.returncode == 1
    assert unreleased.stderr.strip().splitlines()[-1].startswith("FAILED: ")
    assert "ships no trained weights" in unreleased.stderr
    bundle = _copy("brats_nnmamba_segmentation", tmp_path)
    _release(bundle)
    released = subprocess.run(
        [sys.executable, "-m", "nnmamba_monai.verify_bundle", str(bundle), "--schema", str(META_SCHEMA)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
    )
    assert released.returncode == 0, released.stderr
    assert released.stdout.strip().splitlines()[-1].endswith("passes the model zoo's minimal checks")


RELEASED = [name for name in ALL_BUNDLES if name not in UNRELEASED]


def test_only_the_brain_extraction_bundle_ships_weights():
    assert RELEASED == ["brain_nnmamba_extraction"]


@pytest.mark.parametrize("name", RELEASED)
def test_bundle_that_ships_weights_passes_every_check(name, tmp_path):
    passed: list[str] = []
    verify_bundle(BUNDLES_DIR / name, META_SCHEMA, report=passed.append)
    assert passed[0] == "large files: 1 large file(s) present with matching hashes"
    assert len(passed) == 5
    # the zoo's first step is MONAI's own download_large_files: with the file present it checks the hash only
    from monai.apps.utils import HashCheckError
    from monai.bundle import download_large_files

    bundle = _copy(name, tmp_path)
    download_large_files(bundle_path=str(bundle))
    (bundle / "models" / "model.pt").write_bytes(b"tampered")
    with pytest.raises(HashCheckError, match="hash check of existing file failed"):
        download_large_files(bundle_path=str(bundle))


def test_entry_without_url_key_is_refused(tmp_path):
    bundle = _copy("brats_nnmamba_segmentation", tmp_path)
    _release(bundle)
    listing = yaml.safe_load((bundle / "large_files.yml").read_text())
    del listing["large_files"][0]["url"]
    (bundle / "large_files.yml").write_text(yaml.safe_dump(listing))
    with pytest.raises(BundleVerificationError, match=r"no 'url' key"):
        verify_bundle(bundle, META_SCHEMA)

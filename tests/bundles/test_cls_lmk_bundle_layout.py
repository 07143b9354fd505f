"""The two bundles have the model-zoo layout, honest metadata and docs that name only files that exist."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from tests.conftest import REPO_ROOT

BUNDLES = ["adni_nnmamba_classification", "fetal_nnmamba_landmark"]
REQUIRED = [
    "LICENSE",
    "configs/metadata.json",
    "configs/train.json",
    "configs/evaluate.json",
    "configs/inference.json",
    "configs/multi_gpu_train.json",
    "configs/logging.conf",
    "docs/README.md",
    "docs/data_license.txt",
    "large_files.yml",
    "models/.gitkeep",
]


@pytest.mark.parametrize("name", BUNDLES)
def test_layout_and_licence(name):
    bundle = REPO_ROOT / "bundles" / name
    missing = [f for f in REQUIRED if not (bundle / f).is_file()]
    assert not missing, f"{name} lacks {missing}"
    assert (bundle / "LICENSE").read_text() == (REPO_ROOT / "LICENSE").read_text()
    assert not list((bundle / "models").glob("*.pt")), "weights must not be committed"
    large_files = yaml.safe_load((bundle / "large_files.yml").read_text())
    assert large_files == {"large_files": []}, "no weights are released: no placeholder entries"


@pytest.mark.parametrize("name", BUNDLES)
def test_metadata_labels_paper_numbers_as_published_not_achieved(name):
    meta = json.loads((REPO_ROOT / "bundles" / name / "configs" / "metadata.json").read_text())
    assert "eval_metrics" not in meta  # nothing achieved by this bundle yet
    assert "Not reproduced here" in meta["published_results"]["note"]
    assert "No trained weights" in meta["description"]


@pytest.mark.parametrize("name", BUNDLES)
def test_readme_covers_data_commands_results_hardware_and_names_existing_configs(name):
    bundle = REPO_ROOT / "bundles" / name
    readme = (bundle / "docs" / "README.md").read_text()
    for needed in ("## Data", "## Commands", "## System Configuration", "torchrun", "python -m nnmamba_monai.datalist"):
        assert needed in readme, needed
    assert "published, not reproduced here" in readme.lower()
    assert "cannot be downloaded" in readme and "generated" in readme
    for config in set(re.findall(r"configs/[\w]+\.(?:json|conf)", readme)):
        if "datalist" not in config:  # datalists are written by the user
            assert (bundle / config).is_file(), f"README names {config}, which does not exist"

"""Each segmentation bundle has the model-zoo layout, ids and defaults, and documents what it must."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from tests.bundle_support import BUNDLES_DIR, parse_bundle_configs
from tests.conftest import REPO_ROOT

BUNDLES = {  # bundle -> datalist subcommand
    "brats_nnmamba_segmentation": "brats",
    "amos_ct_nnmamba_segmentation": "amos",
    "amos_mr_nnmamba_segmentation": "amos",
}
FILES = [
    "LICENSE",
    "large_files.yml",
    "models/.gitkeep",
    "docs/README.md",
    "docs/data_license.txt",
    "configs/metadata.json",
    "configs/logging.conf",
    *(f"configs/{name}.json" for name in ("train", "evaluate", "inference", "multi_gpu_train", "multi_gpu_evaluate")),
]


def load(bundle: str, name: str) -> dict:
    return json.loads((BUNDLES_DIR / bundle / "configs" / name).read_text())


def expressions(node) -> list[str]:
    """Every ``$`` expression in a config tree."""
    if isinstance(node, dict):
        return [e for value in node.values() for e in expressions(value)]
    if isinstance(node, list):
        return [e for value in node for e in expressions(value)]
    return [node] if isinstance(node, str) and node.startswith("$") else []


def published_numbers(node) -> list[float]:
    if isinstance(node, dict):
        return [n for value in node.values() for n in published_numbers(value)]
    return [node] if isinstance(node, float) else []


@pytest.mark.parametrize("bundle", BUNDLES)
def test_files_and_licence(bundle):
    root = BUNDLES_DIR / bundle
    assert [f for f in FILES if not (root / f).is_file()] == []
    assert (root / "LICENSE").read_bytes() == (REPO_ROOT / "LICENSE").read_bytes()
    entries = yaml.safe_load((root / "large_files.yml").read_text())["large_files"]
    assert entries == [], "no weights are released: large_files.yml must not list placeholder entries"
    assert not (root / "models" / "model.pt").exists()


@pytest.mark.parametrize("bundle", BUNDLES)
def test_model_zoo_ids_and_paper_defaults(bundle):
    train, inference = load(bundle, "train.json"), load(bundle, "inference.json")
    for key in ("bundle_root", "device", "dataset_dir", "output_dir", "ckpt_dir", "network_def", "network"):
        assert key in train and key in inference, key
    assert {"trainer", "dataset", "inferer", "handlers"} <= set(train["train"])
    assert "evaluator" in train["validate"] and "val_interval" in train
    assert {"dataset", "evaluator", "inferer", "preprocessing", "postprocessing"} <= set(inference)
    assert train["network"] == inference["network"] == "$@network_def.to(@device)"
    assert inference["network_def"]["_target_"] == "nnmamba_monai.networks.nnMambaSeg"
    assert inference["network_def"]["out_relu"] is False, "sigmoid/softmax need signed logits"
    assert "inference_network_def(@bundle_root" in train["network_def"]  # train builds inference.json's definition
    assert train["optimizer"]["_target_"] == "torch.optim.Adam"
    assert (train["learning_rate"], train["weight_decay"], train["batch_size"], train["max_epochs"]) == (
        0.002,
        0.001,
        2,
        1000,
    )
    assert "TensorBoardStatsHandler" in [h["_target_"] for h in train["train"]["handlers"]]
    backend = next(line for line in load(bundle, "multi_gpu_train.json")["initialize"] if "init_process_group" in line)
    assert "'nccl' if @device.type == 'cuda' else 'gloo'" in backend
    for name in ("train.json", "evaluate.json", "inference.json", "multi_gpu_train.json", "multi_gpu_evaluate.json"):
        for expression in expressions(load(bundle, name)):
            assert "\n" not in expression and len(expression) <= 200, f"{name}: not a one-liner: {expression}"


@pytest.mark.parametrize("bundle", BUNDLES)
def test_metadata_keeps_published_numbers_apart(bundle):
    metadata = load(bundle, "metadata.json")
    assert "eval_metrics" not in metadata, "no achieved scores to report"
    published = metadata["published_results"]
    assert "NOT reproduced" in published["note"]
    readme = (BUNDLES_DIR / bundle / "docs" / "README.md").read_text()
    for number in published_numbers(published):
        assert f"{number:.2f}" in readme, f"published {number} missing from the README"


@pytest.mark.parametrize(("bundle", "dataset"), BUNDLES.items())
def test_readme_documents_preparation_commands_results_and_testing(bundle, dataset):
    readme = (BUNDLES_DIR / bundle / "docs" / "README.md").read_text()
    assert f"python -m nnmamba_monai.datalist {dataset}" in readme
    for needle in ("configs/train.json", "configs/evaluate.json", "configs/inference.json", "multi_gpu_train.json"):
        assert needle in readme, needle
    assert "torchrun --standalone --nnodes=1 --nproc_per_node=2 -m monai.bundle run" in readme
    assert "not reproduced here" in readme.lower()
    assert re.search(r"cannot be\s+downloaded", readme) and "stand-in" in readme
    assert "## System Configuration" in readme
    assert "out_relu" in readme, "documents the published final ReLU and converted checkpoints"


@pytest.mark.parametrize("bundle", ["amos_ct_nnmamba_segmentation", "brats_nnmamba_segmentation"])
def test_sliding_window_shows_progress_in_inference_and_evaluation_not_in_training(bundle):
    from monai.utils import optional_import

    tqdm_present = optional_import("tqdm")[1]

    def inferer(files: list[str], inferer_id: str):
        return parse_bundle_configs(BUNDLES_DIR / bundle, *files).get_parsed_content(inferer_id)

    # a tqdm bar per volume where tqdm imports (a dependency); never MONAI's error for a missing tqdm
    assert inferer(["inference.json"], "inferer").progress is tqdm_present
    assert inferer(["train.json", "evaluate.json"], "validate#inferer").progress is tqdm_present
    # validation inside training: one line per epoch is enough
    assert inferer(["train.json"], "validate#inferer").progress is False

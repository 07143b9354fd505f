"""adni_nnmamba_classification: metadata, network I/O, workflow properties, train / evaluate / infer, the sMCI vs pMCI
transfer from the NC vs AD checkpoint, TorchScript export, multi-process training. CPU, tiny generated data in the
real layout (a CSV of image paths and diagnoses)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from ignite.engine import Events
from monai.bundle import ConfigParser, ConfigWorkflow

from nnmamba_monai.datalist.__main__ import main as datalist_main
from nnmamba_monai.networks import nnMambaCls
from tests.bundle_support import (
    MULTI_GPU_EVALUATION,
    assert_trained_export_matches_eager,
    assert_weights_kept,
    check_workflow_properties,
    copy_bundle,
    network_overrides_for,
    read_csv_rows,
    run_bundle,
    torchrun_bundle,
    verify_metadata,
    verify_net_in_out,
)
from tests.bundles.synthetic import make_adni_dataset
from tests.conftest import REPO_ROOT

NAME = "adni_nnmamba_classification"
SOURCE = REPO_ROOT / "bundles" / NAME
TINY = {"image_size": [16, 16, 16], "network_def#channels": 8, "num_workers": 0, "cache_rate": 0.0}
ONE_EPOCH = {"train#trainer#max_epochs": 1}


def write_mci_table(dataset_dir: Path) -> None:
    """``mci.csv``: the same scans relabelled sMCI (was CN) / pMCI (was AD), for the transfer task."""
    with open(dataset_dir / "subjects.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    relabel = {"CN": "sMCI", "AD": "pMCI"}
    with open(dataset_dir / "mci.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({**r, "label": relabel[r["label"]]} for r in rows)


def build_datalist(bundle: Path, dataset_dir: Path, csv_name: str, task: str) -> Path:
    """``python -m nnmamba_monai.datalist adni ...`` (in-process) into the bundle's configs/, 3 folds by subject."""
    output = bundle / "configs" / f"datalist_{task}.json"
    args = ["adni", "--csv", str(dataset_dir / csv_name), "--output", str(output), "--task", task]
    assert datalist_main([*args, "--subject_column", "subject", "--num_folds", "3"]) == 0
    return output


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The bundle copied to a tmp dir, an NC/AD dataset (3 + 3 subjects, 3 folds), and one training run.

    Fold 0 validates on one NC and one AD scan; the other four scans train: 2 iterations of batch 2.
    """
    root = tmp_path_factory.mktemp("adni")
    dataset_dir = root / "ADNI"
    make_adni_dataset(dataset_dir, subjects_per_class=3)
    bundle = copy_bundle(NAME, root)
    datalist = json.loads(build_datalist(bundle, dataset_dir, "subjects.csv", "nc_ad").read_text())
    write_mci_table(dataset_dir)
    build_datalist(bundle, dataset_dir, "mci.csv", "smci_pmci")
    # as the README writes it: from inside the bundle folder, relative config paths, bundle_root "."
    result = run_bundle(
        bundle, ["configs/train.json"], from_bundle_dir=True, dataset_dir=dataset_dir, **TINY, **ONE_EPOCH
    )
    return SimpleNamespace(dataset_dir=dataset_dir, datalist=datalist, bundle=bundle, log=result.stdout, root=root)


def validation_images(trained, fold: int = 0) -> set[str]:
    return {
        str((trained.dataset_dir / e["image"]).resolve()) for e in trained.datalist["training"] if e["fold"] == fold
    }


def test_metadata_verifies_against_the_schema():
    verify_metadata(SOURCE)


def test_network_in_out_with_the_published_configuration():
    # the full network (C=32) on the authors' 112 x 136 x 112 input, one logit out
    verify_net_in_out(SOURCE)


def test_workflow_properties_complete_for_train_and_infer(trained):
    data = {"dataset_dir": str(trained.dataset_dir), **TINY}
    assert check_workflow_properties(trained.bundle, ["configs/train.json"], "train", **data) == []
    transfer = ["configs/train.json", "configs/train_smci_pmci.json"]
    assert check_workflow_properties(trained.bundle, transfer, "train", **data) == []
    images = {**data, "dataset_dir": str(trained.dataset_dir / "images")}
    assert check_workflow_properties(trained.bundle, ["configs/inference.json"], "infer", **images) == []


def test_inference_config_matches_training():
    """inference.json stands alone (model-zoo style); its network and image preprocessing must equal train's."""
    bundle = SOURCE
    train, infer = (ConfigParser.load_config_file(bundle / "configs" / f) for f in ("train.json", "inference.json"))
    assert "inference_network_def(@bundle_root" in train["network_def"]  # the one definition is inference.json's
    # training reads the datalist's NIfTI files; inference reads any scan format (nnmamba_monai.transforms.ScanReader)
    assert infer["image_size"] == train["image_size"] and "ScanReader" in infer["image_reader"]
    image_transforms = [t for t in train["train"]["deterministic_transforms"] if t["keys"] == "image"]
    assert infer["preprocessing"]["transforms"] == image_transforms
    assert train["learning_rate"] == 0.002 and train["optimizer"]["lr"] == "@learning_rate"  # the paper's settings
    assert train["optimizer"]["weight_decay"] == 0.001
    assert train["batch_size"] == 2 and train["train"]["trainer"]["max_epochs"] == 100


def test_training_runs_two_iterations_and_saves_a_loadable_checkpoint(trained):
    assert "Epoch: 1/1, Iter: 2/2" in trained.log and "val_auc" in trained.log
    checkpoint = trained.bundle / "models" / "model.pt"
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    nnMambaCls(channels=8).load_state_dict(state, strict=True)
    events = list((trained.bundle / "eval").glob("events.out.tfevents.*"))
    assert events and max(e.stat().st_size for e in events) > 100  # TensorBoard logged the loss


def test_evaluate_writes_metrics_and_per_scan_predictions(trained):
    run_bundle(trained.bundle, ["configs/train.json", "configs/evaluate.json"], dataset_dir=trained.dataset_dir, **TINY)
    with open(trained.bundle / "eval" / "metrics.csv", newline="") as handle:
        metrics = {row[0]: float(row[1]) for row in csv.reader(handle)}
    assert set(metrics) == {"val_auc", "val_accuracy", "val_f1"}
    assert all(0.0 <= v <= 1.0 for v in metrics.values())
    rows = read_csv_rows(trained.bundle / "eval" / "predictions.csv")
    assert {str(Path(r["image"]).resolve()) for r in rows} == validation_images(trained)
    assert list(rows[0]) == ["image", "probability", "predicted_class"]
    for row in rows:
        probability, predicted = float(row["probability"]), float(row["predicted_class"])
        assert 0.0 <= probability <= 1.0 and predicted == float(probability >= 0.5)
    label_of = {Path(e["image"]).name: e["label"] for e in trained.datalist["training"]}
    accuracy = sum(float(r["predicted_class"]) == label_of[Path(r["image"]).name] for r in rows) / len(rows)
    assert metrics["val_accuracy"] == pytest.approx(accuracy)  # the metric agrees with the saved predictions


def test_inference_writes_one_row_per_image_consistent_with_evaluation(trained):
    out = trained.root / "inference"
    images_dir = trained.dataset_dir / "images"
    tiny = {key: value for key, value in TINY.items() if key != "cache_rate"}  # inference.json caches nothing
    run_bundle(trained.bundle, ["configs/inference.json"], dataset_dir=images_dir, output_dir=out, **tiny)
    rows = read_csv_rows(out / "predictions.csv")
    assert sorted(Path(r["image"]).name for r in rows) == sorted(p.name for p in images_dir.glob("*.nii.gz"))
    for row in rows:
        probability = float(row["probability"])
        assert 0.0 <= probability <= 1.0 and float(row["predicted_class"]) == float(probability >= 0.5)
    evaluated = trained.bundle / "eval" / "predictions.csv"
    if evaluated.is_file():  # same checkpoint, same preprocessing: same probabilities as the evaluation run
        by_name = {Path(r["image"]).name: float(r["probability"]) for r in rows}
        for row in read_csv_rows(evaluated):
            assert by_name[Path(row["image"]).name] == pytest.approx(float(row["probability"]), abs=1e-5)


def test_smci_pmci_transfer_starts_from_the_nc_ad_weights(trained):
    """train.json + train_smci_pmci.json: the fine-tuning loader puts the NC/AD weights into the network before
    step 1."""
    dataset_dir = trained.dataset_dir
    bundle = trained.bundle
    workflow = ConfigWorkflow(
        config_file=[str(bundle / "configs" / "train.json"), str(bundle / "configs" / "train_smci_pmci.json")],
        meta_file=str(bundle / "configs" / "metadata.json"),
        logging_file=False,
        workflow_type="train",
        bundle_root=str(bundle),
        dataset_dir=str(dataset_dir),
        **network_overrides_for("configs/train.json", TINY),
    )
    workflow.initialize()
    assert workflow.parser.get_parsed_content("datalist_file").endswith("datalist_smci_pmci.json")
    assert workflow.parser.get_parsed_content("ckpt_dir") == f"{bundle}/models/smci_pmci"  # NC/AD model kept
    network, trainer = (
        workflow.parser.get_parsed_content("network"),
        workflow.parser.get_parsed_content("train#trainer"),
    )
    saved = torch.load(bundle / "models" / "model.pt", map_location="cpu", weights_only=True)
    before = {k: v.clone() for k, v in network.state_dict().items()}
    assert any(not torch.equal(before[k], saved[k]) for k in saved)  # so the check below means something
    loaded = {}

    @trainer.on(Events.ITERATION_STARTED(once=1))  # after the loader (at the first epoch's start), before step 1
    def capture_and_stop(engine):
        loaded.update({k: v.clone() for k, v in network.state_dict().items()})
        engine.terminate()

    trainer.run()
    workflow.finalize()
    assert loaded.keys() == saved.keys()
    for key, value in saved.items():
        assert torch.equal(loaded[key], value), key


def test_torchscript_export_of_the_trained_network_matches_eager(trained, tmp_path):
    assert_trained_export_matches_eager(trained.bundle, tmp_path, (1, 1, 16, 16, 16), (2, 1, 32, 32, 32))


def test_multi_process_training_config(trained):
    """configs/multi_gpu_train.json under torchrun with 2 processes (gloo on CPU; nccl on GPUs)."""
    ckpt_dir = trained.root / "ddp_models"

    result = torchrun_bundle(
        trained.bundle,
        ["configs/train.json", "configs/multi_gpu_train.json"],
        nproc_per_node=2,
        dataset_dir=trained.dataset_dir,
        ckpt_dir=ckpt_dir,
        output_dir=trained.root / "ddp_eval",
        **TINY,
        **ONE_EPOCH,
    )
    # 4 training scans over 2 processes at batch 2: one iteration each; only rank 0 logs
    assert result.stdout.count("Epoch: 1/1, Iter: 1/1") == 1 and "Iter: 1/2" not in result.stdout
    nnMambaCls(channels=8).load_state_dict(torch.load(ckpt_dir / "model.pt", weights_only=True))


def test_multi_process_transfer_starts_every_rank_from_the_nc_ad_weights(trained):
    """train.json + train_smci_pmci.json + multi_gpu_train.json under torchrun: both ranks load the NC/AD weights;
    with a learning rate of 0 the saved network is exactly those weights."""
    ckpt_dir = trained.root / "ddp_transfer_models"
    result = torchrun_bundle(
        trained.bundle,
        ["configs/train.json", "configs/train_smci_pmci.json", "configs/multi_gpu_train.json"],
        nproc_per_node=2,
        dataset_dir=trained.dataset_dir,
        ckpt_dir=ckpt_dir,
        output_dir=trained.root / "ddp_transfer_eval",
        learning_rate=0.0,
        **TINY,
        **ONE_EPOCH,
    )
    pretrained = trained.bundle / "models" / "model.pt"
    expected = torch.load(pretrained, map_location="cpu", weights_only=True)
    loaded = f"fine-tuning from {pretrained}: {len(expected)} of {len(expected)} network tensors loaded"
    assert (result.stdout + result.stderr).count(loaded) == 2  # one line per rank
    assert_weights_kept(ckpt_dir / "model.pt", pretrained)


def test_multi_process_evaluation_gathers_every_rank_s_predictions(trained):
    """train.json + evaluate.json + multi_gpu_evaluate.json under torchrun with 2 processes (gloo on CPU).

    Each rank scores one of the two validation scans; rank 0 writes the metrics and the predictions of both.
    """
    output_dir = trained.root / "ddp_evaluate"
    torchrun_bundle(
        trained.bundle,
        MULTI_GPU_EVALUATION,
        nproc_per_node=2,
        dataset_dir=trained.dataset_dir,
        output_dir=output_dir,
        **TINY,
    )
    rows = read_csv_rows(output_dir / "predictions.csv")
    assert sorted(str(Path(r["image"]).resolve()) for r in rows) == sorted(validation_images(trained))
    with open(output_dir / "metrics.csv", newline="") as handle:
        metrics = {row[0]: float(row[1]) for row in csv.reader(handle)}
    label_of = {Path(e["image"]).name: e["label"] for e in trained.datalist["training"]}
    accuracy = sum(float(r["predicted_class"]) == label_of[Path(r["image"]).name] for r in rows) / len(rows)
    assert metrics["val_accuracy"] == pytest.approx(accuracy)  # the gathered metric covers both ranks' scans

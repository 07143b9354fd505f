"""Experiment tracking: every bundle's training logs to TensorBoard, and ``--tracking mlflow`` records a run.

MONAI's built-in MLflow settings (``monai.bundle.utils.DEFAULT_MLFLOW_SETTINGS``) attach an ``MLFlowHandler``
to ``train#trainer`` and ``validate#evaluator``; MONAI refuses MLflow's file store (``file://`` URIs), so the
run goes to a SQLite database (``sqlite:///<dir>/mlruns.db``, artifacts in ``<dir>/mlruns``). Needs
``mlflow-skinny``, ``sqlalchemy`` and ``alembic`` (skipped without them).
"""

from __future__ import annotations

import json

import pytest

from nnmamba_monai.datalist import __main__ as datalist_cli
from tests.bundle_support import BUNDLES_DIR, copy_bundle, run_bundle
from tests.bundles.standin_data import make_brats_dataset

BUNDLE = "brats_nnmamba_segmentation"
TINY = {"num_workers": 0, "patch_size": [32, 32, 32], "network_def#channels": 8, "sw_batch_size": 1}
BUNDLE_NAMES = sorted(p.name for p in BUNDLES_DIR.iterdir() if (p / "configs" / "train.json").is_file())


def _handlers(config: dict, section: str, target: str) -> list[dict]:
    return [h for h in config[section]["handlers"] if str(h.get("_target_", "")).endswith(target)]


@pytest.mark.parametrize("bundle_name", BUNDLE_NAMES)
def test_training_logs_loss_and_validation_metrics_to_tensorboard(bundle_name):
    config = json.loads((BUNDLES_DIR / bundle_name / "configs" / "train.json").read_text())
    (train,) = _handlers(config, "train", "TensorBoardStatsHandler")
    assert train["log_dir"] == "@output_dir" and train["tag_name"] == "train_loss"
    assert "from_engine(['loss']" in train["output_transform"]
    (validate,) = _handlers(config, "validate", "TensorBoardStatsHandler")
    assert validate["log_dir"] == "@output_dir" and validate.get("iteration_log") is False, "epoch-level metrics"
    # the ids MONAI's --tracking mlflow patches
    assert "trainer" in config["train"] and "evaluator" in config["validate"] and "output_dir" in config


def test_tracking_mlflow_records_the_training_run(tmp_path):
    mlflow = pytest.importorskip("mlflow", reason="mlflow-skinny is not installed")
    pytest.importorskip("sqlalchemy", reason="MLflow's SQLite store needs sqlalchemy")
    pytest.importorskip("alembic", reason="MLflow's SQLite store needs alembic")
    data = make_brats_dataset(tmp_path / "TrainingData", (1, 2, 3))
    datalist = tmp_path / "datalist.json"
    datalist_cli.main(["brats", "--dataset_dir", str(data), "--output", str(datalist), "--num_folds", "3"])
    bundle = copy_bundle(BUNDLE, tmp_path)
    tracking_uri = f"sqlite:///{tmp_path / 'tracking' / 'mlruns.db'}"
    (tmp_path / "tracking").mkdir()
    run_bundle(
        bundle,
        ["configs/train.json"],
        max_epochs=1,
        val_interval=1,
        batch_size=1,
        dataset_dir=str(data),
        datalist_file=str(datalist),
        tracking="mlflow",
        tracking_uri=tracking_uri,
        experiment_name="nnmamba_tracking_test",
        **TINY,
    )
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    experiment = client.get_experiment_by_name("nnmamba_tracking_test")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.params == {"max_epochs": "1", "epoch_length": "2"}
    history = client.get_metric_history(run.info.run_id, "train_loss")
    assert [m.step for m in history] == [1, 2], "train loss per iteration"
    expected = {"val_mean_dice", "val_dice_wt", "val_dice_tc", "val_dice_et", "val_mean_hd95", "lr_group_0"}
    assert expected <= set(run.data.metrics), sorted(run.data.metrics)
    artifacts = [a.path for a in client.list_artifacts(run.info.run_id)]
    assert len(artifacts) == 1 and artifacts[0].startswith("config_"), "the executed config is an artifact"
    assert list((tmp_path / "tracking" / "mlruns").rglob(artifacts[0])), "artifacts beside the database"
    assert list((bundle / "eval").glob("events.out.tfevents.*")), "TensorBoard keeps logging alongside"

"""The multi-GPU overrides under ``torchrun --nproc_per_node=2`` on CPU: DDP over gloo, data split across ranks.

Same config files as on GPUs; the process-group backend and the device follow ``torch.cuda.is_available()``
(nccl and ``cuda:LOCAL_RANK`` on GPUs, gloo and CPU here).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from nnmamba_monai import nnMambaSeg
from nnmamba_monai.datalist.brats import build_brats_datalist
from nnmamba_monai.datalist.common import write_datalist
from tests.bundle_support import MULTI_GPU_EVALUATION, copy_bundle, read_csv_rows, torchrun_bundle
from tests.bundles.standin_data import make_brats_dataset

BUNDLE = "brats_nnmamba_segmentation"


def test_multi_gpu_training_and_evaluation_run_over_two_ranks(tmp_path):
    # 4 cases: 2 train (one per rank), 2 validate (one per rank)
    data = make_brats_dataset(tmp_path / "TrainingData", (1, 2, 3, 4))
    datalist = write_datalist(build_brats_datalist(data, num_folds=2), tmp_path / "datalist.json")
    bundle = copy_bundle(BUNDLE, tmp_path)
    common = {
        "dataset_dir": str(data),
        "datalist_file": str(datalist),
        "num_workers": 0,
        "patch_size": [32, 32, 32],
        "sw_batch_size": 1,
        "network_def#channels": 8,
    }
    result = torchrun_bundle(
        bundle,
        ["configs/train.json", "configs/multi_gpu_train.json"],
        nproc_per_node=2,
        max_epochs=1,
        val_interval=1,
        batch_size=1,
        **common,
    )
    log = result.stdout + result.stderr
    # the DistributedSampler gives each of the 2 ranks one of the 2 training cases: 1 iteration per epoch
    assert "Epoch: 1/1, Iter: 1/1" in log and "Iter: 1/2" not in log
    # rank 0 alone logs training stats and saves; rank 1's stats handlers are dropped by the override
    assert log.count("Epoch: 1/1, Iter: 1/1") == 1
    # both ranks' evaluators ran, each on its own validation case, and agree on the all-gathered metric
    best = re.findall(r"Got new best metric of val_mean_dice: ([0-9.eE+-]+)", log)
    assert len(best) == 2 and best[0] == best[1], best
    state = torch.load(bundle / "models" / "model.pt", map_location="cpu", weights_only=True)
    assert not any(key.startswith("module.") for key in state), "checkpoint holds the bare network, not the DDP wrapper"
    nnMambaSeg(3, 4, 3, channels=8, out_relu=False).load_state_dict(state)

    # multi-GPU evaluation: each rank infers its case; rank 0 writes the metrics of both (gathered)
    torchrun_bundle(
        bundle,
        MULTI_GPU_EVALUATION,
        nproc_per_node=2,
        **common,
    )
    entries = json.loads(datalist.read_text())["training"]
    validation = [entry["label"].split("/")[0] for entry in entries if entry["fold"] == 0]  # default val_fold
    rows = read_csv_rows(bundle / "eval" / "val_mean_dice_raw.csv")
    assert sorted(Path(row["filename"]).parent.name for row in rows) == sorted(validation)
    assert sorted(p.name for p in (bundle / "eval").glob("BraTS-GLI-*.nii.gz")) == sorted(
        f"{case}.nii.gz" for case in validation
    )


def test_multi_gpu_evaluation_with_fewer_cases_than_ranks(tmp_path):
    # 2 cases in 2 folds: fold 0 validates on 1 case, over 2 ranks
    data = make_brats_dataset(tmp_path / "TrainingData", (1, 2))
    datalist = write_datalist(build_brats_datalist(data, num_folds=2), tmp_path / "datalist.json")
    bundle = copy_bundle(BUNDLE, tmp_path)
    torch.manual_seed(0)
    torch.save(nnMambaSeg(3, 4, 3, channels=8, out_relu=False).state_dict(), bundle / "models" / "model.pt")
    result = torchrun_bundle(
        bundle,
        MULTI_GPU_EVALUATION,
        nproc_per_node=2,
        dataset_dir=str(data),
        datalist_file=str(datalist),
        num_workers=0,
        patch_size=[32, 32, 32],
        sw_batch_size=1,
        **{"network_def#channels": 8},
    )
    log = result.stdout + result.stderr
    assert log.count("1 validation case(s) for 2 ranks") == 1, log[-3000:]
    assert "Traceback" not in log
    rows = read_csv_rows(bundle / "eval" / "val_mean_dice_raw.csv")
    assert len({row["filename"] for row in rows}) == 1


def test_fetal_landmark_evaluation_over_two_ranks_scores_every_validation_case_once(tmp_path):
    """The shared multi_gpu_evaluate.json on the fetal bundle: each rank decodes its case; rank 0 writes the radial
    errors and the landmark table of both."""
    from nnmamba_monai.datalist.fetal import build_fetal_datalist
    from tests.bundles.synthetic import make_fetal_dataset

    make_fetal_dataset(tmp_path / "fetal", num_cases=4, shape=(24, 28, 20))
    datalist = write_datalist(build_fetal_datalist(tmp_path / "fetal", num_folds=2), tmp_path / "datalist.json")
    bundle = copy_bundle("fetal_nnmamba_landmark", tmp_path)
    torch.manual_seed(0)
    torch.save(nnMambaSeg(3, 1, 6, channels=8, out_relu=False).state_dict(), bundle / "models" / "model.pt")
    result = torchrun_bundle(
        bundle,
        MULTI_GPU_EVALUATION,
        nproc_per_node=2,
        dataset_dir=str(tmp_path / "fetal"),
        datalist_file=str(datalist),
        num_workers=0,
        cache_rate=0.0,
        image_size=[32, 32, 32],
        **{"network_def#channels": 8},
    )
    assert "Traceback" not in result.stdout + result.stderr
    validation = sorted(e["case_id"] for e in json.loads(datalist.read_text())["training"] if e["fold"] == 0)
    for table in ("val_mre_raw.csv", "landmarks.csv"):
        rows = read_csv_rows(bundle / "eval" / table)
        names = [Path(row.get("filename") or row["image"]).name.removesuffix(".nii.gz") for row in rows]
        assert sorted(names) == validation, (table, names)

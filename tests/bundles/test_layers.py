"""Bundles as layers: shared files under bundles/_shared, variants as small overrides, self-contained zips.

MONAI reads exactly the files on the command line (``--config_file configs/train.json``), so a layer that
several bundles share is one file linked into each bundle folder, and ``package_bundle`` writes the linked
files into the zip as plain files. What these tests pin:

- AMOS MR is the AMOS CT bundle with its own metadata: every config file is the same shared file, and the
  only parsed difference is the intensity normalisation the metadata's input modality selects;
- override files (evaluate, multi-GPU) read ``network_def``, they never redefine it;
- every train.json starts from scratch unless ``pretrained_ckpt`` names weights to fine-tune from, and the
  multi-GPU fragment drops logging handlers on rank > 0 by type, so that loader (which the sMCI/pMCI transfer
  points at the NC/AD weights) stays on every rank;
- a packaged bundle runs from a folder that has no way back to this repository.
"""

from __future__ import annotations

import json
import zipfile

import pytest
import torch
import torch.distributed as dist
from monai.handlers import StatsHandler, TensorBoardStatsHandler

from nnmamba_monai import nnMambaSeg
from nnmamba_monai.handlers import PretrainedWeightsLoader
from nnmamba_monai.package_bundle import check_self_contained, package_bundle
from tests.bundle_support import BUNDLES_DIR, check_workflow_properties, parse_bundle_configs

SHARED = BUNDLES_DIR / "_shared"
AMOS = {modality: BUNDLES_DIR / f"amos_{modality}_nnmamba_segmentation" for modality in ("ct", "mr")}
ADNI = BUNDLES_DIR / "adni_nnmamba_classification"
ALL_BUNDLES = sorted(p for p in BUNDLES_DIR.iterdir() if (p / "configs" / "metadata.json").is_file())
OVERRIDES = ("evaluate.json", "multi_gpu_train.json", "multi_gpu_evaluate.json", "train_smci_pmci.json")


def test_amos_mr_is_the_ct_bundle_with_its_own_metadata():
    ct_files = sorted(p.name for p in (AMOS["ct"] / "configs").iterdir())
    assert ct_files == sorted(p.name for p in (AMOS["mr"] / "configs").iterdir())
    for name in ct_files:
        if name == "metadata.json":
            continue
        for bundle in AMOS.values():
            path = bundle / "configs" / name
            assert path.is_symlink() and SHARED in path.resolve().parents, f"{path} is not a shared layer"
        assert (AMOS["ct"] / "configs" / name).read_bytes() == (AMOS["mr"] / "configs" / name).read_bytes()
    for config in ("train.json", "inference.json"):
        ct, mr = (parse_bundle_configs(AMOS[m], config) for m in ("ct", "mr"))
        assert (ct.get_parsed_content("modality"), mr.get_parsed_content("modality")) == ("CT", "MR")
        ct_norm = ct.get_parsed_content("intensity_normalization")[ct.get_parsed_content("modality")]
        mr_norm = mr.get_parsed_content("intensity_normalization")[mr.get_parsed_content("modality")]
        assert type(ct_norm).__name__ == "ScaleIntensityRanged"
        assert (ct_norm.scaler.a_min, ct_norm.scaler.a_max, ct_norm.scaler.clip) == (-175.0, 250.0, True)
        assert type(mr_norm).__name__ == "ScaleIntensityRangePercentilesd"
        assert (mr_norm.scaler.lower, mr_norm.scaler.upper, mr_norm.scaler.channel_wise) == (0.5, 99.5, True)
    # the transform chains differ in that one link only
    ct, mr = (parse_bundle_configs(AMOS[m], "train.json") for m in ("ct", "mr"))
    ct_types = [type(t).__name__ for t in ct.get_parsed_content("train#deterministic_transforms")]
    mr_types = [type(t).__name__ for t in mr.get_parsed_content("train#deterministic_transforms")]
    assert [a for a, b in zip(ct_types, mr_types) if a != b] == ["ScaleIntensityRanged"]
    assert [b for a, b in zip(ct_types, mr_types) if a != b] == ["ScaleIntensityRangePercentilesd"]


TRAIN_NETWORK_DEF = "$nnmamba_monai.bundle_config.inference_network_def(@bundle_root, @network_override"


@pytest.mark.parametrize("bundle", ALL_BUNDLES, ids=lambda p: p.name)
def test_train_network_is_the_inference_definition(bundle):
    """train.json's network is inference.json's network_def, resolved with train.json's own ids (AMOS's
    num_classes) and its network_override: same class, same tensors, same recorded settings."""
    from nnmamba_monai.bundle_config import recorded_network_config

    networks = {}
    for name, override in (("train.json", "network_override#channels"), ("inference.json", "network_def#channels")):
        parser = parse_bundle_configs(bundle, name, **{override: 8})
        parser.parse()
        networks[name] = parser.get_parsed_content("network_def")
        if name == "inference.json":  # the definition as written, its references resolved, width 8
            raw = parser.get("network_def")
            expected = {
                k: parser.get_parsed_content(f"network_def#{k}") if k != "_target_" else v for k, v in raw.items()
            }
    trained, inferred = networks["train.json"], networks["inference.json"]
    assert type(trained) is type(inferred)
    shapes = {k: tuple(v.shape) for k, v in inferred.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in trained.state_dict().items()} == shapes
    assert recorded_network_config(trained) == expected and expected["channels"] == 8


@pytest.mark.parametrize("bundle", ALL_BUNDLES, ids=lambda p: p.name)
def test_network_def_is_read_by_overrides_never_redefined(bundle):
    configs = bundle / "configs"
    train = json.loads((configs / "train.json").read_text())
    inference = json.loads((configs / "inference.json").read_text())
    # inference.json holds the one definition (MONAI reads one file for inference); train.json builds it
    assert isinstance(inference["network_def"], dict) and "_target_" in inference["network_def"]
    assert train["network_def"].startswith(TRAIN_NETWORK_DEF), train["network_def"]
    for name in OVERRIDES:
        if (configs / name).is_file():
            override = json.loads((configs / name).read_text())
            assert not [k for k in override if k.lstrip("+").split("#")[0] == "network_def"], name
            network = override.get("network", {})
            assert not network or network["module"] == "$@network_def.to(@device)", name


@pytest.mark.parametrize("bundle", ALL_BUNDLES, ids=lambda p: p.name)
def test_every_bundle_chooses_its_validation_fold_in_the_config(bundle):
    train = json.loads((bundle / "configs" / "train.json").read_text())
    assert train["val_fold"] == 0
    assert "'training'" in train["train_datalist"] and "@val_fold" in train["train_datalist"]
    assert "'validation'" in train["val_datalist"] and "@val_fold" in train["val_datalist"]


@pytest.mark.parametrize("bundle", [p.name for p in ALL_BUNDLES])
def test_every_training_can_start_from_pretrained_weights(bundle):
    """``--pretrained_ckpt FILE`` fine-tunes: one loader in train#handlers, bound to the network, off by default."""
    train = json.loads((BUNDLES_DIR / bundle / "configs" / "train.json").read_text())
    assert train["pretrained_ckpt"] is None
    assert train["learning_rate"] > 0 and train["optimizer"]["lr"] == "@learning_rate"  # --learning_rate everywhere
    loaders = [h for h in train["train"]["handlers"] if h["_target_"].endswith("PretrainedWeightsLoader")]
    assert loaders == [
        {
            "_target_": "nnmamba_monai.handlers.PretrainedWeightsLoader",
            "load_path": "@pretrained_ckpt",
            "network": "@network",
            "map_location": "@device",
            "run_outputs": ["$@ckpt_dir + '/model.pt'", "@last_ckpt_file"],  # the files the run writes
        }
    ]
    savers = [h for section in ("train", "validate") for h in train[section]["handlers"] if "save_dict" in h]
    assert savers and {h["save_dir"] for h in savers} == {"@ckpt_dir"}
    assert all("model.pt" in (h.get("final_filename"), h.get("key_metric_filename")) for h in savers)
    assert train["train"]["checkpoint"]["filename"] == "$os.path.basename(@last_ckpt_file)"


@pytest.fixture
def one_process_group(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


@pytest.mark.parametrize("rank", [0, 1])
def test_multi_gpu_filter_keeps_an_appended_handler_on_every_rank(tmp_path, monkeypatch, one_process_group, rank):
    datalist = tmp_path / "datalist.json"
    entries = [{"image": f"s{i}.nii.gz", "label": i % 2, "subject": f"s{i}", "fold": i % 2} for i in range(4)]
    datalist.write_text(json.dumps({"training": entries}))
    pretrained = tmp_path / "model.pt"  # the NC/AD weights the transfer starts from (read when training starts)
    torch.save({}, pretrained)
    parser = parse_bundle_configs(
        ADNI,
        "train.json",
        "train_smci_pmci.json",
        "multi_gpu_train.json",
        datalist_file=str(datalist),
        dataset_dir=str(tmp_path),
        cache_rate=0.0,
        num_workers=0,
        pretrained_ckpt=str(pretrained),
        **{"network_override#channels": 8, "validate#evaluator": None},  # ValidationHandler takes its validator later
    )
    parser.get_parsed_content("initialize#0")  # "import torch.distributed as dist"
    monkeypatch.setattr(dist, "get_rank", lambda *args, **kwargs: rank)  # rank `rank` of 2, in one process
    handlers = parser.get_parsed_content("train#trainer#train_handlers")
    kinds = [type(h).__name__ for h in handlers]
    assert isinstance(handlers[-1], PretrainedWeightsLoader), kinds  # the transfer's starting weights, on every rank
    assert handlers[-1].load_path == str(pretrained)
    logging = [h for h in handlers if isinstance(h, (StatsHandler, TensorBoardStatsHandler))]
    assert len(logging) == (2 if rank == 0 else 0), kinds
    assert len(handlers) == len(parser.get_parsed_content("train#handlers")) - (0 if rank == 0 else 2)


def test_package_refuses_a_config_that_imports_another_file(tmp_path):
    bundle = tmp_path / "bundle"
    (bundle / "configs").mkdir(parents=True)
    (bundle / "configs" / "train.json").write_text(json.dumps({"network_def": "%../shared/net.json#network_def"}))
    with pytest.raises(ValueError, match="imports other files"):
        check_self_contained(bundle)
    (bundle / "configs" / "train.json").write_text(json.dumps({"a": "%b", "b": 1}))  # a macro within the file
    check_self_contained(bundle)


def test_packaged_layered_bundle_runs_without_the_repository(tmp_path, monkeypatch):
    weights = tmp_path / "model.pt"
    torch.save(nnMambaSeg(3, 1, 16, channels=8, out_relu=False).state_dict(), weights)
    zip_path = package_bundle(AMOS["mr"], weights, tmp_path / "dist")
    unpacked = tmp_path / "elsewhere"
    with zipfile.ZipFile(zip_path) as archive:
        assert not [i.filename for i in archive.infolist() if (i.external_attr >> 16) & 0o170000 == 0o120000]
        archive.extractall(unpacked)
    bundle = unpacked / AMOS["mr"].name
    check_self_contained(bundle)
    assert (bundle / "configs" / "train.json").read_text() == (SHARED / "amos" / "train.json").read_text()
    assert not any("_shared" in p.read_text() for p in (bundle / "configs").glob("*.json"))
    monkeypatch.chdir(unpacked)
    datalist = tmp_path / "datalist.json"
    entries = [{"image": f"imagesTr/amos_05{i:02d}.nii.gz", "label": f"labelsTr/amos_05{i:02d}.nii.gz"} for i in (1, 2)]
    datalist.write_text(json.dumps({"training": [{**e, "fold": i} for i, e in enumerate(entries)], "testing": []}))
    small = {"datalist_file": str(datalist), "dataset_dir": str(tmp_path), "num_workers": 0, "check_data": False}
    small["network_def#channels"] = 8
    assert check_workflow_properties(bundle, ["configs/train.json"], "train", **small) == []
    assert check_workflow_properties(bundle, ["configs/inference.json"], "infer", **small) == []
    parser = parse_bundle_configs(bundle, "inference.json", **small)
    assert parser.get_parsed_content("modality") == "MR"
    network = parser.get_parsed_content("network_def")
    network.load_state_dict(torch.load(bundle / "models" / "model.pt", weights_only=True))

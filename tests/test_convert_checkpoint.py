"""``nnmamba_monai.convert_checkpoint``: the authors' checkpoints into our bundles, run by ``monai.bundle``.

The checkpoints are full-size networks built with the reference configurations (their state_dict keys and
shapes are checked against ``nnmamba_state_dicts.json``), saved the ways the authors' code saves them:
an nnU-Net v1 trainer file, a plain state_dict, a DataParallel ('module.') state_dict. One conversion goes
through both CLIs end to end (convert, then ``monai.bundle run`` inference on a 32^3 case); the others are
checked in this process (strict load through the bundle's config with the override, same outputs).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from nnmamba_monai import nnMambaCls, nnMambaSeg
from nnmamba_monai.convert_checkpoint import (
    OVERRIDE_RELPATH,
    WEIGHTS_RELPATH,
    CheckpointMismatchError,
    convert_checkpoint,
    verify_converted_bundle,
)
from tests.bundle_support import build_network, copy_bundle, run_bundle, run_checked
from tests.bundles.conftest import single_thread  # noqa: F401 - one CPU thread in this module
from tests.pretrained_support import assert_prediction_on_input_grid, brats_unlabelled_cases

REFERENCE_BRATS = "nnMambaSeg(in_ch=4, channels=32, blocks=3, number_classes=3) [BraTS-like]"
REFERENCE_AMOS = "nnMambaSeg(in_ch=1, channels=32, blocks=3, number_classes=16) [AMOS-like]"
REFERENCE_MIC = (
    "nnunet/network_architecture/nnMamba.py nnMambaSeg(in_ch=4, channels=32, blocks=3, number_classes=4) "
    "[nnU-Net trainer variant: deep-supervision heads]"
)
REFERENCE_CLS = "nnMambaEncoder(in_ch=1, channels=32, blocks=3, number_classes=1) [nnMamba4cls.py defaults]"


def _authors_network(kind: str) -> torch.nn.Module:
    """Our network in a reference configuration, with non-default BN statistics so a wrong load would show."""
    networks = {
        REFERENCE_BRATS: lambda: nnMambaSeg(3, 4, 3),
        REFERENCE_AMOS: lambda: nnMambaSeg(3, 1, 16),
        REFERENCE_MIC: lambda: nnMambaSeg(3, 4, 4, generation="mic"),
        "MIC generation, AMOS classes": lambda: nnMambaSeg(3, 1, 16, generation="mic"),
        REFERENCE_CLS: lambda: nnMambaCls(),
    }
    torch.manual_seed(0)
    net = networks[kind]()
    with torch.no_grad():
        for name, buffer in net.named_buffers():
            if name.endswith("running_mean"):
                buffer.uniform_(-0.1, 0.1)
    return net.eval()


def _save_as_authors(net: torch.nn.Module, path: Path, wrapper: str) -> Path:
    """Save like the authors' code: nnU-Net v1 trainer file, plain state_dict, or DataParallel keys."""
    state = net.state_dict()
    if wrapper == "nnunet_v1":
        payload = {
            "epoch": 1000,
            "state_dict": state,
            "optimizer_state_dict": {"state": {}, "param_groups": [{"lr": 1e-5, "momentum": 0.99, "params": [0]}]},
            "plot_stuff": ([0.9, 0.5], [0.8, 0.6], [0.3, 0.7], [0.3, 0.7]),
            "best_stuff": (999, 0.61, 0.7, 0.71),
        }
    elif wrapper == "module":
        payload = {f"module.{k}": v for k, v in state.items()}
    else:
        payload = state
    torch.save(payload, path)
    return path


def _matches_reference(net: torch.nn.Module, reference: dict) -> bool:
    entries = [(k, list(v.shape)) for k, v in net.state_dict().items()]
    return entries == [(k, shape) for k, shape, _dtype in reference["state_dict"]]


@pytest.mark.parametrize(
    "kind", [REFERENCE_BRATS, REFERENCE_AMOS, REFERENCE_MIC, REFERENCE_CLS], ids=["brats", "amos", "mic", "cls"]
)
def test_test_networks_have_the_reference_state_dicts(reference_state_dicts, kind):
    assert _matches_reference(_authors_network(kind), reference_state_dicts[kind])


def test_cli_converts_an_nnunet_v1_file_and_the_bundle_runs_it(tmp_path):
    authors = _authors_network(REFERENCE_BRATS)
    checkpoint = _save_as_authors(authors, tmp_path / "model_final_checkpoint.model", "nnunet_v1")
    bundle = copy_bundle("brats_nnmamba_segmentation", tmp_path)
    result = run_checked(
        [sys.executable, "-m", "nnmamba_monai.convert_checkpoint", "--checkpoint", checkpoint, "--bundle", bundle]
    )
    assert "dry run: input (1, 4, 32, 32, 32) -> output (1, 3, 32, 32, 32)" in result.stdout
    assert "configs/authors_checkpoint.json']\"" in result.stdout, "prints the inference command"
    override = json.loads((bundle / OVERRIDE_RELPATH).read_text())["network_def"]
    assert override["generation"] == "miccss" and override["out_relu"] is True
    assert [override[k] for k in ("in_channels", "out_channels", "channels", "blocks")] == [4, 3, 32, 3]
    saved = torch.load(bundle / WEIGHTS_RELPATH, weights_only=True)
    expected = authors.state_dict()
    assert saved.keys() == expected.keys() and all(torch.equal(saved[k], v) for k, v in expected.items())

    data, datalist = brats_unlabelled_cases(tmp_path / "cases")
    output = tmp_path / "predictions"
    run_bundle(
        bundle,
        ["configs/inference.json", OVERRIDE_RELPATH],
        from_bundle_dir=True,
        num_workers=0,
        patch_size=[32, 32, 32],
        sw_batch_size=1,
        dataset_dir=str(data),
        datalist_file=str(datalist),
        output_dir=str(output),
    )
    assert_prediction_on_input_grid(output, data, 7)


@pytest.mark.parametrize(
    ("kind", "wrapper", "bundle_name", "generation"),
    [
        (REFERENCE_AMOS, "module", "amos_ct_nnmamba_segmentation", "miccss"),
        ("MIC generation, AMOS classes", "nnunet_v1", "amos_mr_nnmamba_segmentation", "mic"),
        (REFERENCE_CLS, "plain", "adni_nnmamba_classification", None),
    ],
    ids=["miccss-module-amos_ct", "mic-nnunet_v1-amos_mr", "cls-plain-adni"],
)
def test_conversion_into_a_bundle_copy_gives_the_authors_outputs(tmp_path, kind, wrapper, bundle_name, generation):
    authors = _authors_network(kind)
    checkpoint = _save_as_authors(authors, tmp_path / "checkpoint.pth", wrapper)
    source = copy_bundle(bundle_name, tmp_path / "source")
    target = convert_checkpoint(checkpoint, source, output=tmp_path / "converted")
    assert not (source / WEIGHTS_RELPATH).exists() and not (source / OVERRIDE_RELPATH).exists(), "source untouched"
    override = json.loads((target / OVERRIDE_RELPATH).read_text())["network_def"]
    assert override.get("generation") == generation
    if generation is not None:
        assert override["out_relu"] is True and override["deep_supervision"] == (generation == "mic")
    # network_def as the bundle parses it (inference.json + override), holding model.pt
    network = build_network(target, "configs/inference.json", **{"network_def": override})
    network.load_state_dict(torch.load(target / WEIGHTS_RELPATH, weights_only=True), strict=True)
    shape = (1, 1, 32, 32, 32) if generation else (2, 1, 48, 48, 48)
    sample = torch.rand(shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(network(sample), authors(sample))
    if generation is not None:  # the full-size classification dry run (112x136x112) is left to the CLI test path
        assert verify_converted_bundle(target) == (1, 16, 32, 32, 32)


@pytest.mark.parametrize(
    ("kind", "bundle_name", "message"),
    [
        (
            REFERENCE_BRATS,
            "amos_ct_nnmamba_segmentation",
            r"'in_conv.conv.0.weight' has shape \(32, 4, 3, 3, 3\), i.e. 4 input channels .* expects 1 "
            r"\(network_def#in_channels\)",
        ),
        (
            REFERENCE_MIC,
            "brats_nnmamba_segmentation",
            r"'conv8.conv.0.weight' has shape \(4, 32, 3, 3, 3\), i.e. 4 output channels .* expects 3 "
            r"\(network_def#out_channels\)",
        ),
        (REFERENCE_CLS, "brats_nnmamba_segmentation", r"holds a nnMambaCls but bundle .* builds .*nnMambaSeg"),
    ],
    ids=["in_channels", "out_channels", "network_class"],
)
def test_incompatible_checkpoints_are_refused_naming_the_key(tmp_path, kind, bundle_name, message):
    checkpoint = _save_as_authors(_authors_network(kind), tmp_path / "checkpoint.pth", "plain")
    bundle = copy_bundle(bundle_name, tmp_path)
    with pytest.raises(CheckpointMismatchError, match=message):
        convert_checkpoint(checkpoint, bundle)
    assert not (bundle / WEIGHTS_RELPATH).exists() and not (bundle / OVERRIDE_RELPATH).exists()


def test_cli_mismatch_exits_with_the_message(tmp_path):
    checkpoint = _save_as_authors(_authors_network(REFERENCE_BRATS), tmp_path / "brats.pth", "module")
    bundle = copy_bundle("amos_ct_nnmamba_segmentation", tmp_path)
    result = run_checked(
        [sys.executable, "-m", "nnmamba_monai.convert_checkpoint", "--checkpoint", checkpoint, "--bundle", bundle],
        expect_success=False,
    )
    assert result.returncode == 2
    assert "4 input channels (dim 1), but bundle amos_ct_nnmamba_segmentation expects 1" in result.stderr


def test_existing_weights_are_kept_unless_overwrite(tmp_path):
    checkpoint = _save_as_authors(_authors_network(REFERENCE_AMOS), tmp_path / "amos.pth", "plain")
    bundle = copy_bundle("amos_ct_nnmamba_segmentation", tmp_path)
    (bundle / WEIGHTS_RELPATH).write_bytes(b"trained elsewhere")
    with pytest.raises(FileExistsError, match="--overwrite"):
        convert_checkpoint(checkpoint, bundle)
    assert (bundle / WEIGHTS_RELPATH).read_bytes() == b"trained elsewhere"
    convert_checkpoint(checkpoint, bundle, overwrite=True)
    assert verify_converted_bundle(bundle) == (1, 16, 32, 32, 32)
    assert not list((bundle / "models").glob(".model.pt.*")), "no temporary files left"

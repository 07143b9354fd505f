"""The CPU inference preset of the bundles and the helpers of the CPU benchmarks (no timing here)."""

from __future__ import annotations

import importlib.util

import pytest
from monai.bundle import ConfigParser
from monai.data.utils import dense_patch_slices
from monai.inferers.utils import _get_scan_interval

from nnmamba_monai.networks import FusedInference
from nnmamba_monai.ssm import available_backends
from tests.bundle_support import BUNDLES_DIR, parse_bundle_configs
from tests.conftest import REPO_ROOT


def _load(script: str):
    spec = importlib.util.spec_from_file_location(script[:-3], REPO_ROOT / "benchmarks" / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


infer_cpu = _load("infer_cpu.py")
ssm_cpu = _load("ssm_cpu.py")

SEGMENTATION = ["brats_nnmamba_segmentation", "amos_ct_nnmamba_segmentation", "amos_mr_nnmamba_segmentation"]
OTHERS = ["fetal_nnmamba_landmark", "adni_nnmamba_classification", "brain_nnmamba_extraction"]


def parse_preset(bundle: str) -> ConfigParser:
    # a small network: the test is about the wiring
    return parse_bundle_configs(
        BUNDLES_DIR / bundle, "inference.json", "inference_cpu.json", **{"network_def#channels": 8}
    )


@pytest.mark.parametrize("bundle", SEGMENTATION + OTHERS)
def test_preset_wraps_the_loaded_network(bundle):
    parser = parse_preset(bundle)
    network = parser.get_parsed_content("evaluator#network")
    assert isinstance(network, FusedInference)
    # the checkpoint loader still fills the original network, whose keys the checkpoint has
    loader = next(h for h in parser.get_parsed_content("handlers") if type(h).__name__ == "CheckpointLoader")
    assert loader.load_dict["model"] is network.network is parser.get_parsed_content("network")
    # the C++ scan forward where it can be built (this machine can), else each layer's own backend
    assert network.scan_backend == ("cpp" if "cpp" in available_backends() else None)


def test_preset_falls_back_to_the_layers_backend_without_a_compiler(monkeypatch):
    monkeypatch.setenv("CXX", "no-such-compiler-here")
    assert parse_preset("brats_nnmamba_segmentation").get_parsed_content("evaluator#network").scan_backend is None


@pytest.mark.parametrize("bundle", SEGMENTATION)
def test_preset_window_settings(bundle):
    inferer = parse_preset(bundle).get_parsed_content("inferer")
    assert (inferer.sw_batch_size, inferer.overlap, tuple(inferer.roi_size)) == (1, 0.125, (128, 128, 128))


@pytest.mark.parametrize(
    "spatial, roi, overlap, expected",
    [
        ((240, 240, 155), (128,) * 3, 0.5, 18),
        ((240, 240, 155), (128,) * 3, 0.125, 8),
        ((240, 240, 155), (240, 240, 160), 0.5, 1),
    ],
)
def test_window_count_matches_monai(spatial, roi, overlap, expected):
    assert infer_cpu.window_count(spatial, roi, overlap) == expected
    roi_clipped = tuple(min(r, s) for r, s in zip(roi, spatial))
    interval = _get_scan_interval(spatial, roi_clipped, 3, (overlap,) * 3)
    assert len(dense_patch_slices(spatial, roi_clipped, interval)) == expected


def test_scan_floor_bytes_and_bandwidth(one_thread):
    # stage 1 at a 128^3 window, batch 2: u, delta, z, y (2 x 128 x 32768) and B, C (2 x 16 x 32768), float32
    assert ssm_cpu.scan_bytes(2, 128, 32768, 16) == 4 * (4 * 2 * 128 * 32768 + 2 * 2 * 16 * 32768)
    assert ssm_cpu.copy_bandwidth(repeats=2, mib=8) > 1e8  # bytes/s: any machine moves more than 100 MB/s

"""A plain (non-editable) install works from any folder: the wheel carries the bundles as package data.

Builds the wheel of this checkout (``pip wheel --no-deps --no-build-isolation``, as ``pip install .`` would; the
``test`` extra installs the setuptools and wheel it builds with),
installs it with ``pip install --no-deps --target`` into a temporary folder, and runs, from a temporary
working directory with only that folder on ``PYTHONPATH`` (the checkout is not importable there): the demo
finds its bundle and data in the installed package, and ``python -m nnmamba_monai.predict`` runs a model laid
out as the demo leaves it (``models/model.pt`` and ``models/network.json``, random weights here: training the
demo takes minutes, ``tests/test_demo.py`` does it) on a .mgz crop of the demo's Colin27 scan.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from monai.bundle import ConfigParser

from nnmamba_monai.demo.presets import network_def
from nnmamba_monai.demo.run import write_network_settings
from tests.conftest import REPO_ROOT
from tests.scan_files import write_scans

BUNDLE = "amos_mr_nnmamba_segmentation"
RELEASED_BUNDLE = "brain_nnmamba_extraction"
FIND_DEMO_INPUTS = "from nnmamba_monai.demo.run import DATA_DIR, find_bundle; print(find_bundle()); print(DATA_DIR)"


def _run(command: list[str], cwd: Path, env: dict[str, str], timeout: float = 600) -> str:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{command}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


def test_wheel_ships_the_bundles_and_runs_demo_and_predict_from_any_folder(tmp_path):
    wheel_dir, site, work = tmp_path / "wheel", tmp_path / "site", tmp_path / "work"
    work.mkdir()
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    _run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheel_dir), str(REPO_ROOT)],
        tmp_path,
        dict(os.environ),
    )
    (wheel,) = wheel_dir.glob("nnmamba_monai-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert f"nnmamba_monai/bundles/{BUNDLE}/configs/inference.json" in names  # a _shared link, as a plain file
    assert not [n for n in names if n.endswith("datalist.json") or "/_shared/" in n]
    # the only weights in the wheel are the released ones, listed in their bundle's large_files.yml
    assert [n for n in names if n.endswith(".pt")] == [f"nnmamba_monai/bundles/{RELEASED_BUNDLE}/models/model.pt"]
    _run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], tmp_path, dict(os.environ))

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PYTHONPATH=str(site), OMP_NUM_THREADS="2")
    where = _run(
        [sys.executable, "-c", "import nnmamba_monai.bundle_config as b; print(b.__file__); print(b.bundles_dir())"],
        work,
        env,
    ).split()
    assert where == [str(site / "nnmamba_monai" / "bundle_config.py"), str(site / "nnmamba_monai" / "bundles")]

    found = _run([sys.executable, "-c", FIND_DEMO_INPUTS], work, env).split()
    assert found == [str(site / "nnmamba_monai" / "bundles" / BUNDLE), str(site / "nnmamba_monai" / "demo" / "data")]
    models = work / "demo" / "models"
    write_network_settings(models / "network.json", {"patch_size": [64, 64, 64], "network_def": network_def("nnmamba")})
    torch.save(
        ConfigParser({"net": network_def("nnmamba")}).get_parsed_content("net").state_dict(), models / "model.pt"
    )

    scan, affine, shape = write_scans(tmp_path / "scans")["mgz"]  # a crop of the real Colin27 scan, as .mgz
    shutil.copyfile(scan, work / "colin27.mgz")
    command = [sys.executable, "-m", "nnmamba_monai.predict", "--bundle", BUNDLE, "--ckpt_dir", "demo/models"]
    output = _run([*command, "colin27.mgz", "--output", "predictions"], work, env)
    assert "[1/1] colin27.mgz:" in output and "predicted 1 case(s) in" in output
    written = nib.load(str(work / "predictions" / "colin27_seg.nii.gz"))
    assert written.shape[:3] == tuple(shape)
    np.testing.assert_allclose(written.affine, affine, atol=1e-3)

    # the shipped brain-extraction weights, by bundle name, right after install: the demo's real 2 mm Colin27 T1
    shutil.copyfile(REPO_ROOT / "nnmamba_monai" / "demo" / "data" / "colin27_t1.nii.gz", work / "colin27_t1.nii.gz")
    command = [sys.executable, "-m", "nnmamba_monai.predict", "--bundle", RELEASED_BUNDLE, "colin27_t1.nii.gz"]
    output = _run([*command, "--output", "brain"], work, env)
    assert "[1/1] colin27_t1.nii.gz:" in output
    (mask_file,) = (work / "brain").glob("colin27_t1*.nii.gz")
    mask = nib.load(str(mask_file))
    reference = nib.load(str(REPO_ROOT / "nnmamba_monai" / "demo" / "data" / "colin27_brainmask.nii.gz"))
    np.testing.assert_allclose(mask.affine, reference.affine, atol=1e-3)
    predicted, truth = np.asarray(mask.dataobj) > 0, np.asarray(reference.dataobj) > 0
    dice = 2 * (predicted & truth).sum() / (predicted.sum() + truth.sum())
    assert dice > 0.75, dice  # the shipped weights' held-out Dice is reported in the bundle's docs

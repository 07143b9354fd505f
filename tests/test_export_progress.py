"""``python -m nnmamba_monai.export``: MONAI's ``ckpt_export`` unchanged, with elapsed-time lines while it runs."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time

import torch

from nnmamba_monai import nnMambaSeg
from nnmamba_monai.export import PROGRESS_ENV, elapsed_progress
from tests.bundle_support import BUNDLES_DIR
from tests.conftest import REPO_ROOT


def test_elapsed_progress_prints_while_running_and_the_total():
    stream = io.StringIO()
    with elapsed_progress("long step", interval_s=0.05, stream=stream):
        time.sleep(0.3)
    lines = stream.getvalue().splitlines()
    assert len([line for line in lines if line.startswith("long step: ") and "elapsed" in line]) >= 2
    assert lines[-1].startswith("long step: done in ")


def test_export_cli_writes_the_torchscript_file_and_shows_progress(tmp_path):
    bundle = BUNDLES_DIR / "brats_nnmamba_segmentation"
    weights = tmp_path / "model.pt"
    torch.save(nnMambaSeg(3, 4, 3, channels=8, out_relu=False).state_dict(), weights)
    exported = tmp_path / "model.ts"
    command = [sys.executable, "-m", "nnmamba_monai.export", "network_def", "--filepath", str(exported)]
    command += ["--ckpt_file", str(weights), "--meta_file", str(bundle / "configs" / "metadata.json")]
    command += ["--config_file", str(bundle / "configs" / "inference.json"), "--use_trace", "True"]
    command += ["--input_shape", "[1, 4, 32, 32, 32]", "--network_def#channels", "8"]
    env = {**os.environ, PROGRESS_ENV: "0.2"}
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "TorchScript export of network_def: started" in result.stderr
    assert "TorchScript export of network_def: done in" in result.stderr
    extra_files = {"metadata.json": ""}
    torch.jit.load(str(exported), map_location="cpu", _extra_files=extra_files)  # what ckpt_export writes
    assert b"network_data_format" in extra_files["metadata.json"]

"""Resume after SIGKILL: the rolling ``last.pt`` restores epoch, optimizer and RNG, and is never half-written.

1. ``brats_nnmamba_segmentation`` trains on stand-in data (2 cases, batch 1: 2 iterations per epoch, a 4-channel
   nnMamba on 32^3 patches) as users run it, ``python -m monai.bundle run``; it is killed with SIGKILL in the
   middle of epoch 2 and restarted with ``resume=True``. The epoch counter, Adam's step count and the loss
   trajectory continue those of an uninterrupted run.
2. A process saving checkpoints through :class:`AtomicCheckpointSaver` after every iteration is killed at random
   moments; the file on disk always loads with ``weights_only=True`` into fresh objects.
"""

from __future__ import annotations

import random
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from nnmamba_monai.checkpoint import CheckpointLoadError
from nnmamba_monai.datalist import __main__ as datalist_cli
from nnmamba_monai.handlers import CheckpointResumer, RNGState
from tests.bundle_support import copy_bundle, run_bundle, subprocess_env
from tests.bundles.standin_data import BRATS_TINY_TRAINING as TINY
from tests.bundles.standin_data import make_brats_dataset

BUNDLE = "brats_nnmamba_segmentation"
MAX_EPOCHS = 4
ITERATIONS_PER_EPOCH = 2
LOSS_LINE = re.compile(r"Epoch: (\d+)/\d+, Iter: (\d+)/\d+ -- train_loss: ([0-9.]+)")


def losses(log: str) -> dict[tuple[int, int], float]:
    """(epoch, iteration in epoch) -> logged training loss."""
    return {(int(e), int(i)): float(v) for e, i, v in LOSS_LINE.findall(log)}


def bundle_command(bundle: Path, **overrides) -> list[str]:
    """The ``python -m monai.bundle run`` command line ``run_bundle`` would run."""
    configs = bundle / "configs"
    arguments = {
        "meta_file": configs / "metadata.json",
        "config_file": configs / "train.json",
        "logging_file": configs / "logging.conf",
        "bundle_root": bundle,
        **overrides,
    }
    command = [sys.executable, "-m", "monai.bundle", "run"]
    for key, value in arguments.items():
        command += [f"--{key}", str(value) if isinstance(value, (str, Path)) else repr(value)]
    return command


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("resume")
    data = make_brats_dataset(root / "data", (1, 2, 3))
    datalist = root / "datalist.json"
    datalist_cli.main(["brats", "--dataset_dir", str(data), "--output", str(datalist), "--num_folds", "3"])
    return {**TINY, "dataset_dir": str(data), "datalist_file": str(datalist), "max_epochs": MAX_EPOCHS}


def test_sigkill_mid_epoch_then_resume_continues_the_run(tmp_path, dataset):
    reference = run_bundle(copy_bundle(BUNDLE, tmp_path / "reference"), ["configs/train.json"], **dataset)
    expected = losses(reference.stdout)
    assert len(expected) == MAX_EPOCHS * ITERATIONS_PER_EPOCH

    bundle = copy_bundle(BUNDLE, tmp_path / "killed")
    last = bundle / "models" / "last.pt"
    process = subprocess.Popen(
        bundle_command(bundle, **dataset),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=subprocess_env(),
    )
    killed_log = []
    for line in process.stdout:  # kill after the first iteration of epoch 2: last.pt (epoch 1) exists
        killed_log.append(line)
        if f"Epoch: 2/{MAX_EPOCHS}, Iter: 1/" in line:
            process.send_signal(signal.SIGKILL)
            break
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL, "".join(killed_log[-30:])
    saved = torch.load(last, map_location="cpu", weights_only=True)
    saved_iteration = saved["trainer"]["iteration"]
    saved_epoch = saved_iteration // ITERATIONS_PER_EPOCH
    assert saved_epoch >= 1 and saved_iteration % ITERATIONS_PER_EPOCH == 0, "saved at an epoch end"
    assert {"network", "optimizer", "lr_scheduler", "trainer", "scaler", "rng"} <= set(saved)
    assert int(saved["optimizer"]["state"][0]["step"]) == saved_iteration
    assert saved["lr_scheduler"]["last_epoch"] == saved_epoch

    resumed = run_bundle(bundle, ["configs/train.json"], resume=True, **dataset)
    log = resumed.stdout + resumed.stderr
    assert f"resumed from {last} at epoch {saved_epoch}, iteration {saved_iteration}" in log
    after = losses(log)
    assert min(epoch for epoch, _ in after) == saved_epoch + 1, "the epoch counter continues"
    assert sorted(after) == [key for key in sorted(expected) if key[0] > saved_epoch]
    # the loss trajectory continues the uninterrupted run's, it does not start over: same weights, optimizer
    # moments and global RNG states (the augmentations' own MONAI RandomState is not checkpointed: small drift)
    first = min(after)
    assert after[first] == pytest.approx(expected[first], abs=1e-3), (after, expected)
    assert expected[(1, 1)] - after[first] > 0.05, "a restart would repeat the first epoch's loss"
    for key, value in after.items():
        assert value == pytest.approx(expected[key], rel=0.02), (key, after, expected)
    final = torch.load(last, map_location="cpu", weights_only=True)
    assert final["trainer"]["iteration"] == MAX_EPOCHS * ITERATIONS_PER_EPOCH
    assert int(final["optimizer"]["state"][0]["step"]) == MAX_EPOCHS * ITERATIONS_PER_EPOCH


SAVER_SCRIPT = """
import torch
from ignite.engine import Engine, Events
from nnmamba_monai.handlers import AtomicCheckpointSaver, RNGState

torch.manual_seed(0)
network = torch.nn.Linear(1000, 1500)  # 1.5M weights: with Adam's moments an 18 MB checkpoint
optimizer = torch.optim.Adam(network.parameters(), lr=1e-4)

def step(engine, batch):
    optimizer.zero_grad()
    network(batch).square().mean().backward()
    optimizer.step()
    return {{"loss": 0.0}}

trainer = Engine(step)
saver = AtomicCheckpointSaver({save_dir!r}, {{"network": network, "optimizer": optimizer, "trainer": trainer,
                              "rng": RNGState()}}, epoch_interval=0, iteration_interval=1)
saver.attach(trainer)
trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: print(e.state.iteration, flush=True))
trainer.run([torch.randn(4, 1000)] * 10, max_epochs=1000)
"""


def test_kill_during_save_never_leaves_a_half_written_checkpoint(tmp_path):
    script = textwrap.dedent(SAVER_SCRIPT.format(save_dir=str(tmp_path)))
    rng = random.Random(7)
    network, iterations = torch.nn.Linear(1000, 1500), []
    for _trial in range(3):
        process = subprocess.Popen(
            [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=subprocess_env()
        )
        process.stdout.readline()  # one checkpoint complete
        time.sleep(rng.uniform(0.0, 0.4))
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        leftovers = [p.name for p in tmp_path.iterdir() if p.name not in ("last.pt", ".train.lock")]
        assert all(re.fullmatch(r"\.last\.pt\..+\.tmp", name) for name in leftovers), leftovers
        optimizer = torch.optim.Adam(network.parameters())
        resumer = CheckpointResumer(  # network, optimizer and RNG into fresh objects
            str(tmp_path / "last.pt"), {"network": network, "optimizer": optimizer, "rng": RNGState()}, missing_ok=False
        )
        state = torch.load(tmp_path / "last.pt", weights_only=True)
        resumer(_engine_stub())
        assert int(optimizer.state_dict()["state"][0]["step"]) == state["trainer"]["iteration"]
        iterations.append(state["trainer"]["iteration"])
    assert all(i >= 1 for i in iterations)


def _engine_stub():
    """An ignite Engine in its initial state (the resumer reads its state.max_epochs)."""
    from ignite.engine import Engine

    return Engine(lambda engine, batch: None)


def test_saver_keeps_the_last_good_checkpoint_when_weights_turn_non_finite(tmp_path):
    from nnmamba_monai.handlers import AtomicCheckpointSaver, NonFiniteError

    network = torch.nn.Linear(3, 2)
    saver = AtomicCheckpointSaver(str(tmp_path), {"network": network})
    engine = _engine_stub()
    saver(engine)
    good = (tmp_path / "last.pt").read_bytes()
    with torch.no_grad():
        network.weight[0, 0] = float("nan")
    with pytest.raises(NonFiniteError, match=r"'network' has NaN/Inf in \['weight'\].*keeps the last good state"):
        saver(engine)
    assert (tmp_path / "last.pt").read_bytes() == good


class _NotATensor:
    """A pickled class: ``weights_only=True`` refuses to rebuild it (no code from a checkpoint runs)."""


def test_resumer_loads_weights_only(tmp_path):
    network = torch.nn.Linear(3, 2)
    torch.save({"network": network.state_dict(), "payload": _NotATensor()}, tmp_path / "last.pt")
    resumer = CheckpointResumer(str(tmp_path / "last.pt"), {"network": network})
    with pytest.raises(CheckpointLoadError, match=r"last.pt is not a plain checkpoint of tensors \(.*_NotATensor") as e:
        resumer(_engine_stub())
    assert "weights_only=False" not in str(e.value)

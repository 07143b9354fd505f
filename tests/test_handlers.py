"""Atomic checkpoints, RNG state round trip, resume, and the non-finite guard on a tiny ignite trainer."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch
from ignite.engine import Engine, Events

from nnmamba_monai.handlers import (
    AtomicCheckpointSaver,
    CheckpointResumer,
    NonFiniteError,
    NonFiniteGuard,
    RNGState,
    atomic_torch_save,
)


def test_rng_state_round_trip():
    state = RNGState().state_dict()
    expected = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    random.random(), np.random.rand(), torch.rand(1)  # move on
    RNGState().load_state_dict(state)
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == expected


def test_rng_state_survives_weights_only_load(tmp_path):
    atomic_torch_save({"rng": RNGState().state_dict()}, tmp_path / "c.pt")
    loaded = torch.load(tmp_path / "c.pt", weights_only=True)
    RNGState().load_state_dict(loaded["rng"])


def test_sigkill_during_save_never_leaves_a_broken_checkpoint(tmp_path):
    """A writer saving 20 MB checkpoints in a loop is killed at random moments; the file always loads."""
    target = tmp_path / "last.pt"
    writer = textwrap.dedent(
        f"""
        import torch
        from nnmamba_monai.handlers import atomic_torch_save
        i = 0
        while True:
            i += 1
            atomic_torch_save({{"i": i, "w": torch.full((5_000_000,), float(i))}}, {str(target)!r})
            print(i, flush=True)
        """
    )
    rng = random.Random(0)
    seen = []
    for _trial in range(6):
        proc = subprocess.Popen([sys.executable, "-c", writer], stdout=subprocess.PIPE, text=True)
        proc.stdout.readline()  # at least one complete save
        time.sleep(rng.uniform(0.0, 0.3))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        state = torch.load(target, weights_only=True)
        assert state["w"].shape == (5_000_000,) and bool((state["w"] == state["i"]).all())
        seen.append(state["i"])
    # SIGKILL can leave the unfinished temporary file behind, never a broken last.pt
    assert all(p.name.startswith(".last.pt.") for p in tmp_path.iterdir() if p.name != "last.pt")
    assert len(seen) == 6
    saver = AtomicCheckpointSaver(str(tmp_path), {})
    saver.attach(Engine(lambda e, b: None))  # clears such leftovers (their writers are dead)
    saver.lock.release()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".train.lock", "last.pt"]


def _trainer(losses: list[float]) -> tuple[Engine, torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    net = torch.nn.Linear(4, 1)
    opt = torch.optim.Adam(net.parameters(), lr=0.1)
    data = [(torch.randn(8, 4), torch.randn(8, 1)) for _ in range(5)]

    def step(engine, batch):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(net(batch[0]), batch[1])
        loss.backward()
        opt.step()
        losses.append(loss.item())
        return {"loss": loss}

    engine = Engine(step)
    engine.data = data
    return engine, net, opt


def test_resume_continues_epoch_counter_and_optimizer(tmp_path):
    full_losses: list[float] = []
    engine, net, opt = _trainer(full_losses)
    engine.run(engine.data, max_epochs=4)

    part_losses: list[float] = []
    engine, net, opt = _trainer(part_losses)
    saver = AtomicCheckpointSaver(str(tmp_path), {"network": net, "optimizer": opt, "trainer": engine})
    saver.attach(engine)
    engine.add_event_handler(Events.EPOCH_COMPLETED(once=2), lambda e: e.terminate())
    engine.run(engine.data, max_epochs=4)
    assert len(part_losses) == 10

    resumed_losses: list[float] = []
    engine2, net2, opt2 = _trainer(resumed_losses)
    CheckpointResumer(str(tmp_path / "last.pt"), {"network": net2, "optimizer": opt2, "trainer": engine2}).attach(
        engine2
    )
    epochs_seen = []
    engine2.add_event_handler(Events.EPOCH_STARTED, lambda e: epochs_seen.append(e.state.epoch))
    engine2.run(engine2.data, max_epochs=4)
    assert epochs_seen == [3, 4]
    assert opt2.state_dict()["state"][0]["step"] == 20
    np.testing.assert_allclose(part_losses + resumed_losses, full_losses, rtol=1e-6)


def test_resume_missing_file(tmp_path):
    engine, net, _ = _trainer([])
    CheckpointResumer(str(tmp_path / "none.pt"), {"network": net}).attach(engine)
    engine.run(engine.data, max_epochs=1)  # starts from scratch
    strict = CheckpointResumer(str(tmp_path / "none.pt"), {"network": net}, missing_ok=False)
    with pytest.raises(FileNotFoundError, match="none.pt"):
        strict(engine)


def test_non_finite_input_names_the_file():
    from monai.data import MetaTensor

    guard = NonFiniteGuard(image_keys=["image"])
    engine = Engine(lambda e, b: {"loss": torch.tensor(1.0)})
    guard.attach(engine)
    image = MetaTensor(torch.ones(1, 1, 4, 4, 4), meta={"filename_or_obj": ["/data/case_007_t1.nii.gz"]})
    image[0, 0, 1, 1, 1] = float("nan")
    with pytest.raises(NonFiniteError, match=r"1 NaN/Inf values in batch key 'image'.*case_007_t1.nii.gz"):
        engine.run([{"image": image}], max_epochs=1)


def test_non_finite_loss_stops_with_message():
    guard = NonFiniteGuard(image_keys=["image"])
    engine = Engine(lambda e, b: {"loss": torch.tensor(float("inf"))})
    guard.attach(engine)
    with pytest.raises(NonFiniteError, match=r"loss is inf at epoch 1, iteration 1"):
        engine.run([{"image": torch.ones(1, 1, 2, 2, 2)}], max_epochs=1)

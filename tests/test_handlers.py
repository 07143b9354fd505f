"""Atomic checkpoints, RNG state round trip, resume, and the non-finite guard on a tiny ignite trainer."""

from __future__ import annotations

import os
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


# ---------------------------------------------------------------- the guard names the batch's files


def _meta_image(name: str):
    from monai.data import MetaTensor

    return MetaTensor(torch.ones(1, 2, 2, 2), meta={"filename_or_obj": name})


def _collated(names: list[str]):
    from monai.data import list_data_collate

    return list_data_collate([{"image": _meta_image(n), "label": _meta_image(n.replace("t1", "seg"))} for n in names])


@pytest.mark.parametrize(
    "shape",
    ["collated_dict", "decollated_list", "meta_dict_key", "tuple_of_tensors", "bare_meta_tensor", "other_key_only"],
)
def test_nan_loss_names_the_batch_files_whatever_the_batch_shape(shape):
    """MONAI decollates the batch into a list of dicts before ITERATION_COMPLETED; other pipelines give a dict of
    lists (``<key>_meta_dict``), a tuple, a bare MetaTensor, or meta data only on another key."""
    from monai.data import decollate_batch

    names = ["/data/case_001_t1.nii.gz", "/data/case_002_t1.nii.gz"]
    batch = {
        "collated_dict": lambda: _collated(names),
        "decollated_list": lambda: decollate_batch(_collated(names)),
        "meta_dict_key": lambda: {"image": torch.ones(2, 1, 2, 2, 2), "image_meta_dict": {"filename_or_obj": names}},
        "tuple_of_tensors": lambda: (_meta_image(names[0]), _meta_image(names[1])),
        "bare_meta_tensor": lambda: _collated(names)["image"],
        "other_key_only": lambda: {"image": torch.ones(2, 1, 2, 2, 2), "label": _collated(names)["image"]},
    }[shape]()
    guard = NonFiniteGuard(image_keys=["image"])
    engine = Engine(lambda e, b: {"loss": torch.tensor(float("nan"))})
    guard.attach(engine)
    with pytest.raises(NonFiniteError) as raised:
        engine.run([batch], max_epochs=1)
    message = str(raised.value)
    assert "loss is nan" in message and "unknown" not in message
    assert all(name in message for name in names), message


def test_nan_loss_uses_the_names_seen_before_the_step_when_monai_drops_them():
    """A pipeline that replaces ``engine.state.batch`` after the step: the names read at ITERATION_STARTED."""
    names = ["/data/case_003_t1.nii.gz"]

    def step(engine, batch):
        engine.state.batch = [{"image": torch.ones(1, 2, 2, 2)}]  # decollated without meta data
        return [{"loss": torch.tensor(float("nan"))}]

    engine = Engine(step)
    NonFiniteGuard(image_keys=["image"]).attach(engine)
    with pytest.raises(NonFiniteError, match="case_003_t1.nii.gz"):
        engine.run([_collated(names)], max_epochs=1)


# ---------------------------------------------------------------- one training per output folder


HOLD_LOCK = textwrap.dedent(
    """
    import sys, time
    from nnmamba_monai.folder_lock import FolderLock
    FolderLock(sys.argv[1]).acquire()
    print("locked", flush=True)
    time.sleep(600)
    """
)


def _lock_holder(folder):
    proc = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(folder)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_second_training_into_a_folder_is_refused_naming_the_first(tmp_path):
    from nnmamba_monai.folder_lock import FolderLockedError

    holder = _lock_holder(tmp_path)
    try:
        saver = AtomicCheckpointSaver(str(tmp_path), {})
        with pytest.raises(FolderLockedError) as raised:
            saver.attach(Engine(lambda e, b: None))
        message = str(raised.value)
        assert "\n" not in message and f"pid {holder.pid}" in message and "started 20" in message
        assert str(tmp_path) in message
    finally:
        holder.kill()
        holder.wait()


def test_lock_of_a_killed_run_is_taken_over(tmp_path, caplog):
    holder = _lock_holder(tmp_path)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    engine, net, _ = _trainer([])
    saver = AtomicCheckpointSaver(str(tmp_path), {"network": net})
    with caplog.at_level("WARNING"):
        saver.attach(engine)
    assert f"pid {holder.pid}" in caplog.text and "no longer holds it" in caplog.text
    assert saver.lock.held
    engine.run(engine.data, max_epochs=1)
    assert not saver.lock.held, "released when the run completes"
    assert (tmp_path / "last.pt").is_file()


FORKED_HOLDER = textwrap.dedent(
    """
    import os, sys, time
    from nnmamba_monai.folder_lock import FolderLock
    FolderLock(sys.argv[1]).acquire()
    child = os.fork()  # like a data-loader worker: shares the locked file description
    if child == 0:
        time.sleep(600)
        os._exit(0)
    print(child, flush=True)
    time.sleep(600)
    """
)


def test_lock_held_on_by_a_killed_runs_forked_worker_is_replaced(tmp_path, caplog):
    from nnmamba_monai.folder_lock import FolderLock

    run = subprocess.Popen([sys.executable, "-c", FORKED_HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    worker = int(run.stdout.readline())
    try:
        run.send_signal(signal.SIGKILL)
        run.wait()
        with caplog.at_level("WARNING"):
            lock = FolderLock(tmp_path).acquire()
        assert f"replacing the lock of pid {run.pid}" in caplog.text and lock.held
        lock.release()
    finally:
        os.kill(worker, signal.SIGKILL)


def test_a_run_never_deletes_another_live_runs_temporary_file(tmp_path):
    """Only temporary files whose writer is dead are cleared; the live writer's file and name pattern are kept."""
    from nnmamba_monai.atomic import remove_stale_temporaries

    holder = _lock_holder(tmp_path / "elsewhere")  # any live process other than this one
    try:
        live = tmp_path / f".last.pt.{holder.pid}.abcd1234.tmp"
        dead = tmp_path / ".last.pt.999999999.abcd1234.tmp"
        live.write_bytes(b"in progress")
        dead.write_bytes(b"left by a killed run")
        assert remove_stale_temporaries(tmp_path / "last.pt") == [dead]
        assert live.is_file() and not dead.exists()
    finally:
        holder.kill()
        holder.wait()


def test_temporary_file_names_carry_the_writers_pid(tmp_path, monkeypatch):
    seen = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: (seen.append(src), real_replace(src, dst)))
    atomic_torch_save({"x": torch.zeros(1)}, tmp_path / "last.pt")
    assert os.path.basename(seen[0]).startswith(f".last.pt.{os.getpid()}.")


# ---------------------------------------------------------------- refusals end with one readable line


REFUSED_RUN = textwrap.dedent(
    """
    from nnmamba_monai.check_data import DataCheckError, require_clean_data
    from nnmamba_monai.refusal import install_excepthook

    install_excepthook()

    def evaluate():  # what MONAI's ConfigExpression does with an error inside a "$" expression
        try:
            raise DataCheckError([], 3, False)
        except Exception as error:
            raise RuntimeError("Failed to evaluate ConfigExpression: '$@data_check()'") from error

    evaluate()
    """
)


def test_refusal_inside_monai_expression_ends_with_its_summary_line():
    result = subprocess.run([sys.executable, "-c", REFUSED_RUN], capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("DataCheckError: data check failed (0 error(s), 0 warning(s) in 3 case(s))")
    assert "Traceback" not in result.stderr and "Failed to evaluate" not in result.stderr


def test_guard_checks_the_training_entries_hold_the_keys_the_transforms_load(tmp_path):
    """Even with a bundle's data check off: an entry without "label" is named at attach, not a KeyError later."""
    from monai.data import DataLoader, Dataset
    from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged

    from nnmamba_monai.datalist.schema import DatalistSchemaError

    transform = Compose([LoadImaged(keys=["image", "label"]), EnsureChannelFirstd(keys=["image", "label"])])
    entries = [{"image": "a/case_1.nii.gz", "label": "a/seg_1.nii.gz"}, {"image": "a/case_2.nii.gz"}]
    engine = Engine(lambda e, b: None)
    engine.data_loader = DataLoader(Dataset(entries, transform))
    with pytest.raises(DatalistSchemaError, match=r"^training datalist: entry 1 \(case_2.nii.gz\) has no key 'label'"):
        NonFiniteGuard(image_keys=["image"]).attach(engine)
    engine.data_loader = DataLoader(Dataset(entries[:1], transform))
    NonFiniteGuard(image_keys=["image"]).attach(engine)

"""Fine-tuning from a pretrained checkpoint: which tensors are copied, what is refused, when the handler acts."""

from __future__ import annotations

import logging

import pytest
import torch
from ignite.engine import Engine

from nnmamba_monai.checkpoint import CheckpointLoadError
from nnmamba_monai.handlers import (
    PretrainedWeightsError,
    PretrainedWeightsLoader,
    PretrainedWeightsNotFoundError,
    load_pretrained_weights,
)
from nnmamba_monai.networks import nnMambaCls, nnMambaSeg

HEAD = "conv8.conv.0"  # nnMambaSeg's output layer (its out_channels)


def small_seg(out_channels: int = 2, seed: int = 0) -> nnMambaSeg:
    torch.manual_seed(seed)
    return nnMambaSeg(spatial_dims=3, in_channels=1, out_channels=out_channels, channels=8)


def assert_same_tensors(a: dict, b: dict, names) -> None:
    for name in names:
        assert torch.equal(a[name], b[name]), name


def test_a_bundle_checkpoint_fills_every_tensor(tmp_path):
    source, target = small_seg(seed=0), small_seg(seed=1)
    path = tmp_path / "model.pt"
    torch.save(source.state_dict(), path)  # what a bundle's CheckpointSaver writes as models/model.pt
    loaded, left_out = load_pretrained_weights(target, path)
    assert left_out == [] and set(loaded) == set(target.state_dict())
    assert_same_tensors(target.state_dict(), source.state_dict(), loaded)


def test_a_resume_file_gives_its_network_weights_through_wrappers(tmp_path):
    """``last.pt`` holds the network under "network" beside the optimizer; DDP adds "module." to every name."""
    source, target = small_seg(seed=0), small_seg(seed=1)
    wrapped = {f"module.{name}": value for name, value in source.state_dict().items()}
    path = tmp_path / "last.pt"
    torch.save({"network": wrapped, "optimizer": {"state": {}, "param_groups": []}, "trainer": {"epoch": 3}}, path)
    loaded, left_out = load_pretrained_weights(torch.nn.parallel.DataParallel(target), path)
    assert left_out == []
    assert_same_tensors(target.state_dict(), source.state_dict(), loaded)


def test_another_label_count_keeps_the_output_layer_at_initialisation(tmp_path):
    source, target = small_seg(out_channels=2, seed=0), small_seg(out_channels=5, seed=1)
    initial = {name: value.clone() for name, value in target.state_dict().items()}
    path = tmp_path / "two_labels.pt"
    torch.save({"model": source.state_dict()}, path)
    loaded, left_out = load_pretrained_weights(target, path)
    source_state = source.state_dict()
    head = sorted(name for name in initial if source_state[name].shape != initial[name].shape)
    assert head and all(name.startswith("conv8.") for name in head)  # the output block, sized by the labels
    assert not set(head) & set(loaded) and len(left_out) == len(head)
    assert set(loaded) | set(head) == set(initial)
    assert_same_tensors(target.state_dict(), source.state_dict(), loaded)
    assert_same_tensors(target.state_dict(), initial, head)
    weight = f"{HEAD}.weight"
    assert f"{weight}: file {tuple(source_state[weight].shape)}, network {tuple(initial[weight].shape)}" in left_out


def test_a_file_of_another_network_is_refused_naming_it(tmp_path):
    path = tmp_path / "classifier.pt"
    torch.save(nnMambaCls(spatial_dims=3, in_channels=1, out_channels=2, channels=8).state_dict(), path)
    target = small_seg()
    before = {name: value.clone() for name, value in target.state_dict().items()}
    with pytest.raises(PretrainedWeightsError, match=rf"^{path} fits \d+ of the network's \d+ tensors") as raised:
        load_pretrained_weights(target, path)
    assert "(first misses: att1.layer1.weight: not in the file;" in raised.value.summary
    details = raised.value.details.splitlines()
    assert len(details) == 41 and details[-1].startswith("... and ") and details[-1].endswith(" more")
    assert_same_tensors(target.state_dict(), before, before)  # refused before anything was copied


def test_threshold_is_the_share_of_tensors_that_must_match(tmp_path):
    source = small_seg()
    partial = dict(list(source.state_dict().items())[: len(source.state_dict()) // 3])
    path = tmp_path / "third.pt"
    torch.save(partial, path)
    with pytest.raises(PretrainedWeightsError):
        load_pretrained_weights(small_seg(seed=1), path)
    loaded, left_out = load_pretrained_weights(small_seg(seed=1), path, min_loaded_fraction=0.3)
    assert len(loaded) == len(partial) and len(left_out) == len(source.state_dict()) - len(partial)


def test_unreadable_missing_and_overwritten_files_are_refused_naming_the_file(tmp_path):
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointLoadError, match=str(broken)):
        load_pretrained_weights(small_seg(), broken)
    missing = tmp_path / "missing.pt"
    with pytest.raises(PretrainedWeightsNotFoundError, match=f"pretrained_ckpt: checkpoint file not found: {missing}"):
        PretrainedWeightsLoader(missing, small_seg())  # when the config builds it, before data is read
    written = tmp_path / "models" / "model.pt"  # the run's own output: fine-tuning into the same folder
    written.parent.mkdir()
    torch.save(small_seg().state_dict(), written)
    with pytest.raises(PretrainedWeightsError, match=rf"^pretrained_ckpt {written} is a file this training writes"):
        PretrainedWeightsLoader(written, small_seg(), run_outputs=[tmp_path / "models" / ".." / "models" / "model.pt"])
    assert PretrainedWeightsLoader(written, small_seg(), run_outputs=[tmp_path / "elsewhere" / "model.pt"]).load_path
    with pytest.raises(ValueError, match="min_loaded_fraction"):
        PretrainedWeightsLoader(None, small_seg(), min_loaded_fraction=1.5)


def weights_at_each_iteration(network: torch.nn.Module, handler: PretrainedWeightsLoader, resume_at: int = 0):
    """Run a 2-epoch ignite engine (2 iterations each) that records the network's weights at every iteration."""
    seen = []

    def step(engine, batch):
        seen.append({name: value.clone() for name, value in network.state_dict().items()})
        with torch.no_grad():
            for parameter in network.parameters():
                parameter.add_(1.0)  # a training step that moves every weight

    engine = Engine(step)
    handler.attach(engine)
    if resume_at:
        engine.load_state_dict({"iteration": resume_at, "epoch_length": 2, "max_epochs": 2})
    engine.run([0, 1], max_epochs=2)
    return seen


def test_handler_loads_once_at_the_start_of_a_fresh_run(tmp_path, caplog):
    source, target = small_seg(seed=0), small_seg(seed=1)
    path = tmp_path / "model.pt"
    torch.save(source.state_dict(), path)
    with caplog.at_level(logging.INFO, logger="nnmamba_monai.handlers.pretrained"):
        seen = weights_at_each_iteration(target, PretrainedWeightsLoader(path, target))
    assert len(seen) == 4
    assert_same_tensors(seen[0], source.state_dict(), seen[0])
    weight = f"{HEAD}.weight"
    torch.testing.assert_close(seen[2][weight], source.state_dict()[weight] + 2.0)  # epoch 2 trains on, no reload
    total = len(source.state_dict())
    assert f"fine-tuning from {path}: {total} of {total} network tensors loaded" in caplog.text


def test_handler_leaves_a_resumed_run_and_a_null_path_alone(tmp_path, caplog):
    source = small_seg(seed=0)
    path = tmp_path / "model.pt"
    torch.save(source.state_dict(), path)
    target = small_seg(seed=1)
    own = {name: value.clone() for name, value in target.state_dict().items()}
    with caplog.at_level(logging.INFO, logger="nnmamba_monai.handlers.pretrained"):
        seen = weights_at_each_iteration(target, PretrainedWeightsLoader(path, target), resume_at=1)
    assert len(seen) == 3  # resumed inside epoch 1: its weights (here the initial ones) are kept
    assert_same_tensors(seen[0], own, own)
    assert f"resumed run: the weights of {path} are not applied" in caplog.text

    untouched = small_seg(seed=2)
    initial = {name: value.clone() for name, value in untouched.state_dict().items()}
    seen = weights_at_each_iteration(untouched, PretrainedWeightsLoader(None, untouched))
    assert_same_tensors(seen[0], initial, initial)

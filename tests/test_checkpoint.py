"""load_authors_checkpoint: wrappers, prefixes, generations inferred, clear errors."""

from __future__ import annotations

import pytest
import torch

from nnmamba_monai import load_authors_checkpoint, nnMambaCls, nnMambaSeg
from nnmamba_monai.checkpoint import extract_state_dict, infer_network_config


def _randomised(net: torch.nn.Module) -> torch.nn.Module:
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
        for name, b in net.named_buffers():
            if name.endswith("running_var"):
                b.copy_(torch.rand(b.shape, generator=gen) + 0.5)
    return net.eval()


def test_module_prefix_checkpoint_file(tmp_path):
    net = _randomised(nnMambaSeg(in_channels=4, out_channels=3, channels=8))
    path = tmp_path / "model_final.pth"
    torch.save({"module." + k: v for k, v in net.state_dict().items()}, path)
    loaded = load_authors_checkpoint(path)
    assert isinstance(loaded, nnMambaSeg) and not loaded.training
    assert loaded.generation == "miccss" and not loaded.deep_supervision
    x = torch.randn(1, 4, 16, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net(x))


def test_nnunet_v1_trainer_checkpoint_mic_generation(tmp_path):
    net = _randomised(nnMambaSeg(in_channels=4, out_channels=4, channels=32, blocks=2, generation="mic"))
    path = tmp_path / "model_final_checkpoint.model"
    torch.save(
        {
            "epoch": 999,
            "state_dict": net.state_dict(),
            "optimizer_state_dict": {"state": {}, "param_groups": [{"lr": 0.01}]},
            "plot_stuff": ([1.0, 0.9], [1.1, 1.0], [0.5, 0.6], [0.5, 0.6]),
            "best_stuff": (10, 0.9, 0.8, 0.7),
        },
        path,
    )
    loaded = load_authors_checkpoint(path)
    assert loaded.generation == "mic" and loaded.deep_supervision
    x = torch.randn(1, 4, 16, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net(x))


def test_classification_checkpoint_in_memory():
    net = _randomised(nnMambaCls(in_channels=1, out_channels=1, channels=8))
    loaded = load_authors_checkpoint({"model": net.state_dict()})
    assert isinstance(loaded, nnMambaCls) and not loaded.hierarchical_ssm
    x = torch.randn(2, 1, 20, 24, 20)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net(x))


def test_inferred_config():
    net = nnMambaSeg(in_channels=2, out_channels=5, channels=16, blocks=2, d_state=8)
    spec = infer_network_config(net.state_dict())
    assert spec["class"] is nnMambaSeg
    assert spec["kwargs"] == {
        "spatial_dims": 3,
        "in_channels": 2,
        "channels": 16,
        "blocks": 2,
        "d_state": 8,
        "out_channels": 5,
        "generation": "miccss",
        "deep_supervision": False,
    }


def test_mismatch_lists_missing_and_unexpected_keys():
    state = nnMambaSeg(channels=8).state_dict()
    state.pop("att1.layer1.weight")
    state["extra.head.weight"] = torch.zeros(1)
    with pytest.raises(
        ValueError,
        match=r"(?s)missing keys \(1\): \['att1.layer1.weight'\].*unexpected keys \(1\): \['extra.head.weight'\]",
    ):
        load_authors_checkpoint(state)


def test_not_an_nnmamba_checkpoint(tmp_path):
    with pytest.raises(ValueError, match="not an nnMamba state_dict"):
        load_authors_checkpoint({"fc.weight": torch.zeros(2, 2)})
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        load_authors_checkpoint(tmp_path / "missing.pth")
    bad = tmp_path / "garbage.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="garbage.pth"):
        load_authors_checkpoint(bad)


def test_extract_state_dict_strips_nested_prefixes():
    state = {"module._orig_mod.in_conv.conv.0.weight": torch.zeros(1)}
    assert list(extract_state_dict({"state_dict": state})) == ["in_conv.conv.0.weight"]


class _RunsCode:
    """Pickles as a call to ``print``: what a weights-only load must refuse."""

    def __reduce__(self):
        return (print, ("this ran while unpickling",))


@pytest.mark.parametrize("loader", ["authors", "resumer"])
def test_a_checkpoint_holding_code_is_refused_without_weights_only_false_advice(tmp_path, loader):
    from ignite.engine import Engine

    from nnmamba_monai.checkpoint import CheckpointLoadError
    from nnmamba_monai.handlers import CheckpointResumer

    path = tmp_path / "last.pt"
    torch.save({"network": {"weight": torch.zeros(1)}, "extra": _RunsCode()}, path)
    with pytest.raises(CheckpointLoadError) as raised:
        if loader == "authors":
            load_authors_checkpoint(path)
        else:
            CheckpointResumer(str(path), {"network": torch.nn.Linear(1, 1)})(Engine(lambda e, b: None))
    message = str(raised.value)
    assert "\n" not in message and str(path) in message and "not a plain checkpoint of tensors" in message
    assert "print" in message, "torch's reason (the unsupported global) is kept"
    assert "weights_only=False" not in message and "weights_only` set to `False" not in message
    assert raised.value.__cause__ is None and raised.value.__suppress_context__


def test_a_truncated_checkpoint_is_one_line_naming_the_file(tmp_path):
    from nnmamba_monai.checkpoint import CheckpointLoadError

    path = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(1000)}, path)
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(CheckpointLoadError, match="model.pt cannot be read as a torch checkpoint") as raised:
        load_authors_checkpoint(path)
    assert "\n" not in str(raised.value) and "weights_only" not in str(raised.value)

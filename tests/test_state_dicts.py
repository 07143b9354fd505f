"""Our networks' state_dicts equal the authors' (nnmamba_state_dicts.json): keys, order, shapes, aliases, counts."""

from __future__ import annotations

import pytest
import torch

from nnmamba_monai import nnMambaCls, nnMambaSeg

CONFIGS = {
    "nnMambaSeg(in_ch=1, channels=32, blocks=3, number_classes=6) [defaults]": lambda: nnMambaSeg(3, 1, 6),
    "nnMambaSeg(in_ch=4, channels=32, blocks=3, number_classes=3) [BraTS-like]": lambda: nnMambaSeg(3, 4, 3),
    "nnMambaSeg(in_ch=1, channels=32, blocks=3, number_classes=16) [AMOS-like]": lambda: nnMambaSeg(3, 1, 16),
    "nnunet/network_architecture/nnMamba.py nnMambaSeg(in_ch=4, channels=32, blocks=3, number_classes=4) "
    "[nnU-Net trainer variant: deep-supervision heads]": lambda: nnMambaSeg(3, 4, 4, generation="mic"),
    "nnMambaEncoder(in_ch=1, channels=32, blocks=3, number_classes=1) [nnMamba4cls.py defaults]": lambda: nnMambaCls(
        3, 1, 1
    ),
}


def test_every_reference_configuration_is_covered(reference_state_dicts):
    assert set(reference_state_dicts) == set(CONFIGS)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_state_dict_matches_reference(name, reference_state_dicts):
    ref = reference_state_dicts[name]
    net = CONFIGS[name]()
    state = net.state_dict()
    ours = [[k, list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in state.items()]
    assert ours == ref["state_dict"]  # same keys, same order, same shapes and dtypes
    assert len(state) == ref["n_state_dict_entries"]
    assert sum(p.numel() for p in net.parameters()) == ref["n_parameters_unique"]
    for alias, original in ref["aliases_sharing_storage_with"].items():
        assert state[alias].data_ptr() == state[original].data_ptr(), alias
    # and nothing else aliases
    pointers = {}
    for k, v in state.items():
        if v.numel() > 0:
            pointers.setdefault((v.data_ptr(), tuple(v.shape)), []).append(k)
    shared = {k for keys in pointers.values() if len(keys) > 1 for k in keys[1:]}
    assert shared == set(ref["aliases_sharing_storage_with"])


@pytest.mark.parametrize("name", list(CONFIGS))
def test_reference_shaped_checkpoint_loads_strictly(name, reference_state_dicts):
    """A checkpoint with the reference keys and shapes (random values) loads with strict=True."""
    gen = torch.Generator().manual_seed(0)
    ckpt = {}
    for key, shape, dtype in reference_state_dicts[name]["state_dict"]:
        if dtype == "int64":
            ckpt[key] = torch.tensor(7)
        else:
            ckpt[key] = torch.randn(shape, generator=gen)
    # aliases hold the same values in a saved checkpoint
    for alias, original in reference_state_dicts[name]["aliases_sharing_storage_with"].items():
        ckpt[alias] = ckpt[original]
    net = CONFIGS[name]()
    net.load_state_dict(ckpt, strict=True)
    for key, value in net.state_dict().items():
        torch.testing.assert_close(value, ckpt[key], rtol=0, atol=0)

"""Mixed precision: a small nnMamba trains 200 steps under autocast without NaN (bf16 on CPU, fp16 + GradScaler on
a GPU); every network family trains under bf16 autocast; the scan follows one precision policy
(:mod:`nnmamba_monai.ssm.precision`): the same numbers inside and outside autocast.

The CPU runs use one thread (restored afterwards), so that their arithmetic is the same in every run on a
machine; on CPUs whose oneDNN bf16 convolution backward sometimes fails, the checked convolutions recompute those
gradients (tests/test_checked_conv.py injects that fault). Timings belong in benchmarks/, not here."""

from __future__ import annotations

import pytest
import torch

from nnmamba_monai import BiSegMamba, MultiSegMamba, SegMamba, SegMambaSkip, nnMambaCls, nnMambaSeg
from nnmamba_monai.ssm import Mamba, selective_scan_torch
from tests.helpers import random_scan_inputs

STEPS = 200
THREADS_AT_IMPORT = torch.get_num_threads()


def blob_batch(generator: torch.Generator, batch: int = 2, size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 1, S, S, S) noisy images of a bright cube at a random place and its (B, 1, S, S, S) mask."""
    images, masks = (
        torch.randn(batch, 1, size, size, size, generator=generator) * 0.3,
        torch.zeros(batch, 1, size, size, size),
    )
    for b in range(batch):
        x, y, z = torch.randint(0, size - 6, (3,), generator=generator).tolist()
        masks[b, :, x : x + 6, y : y + 6, z : z + 6] = 1.0
    return images + masks, masks


def train(device: str, dtype: torch.dtype, steps: int = STEPS) -> list[float]:
    """Losses of ``steps`` Adam steps of an 8-channel nnMambaSeg under autocast(``dtype``) on ``device``."""
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    network = nnMambaSeg(3, 1, 1, channels=8, blocks=1, d_state=8, out_relu=False).to(device)
    optimizer = torch.optim.Adam(network.parameters(), lr=3e-3)
    scaler = torch.amp.GradScaler(device, enabled=dtype == torch.float16)
    losses = []
    for _ in range(steps):
        images, masks = (t.to(device) for t in blob_batch(generator))
        optimizer.zero_grad()
        with torch.autocast(device, dtype=dtype):
            logits = network(images)
            assert logits.dtype == dtype, "the network runs in reduced precision around its fp32 SSM"
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), masks)
        assert torch.isfinite(loss), f"loss {loss.item()} at step {len(losses)}"
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        losses.append(loss.item())
    assert all(torch.isfinite(p).all() for p in network.parameters())
    return losses


def test_bf16_autocast_on_cpu_trains_200_steps_without_nan(one_thread):
    losses = train("cpu", torch.bfloat16)
    first, last = sum(losses[:20]) / 20, sum(losses[-20:]) / 20
    assert last < 0.7 * first, f"loss did not decrease: {first:.4f} -> {last:.4f}"


def test_one_thread_fixture_restores_the_thread_count(one_thread):
    assert torch.get_num_threads() == 1  # the restore itself is checked by the next test


def test_thread_count_is_restored_after_the_fixture():
    assert torch.get_num_threads() == THREADS_AT_IMPORT


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fp16_autocast_with_grad_scaler_on_gpu_trains_200_steps_without_nan():
    losses = train("cuda", torch.float16)
    assert sum(losses[-20:]) < 0.7 * sum(losses[:20])


TAMING = {"filters": (8, 16, 32), "strides": (1, 2, 2)}
FAMILIES = {  # every network family at a small size, each with at least one Mamba layer
    "SegMamba": lambda: SegMamba(3, 1, 1, **TAMING),
    "BiSegMamba": lambda: BiSegMamba(3, 1, 1, **TAMING),
    "MultiSegMamba": lambda: MultiSegMamba(3, 1, 1, **TAMING),
    "SegMambaSkip": lambda: SegMambaSkip(3, 1, 1, **TAMING),
    "nnMambaSeg": lambda: nnMambaSeg(3, 1, 1, channels=8, blocks=2, d_state=8, out_relu=False),
    "nnMambaSeg_mic": lambda: nnMambaSeg(3, 1, 1, channels=8, blocks=2, d_state=8, generation="mic", out_relu=False),
    "nnMambaCls": lambda: nnMambaCls(3, 1, 1, channels=8, blocks=1),
    "nnMambaCls_hierarchical": lambda: nnMambaCls(3, 1, 1, channels=8, blocks=1, hierarchical_ssm=True),
}


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_trains_under_bf16_autocast(family, one_thread):
    """Four Adam steps on one 16^3 batch under bf16 autocast: finite losses and gradients, the loss goes down, and
    every Mamba layer ran under autocast (bf16 projections; no block switches autocast off)."""
    torch.manual_seed(0)
    network = FAMILIES[family]().train()
    projected = set()
    mambas = [m for m in network.modules() if isinstance(m, Mamba)]
    assert mambas
    for mamba in mambas:
        mamba.in_proj.register_forward_hook(lambda module, inputs, output: projected.add(output.dtype))
    optimizer = torch.optim.Adam(network.parameters(), lr=3e-3)
    images, masks = blob_batch(torch.Generator().manual_seed(0))
    losses = []
    for _ in range(4):
        optimizer.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = network(images)
            logits = logits[0] if isinstance(logits, list) else logits  # deep supervision: the full-size output
            target = masks if logits.dim() == 5 else masks.flatten(1).amax(1, keepdim=True)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), target)
        loss.backward()
        assert torch.isfinite(loss), f"{family}: loss {loss.item()} at step {len(losses)}"
        bad = [n for n, p in network.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
        assert not bad, f"{family}: non-finite gradients in {bad[:5]}"
        optimizer.step()
        losses.append(loss.item())
    assert projected == {torch.bfloat16}, projected
    assert losses[-1] < losses[0], losses


@pytest.mark.parametrize("autocast_dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("activation_dtype", [torch.float32, torch.bfloat16])
def test_scan_is_the_same_inside_and_outside_autocast(autocast_dtype, activation_dtype):
    """The torch scan's forward and backward (even a backward called inside the autocast region) give the same
    bits with autocast on as off: float32 state, output in u's dtype, gradients in their inputs' dtypes."""
    inp = random_scan_inputs(2, 6, 70, 4)
    activations = ("u", "delta", "B", "C", "z")
    inp = {k: v.to(activation_dtype) if k in activations else v for k, v in inp.items()}
    names = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")

    def run(autocast: bool):
        leaves = [inp[k].clone().requires_grad_() for k in names]
        with torch.autocast("cpu", dtype=autocast_dtype, enabled=autocast):
            out, last = selective_scan_torch(*leaves, delta_softplus=True, return_last_state=True)
            (out.float().square().sum() + last.sum()).backward()
        return out, last, [leaf.grad for leaf in leaves]

    out, last, grads = run(autocast=False)
    out_ac, last_ac, grads_ac = run(autocast=True)
    assert out_ac.dtype == activation_dtype and last_ac.dtype == torch.float32
    torch.testing.assert_close(out_ac, out, rtol=0, atol=0)
    torch.testing.assert_close(last_ac, last, rtol=0, atol=0)
    for name, grad_ac, grad, leaf in zip(names, grads_ac, grads, (inp[k] for k in names)):
        assert grad_ac.dtype == leaf.dtype, name
        torch.testing.assert_close(grad_ac, grad, rtol=0, atol=0, msg=name)

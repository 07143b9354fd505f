"""Mixed precision: a small nnMamba trains 200 steps under autocast without NaN (bf16 on CPU, fp16 + GradScaler on
a GPU), and the SSM keeps its state in float32 inside the autocast region.

The CPU run uses one thread (restored afterwards), so that its arithmetic is the same in every run on a machine;
on CPUs whose oneDNN bf16 convolution backward sometimes fails, the checked convolutions recompute those
gradients (tests/test_checked_conv.py injects that fault). Timings belong in benchmarks/, not here."""

from __future__ import annotations

import pytest
import torch

from nnmamba_monai import nnMambaSeg

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

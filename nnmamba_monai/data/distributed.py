"""Splitting the validation cases over the ranks of a multi-GPU run."""

from __future__ import annotations

import logging
from collections.abc import Sized

import torch.distributed as dist
from monai.data import DistributedSampler

__all__ = ["validation_sampler"]

logger = logging.getLogger(__name__)


def validation_sampler(dataset: Sized, num_replicas: int | None = None, rank: int | None = None) -> DistributedSampler:
    """A ``DistributedSampler`` that gives every rank at least one validation case.

    Each case is inferred once where there are at least as many cases as ranks (``even_divisible=False``).
    With fewer cases than ranks a rank would get none, and its evaluator would die on empty data while the
    others wait for it in the metric gather (a long traceback per rank). Then the cases are repeated to one per
    rank (``even_divisible=True``): repeated cases count more than once in the means and the per-case CSVs, which
    rank 0 says in one warning line.

    Args:
        dataset: the validation dataset, (N,) cases.
        num_replicas: the number of ranks (default: the process group's world size).
        rank: this process's rank (default: the process group's rank).
    """
    num_replicas = dist.get_world_size() if num_replicas is None else num_replicas
    rank = dist.get_rank() if rank is None else rank
    num_cases = len(dataset)
    if num_cases == 0:
        raise ValueError("no validation cases: check the datalist's validation fold")
    pad = num_cases < num_replicas
    if pad and rank == 0:
        logger.warning(
            "%d validation case(s) for %d ranks: cases repeated so that every rank has one; the %d repeated "
            "count twice or more in the mean metrics and the per-case CSVs (run with --nproc_per_node %d for "
            "exact means)",
            num_cases,
            num_replicas,
            num_replicas - num_cases,
            num_cases,
        )
    return DistributedSampler(dataset, even_divisible=pad, num_replicas=num_replicas, rank=rank, shuffle=False)

"""Bundle tests: one CPU thread per process.

The CI machine is small and shared; with two OpenMP threads per process, spin-waiting on busy cores made a 16^3
forward/backward pass ~100x slower than with one thread, so bundle subprocesses (which inherit this environment)
and the in-process checks run single-threaded.
"""

from __future__ import annotations

import os

import pytest
import torch


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    saved_env, saved_threads = os.environ.get("OMP_NUM_THREADS"), torch.get_num_threads()
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved_threads)
    if saved_env is None:
        os.environ.pop("OMP_NUM_THREADS", None)
    else:
        os.environ["OMP_NUM_THREADS"] = saved_env

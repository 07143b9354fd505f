"""Shared fixtures: the reference facts about the authors' networks, a one-thread torch."""

from __future__ import annotations

import json
import locale
import os
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
REFERENCE_DIR = Path(os.environ.get("NNMAMBA_REFERENCE_DIR", REPO_ROOT.parent / "shared" / "reference"))


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (``-n``), each worker gets its share of the cores, for torch in this process and through
    ``OMP_NUM_THREADS`` for the subprocesses it starts. OpenMP threads that spin-wait on cores another worker
    holds made a float64 gradcheck 20x slower (3 s alone, 69 s beside another worker on 2 cores)."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if not workers:
        return
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    threads = max(1, cpus // int(workers))
    torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)


@pytest.fixture(autouse=True)
def _locale_as_it_was():
    """ITK's image writers switch the process to the C locale (ASCII text I/O); a test that writes a scan with ITK
    must not change how later tests read files."""
    saved = locale.setlocale(locale.LC_ALL)
    yield
    locale.setlocale(locale.LC_ALL, saved)


@pytest.fixture(scope="session")
def reference_state_dicts() -> dict:
    path = REFERENCE_DIR / "nnmamba_state_dicts.json"
    if not path.is_file():
        pytest.fail(f"reference facts missing: {path} (CI clones the repo with ../shared beside it)")
    return json.loads(path.read_text())


@pytest.fixture
def one_thread():
    """One intra-op torch thread for the test (same arithmetic in every run), the thread count restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

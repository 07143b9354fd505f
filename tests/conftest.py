"""Shared fixtures: the reference facts about the authors' networks."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
REFERENCE_DIR = Path(os.environ.get("NNMAMBA_REFERENCE_DIR", REPO_ROOT.parent / "shared" / "reference"))


@pytest.fixture(scope="session")
def reference_state_dicts() -> dict:
    path = REFERENCE_DIR / "nnmamba_state_dicts.json"
    if not path.is_file():
        pytest.fail(f"reference facts missing: {path} (CI clones the repo with ../shared beside it)")
    return json.loads(path.read_text())

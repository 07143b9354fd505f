"""Integration tests: markers registered here (pyproject.toml stays as it is)."""

from __future__ import annotations


def pytest_configure(config) -> None:
    config.addinivalue_line(
        "markers",
        "monailabel: serves a bundle through a MONAI Label server (skipped where monailabel is not installed; "
        "install with bash scripts/install_monailabel.sh)",
    )

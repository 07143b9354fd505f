"""The two torchvision.utils names MONAI Label imports; calling either raises (see the package docstring)."""

from __future__ import annotations

from typing import Any

__all__ = ["make_grid", "save_image"]

_MESSAGE = (
    "torchvision is not installed (scripts/monailabel_server.py put a stand-in on the path); "
    "install a torchvision that matches your torch to use torchvision.utils.{}"
)


def make_grid(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError(_MESSAGE.format("make_grid"))


def save_image(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError(_MESSAGE.format("save_image"))

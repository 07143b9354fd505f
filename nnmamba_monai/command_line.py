"""What every ``python -m nnmamba_monai.<tool>`` command line shares."""

from __future__ import annotations

import argparse

__all__ = ["command_parser"]


def command_parser(module: str, doc: str | None) -> argparse.ArgumentParser:
    """The argument parser of ``python -m <module>``: that name in the usage line (not ``__main__.py``) and the
    module's docstring as the description, its line breaks kept."""
    return argparse.ArgumentParser(
        prog=f"python -m {module}", description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )

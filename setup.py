"""Build hook: the repository's ``bundles/`` ship inside the package as ``nnmamba_monai/bundles`` (package data).

The source tree keeps the bundles at the repository root (the MONAI model-zoo layout users and MONAI expect);
a built wheel carries a copy under the package, found at run time through ``importlib.resources``
(``nnmamba_monai.bundle_config.bundles_dir``). Links into ``bundles/_shared`` become plain files, so each
bundle in the wheel stands alone; trained weights, datalists and outputs are not copied. An editable install
reads ``bundles/`` in place and copies nothing. Everything else is in setup.cfg.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

BUNDLE_FILES = ("LICENSE", "large_files.yml", "configs/*", "docs/*", "models/.gitkeep")
EXCLUDED = ("configs/datalist.json",)  # written per dataset by python -m nnmamba_monai.datalist


def released_files(bundle: Path) -> set[Path]:
    """The files ``large_files.yml`` lists that are present (released weights that ship inside the bundle)."""
    listing = bundle / "large_files.yml"
    text = listing.read_text() if listing.is_file() else ""
    paths = re.findall(r'^\s*-\s*path:\s*"?([^"\n]+?)"?\s*$', text, flags=re.MULTILINE)
    return {Path(path) for path in paths if (bundle / path).is_file()}


def bundle_files(bundle: Path) -> list[Path]:
    """The files of one bundle that ship (relative paths): configs, docs, licence, the large-files list, and
    the released weights it lists."""
    files = {p.relative_to(bundle) for pattern in BUNDLE_FILES for p in bundle.glob(pattern) if p.is_file()}
    files |= released_files(bundle)
    return sorted(p for p in files if p.as_posix() not in EXCLUDED)


class BuildPyWithBundles(build_py):
    """``build_py`` that also copies ``bundles/*_nnmamba_*`` into ``<build_lib>/nnmamba_monai/bundles``."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        source = Path(__file__).resolve().parent / "bundles"
        target = Path(self.build_lib) / "nnmamba_monai" / "bundles"
        shutil.rmtree(target, ignore_errors=True)
        for bundle in sorted(p for p in source.iterdir() if p.is_dir() and not p.name.startswith("_")):
            for relative in bundle_files(bundle):
                destination = target / bundle.name / relative
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(bundle / relative, destination)  # follows links: plain files in the wheel


setup(cmdclass={"build_py": BuildPyWithBundles})

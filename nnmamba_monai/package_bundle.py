"""Zip a bundle with its trained weights for ``python -m monai.bundle download``.

    python -m nnmamba_monai.package_bundle --bundle bundles/brats_nnmamba_segmentation \\
        --weights runs/brats/model.pt --output dist/ --url https://example.org/brats_model.pt

Writes ``<output>/<bundle name>_v<version>.zip`` whose single top-level folder is the bundle (the layout
``monai.bundle download --url`` expects), with ``models/model.pt`` inside and ``large_files.yml`` listing
that file with its SHA-256 (so ``monai.bundle download_large_files`` can fetch and verify it from ``--url``
when the zip is shipped without weights, ``--exclude_weights``). Prints and writes ``<zip>.sha256``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

import yaml

__all__ = ["file_sha256", "package_bundle"]

WEIGHTS_RELPATH = "models/model.pt"
_SKIP_DIRS = {"__pycache__", ".pytest_cache", "eval", "logs", "runs", "mlruns"}


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in 1 MiB pieces."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for piece in iter(lambda: stream.read(1 << 20), b""):
            digest.update(piece)
    return digest.hexdigest()


def _bundle_version(bundle: Path) -> str:
    meta = bundle / "configs" / "metadata.json"
    if not meta.is_file():
        raise FileNotFoundError(f"{bundle} is not a MONAI bundle: {meta} is missing")
    return str(json.loads(meta.read_text()).get("version", "0.0.0"))


def _write_large_files(bundle: Path, url: str, sha256: str) -> None:
    entry = {"path": WEIGHTS_RELPATH, "url": url, "hash_val": sha256, "hash_type": "sha256"}
    path = bundle / "large_files.yml"
    existing = yaml.safe_load(path.read_text()) if path.is_file() else None
    files = [f for f in (existing or {}).get("large_files", []) if f.get("path") != WEIGHTS_RELPATH]
    path.write_text(yaml.safe_dump({"large_files": [entry, *files]}, sort_keys=False))


def package_bundle(
    bundle: str | os.PathLike,
    weights: str | os.PathLike,
    output_dir: str | os.PathLike,
    url: str = "",
    exclude_weights: bool = False,
) -> Path:
    """Zip ``bundle`` with ``weights`` as models/model.pt; returns the zip path.

    Args:
        bundle: the bundle folder (its name becomes the zip's top-level folder).
        weights: a state_dict file saved with torch.save (our training writes one).
        output_dir: where the zip and its .sha256 go.
        url: where models/model.pt will be downloadable from (written to large_files.yml).
        exclude_weights: leave models/model.pt out of the zip (fetch it with download_large_files).
    """
    bundle, weights, output_dir = Path(bundle), Path(weights), Path(output_dir)
    if not weights.is_file():
        raise FileNotFoundError(f"weights file not found: {weights}")
    version = _bundle_version(bundle)
    output_dir.mkdir(parents=True, exist_ok=True)
    zip_path = output_dir / f"{bundle.name}_v{version}.zip"
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / bundle.name
        shutil.copytree(bundle, staged, ignore=lambda _d, names: [n for n in names if n in _SKIP_DIRS])
        (staged / "models").mkdir(exist_ok=True)
        for old in (staged / "models").glob("*.pt"):
            old.unlink()
        shutil.copy(weights, staged / WEIGHTS_RELPATH)
        _write_large_files(staged, url, file_sha256(staged / WEIGHTS_RELPATH))
        partial = zip_path.with_suffix(".zip.partial")
        with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(staged.rglob("*")):
                if path.is_file() and not (exclude_weights and path == staged / WEIGHTS_RELPATH):
                    archive.write(path, path.relative_to(staged.parent).as_posix())
        os.replace(partial, zip_path)  # never leave a half-written zip under the final name
    zip_path.with_name(zip_path.name + ".sha256").write_text(f"{file_sha256(zip_path)}  {zip_path.name}\n")
    return zip_path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", required=True, type=Path, help="bundle folder, e.g. bundles/<name>")
    parser.add_argument("--weights", required=True, type=Path, help="trained state_dict (torch.save) to ship")
    parser.add_argument("--output", default=Path("dist"), type=Path, help="folder for the zip (default: dist)")
    parser.add_argument("--url", default="", help="download URL of models/model.pt for large_files.yml")
    parser.add_argument("--exclude_weights", action="store_true", help="do not put model.pt in the zip")
    args = parser.parse_args(argv)
    zip_path = package_bundle(args.bundle, args.weights, args.output, args.url, args.exclude_weights)
    print(f"wrote {zip_path}")
    print(zip_path.with_name(zip_path.name + ".sha256").read_text().strip())


if __name__ == "__main__":
    main()

"""``python -m nnmamba_monai.verify_bundle``: the MONAI model zoo's minimal bundle checks, offline.

The model zoo's CI (``ci/verify_bundle.py -m min``) checks, in order: every ``large_files.yml`` entry can be
fetched (a file already at its path only has its hash checked), ``configs/metadata.json`` and ``LICENSE`` exist,
the preferred files ``models/model.pt`` and ``configs/inference.json`` exist, the metadata's ``version`` has a
``changelog`` entry, and the metadata validates against the schema its ``schema`` field names. This module runs
the same checks on a bundle folder without a network connection (the schema is read from ``--schema``):

    python -m nnmamba_monai.verify_bundle bundles/brain_nnmamba_extraction --schema meta_schema_20240725.json

It prints one line per check and exits 1 at the first failure, naming the file and the reason. A bundle that
ships no trained weights fails at ``models/model.pt`` with that reason, which is the expected outcome for the
bundles whose paper datasets cannot be redistributed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

from nnmamba_monai.file_digest import file_digest

__all__ = ["BundleVerificationError", "main", "verify_bundle"]

LARGE_FILE_NAMES = ("large_files.yml", "large_files.yaml", "large_files.json")
NECESSARY_FILES = ("configs/metadata.json", "LICENSE")
WEIGHTS_RELPATH = "models/model.pt"
INFERENCE_STEM = "configs/inference"
CONFIG_SUFFIXES = (".json", ".yaml", ".yml")
NO_WEIGHTS_REASON = (
    "this bundle ships no trained weights (configs/train.json writes models/model.pt; trained weights are "
    "added with python -m nnmamba_monai.package_bundle)"
)


class BundleVerificationError(ValueError):
    """A bundle fails one of the model zoo's checks; the message names the file and the reason."""


def _large_file_entries(bundle: Path) -> tuple[Path | None, list[dict[str, Any]]]:
    listing = next((bundle / name for name in LARGE_FILE_NAMES if (bundle / name).is_file()), None)
    if listing is None:
        return None, []
    text = listing.read_text()
    content = json.loads(text) if listing.suffix == ".json" else yaml.safe_load(text)
    entries = (content or {}).get("large_files") or []
    if not isinstance(entries, list):
        raise BundleVerificationError(
            f"{listing}: 'large_files' must be a list of entries, got {type(entries).__name__}"
        )
    return listing, entries


def check_large_files(bundle: Path) -> str:
    """Every listed file is either present with the listed hash, or has an http(s) URL to be fetched from."""
    listing, entries = _large_file_entries(bundle)
    if listing is None:
        return "no large_files listing (nothing to fetch)"
    for index, entry in enumerate(entries):
        where = f"{listing} entry {index}"
        relpath = entry.get("path") if isinstance(entry, dict) else None
        if not relpath:
            raise BundleVerificationError(f"{where}: no 'path'")
        if "url" not in entry:
            raise BundleVerificationError(
                f"{where} ({relpath}): no 'url' key (MONAI's download_url requires one; it may be empty when the "
                "file ships inside the bundle)"
            )
        target = bundle / relpath
        url = str(entry.get("url") or "")
        hash_val = str(entry.get("hash_val") or "")
        hash_type = str(entry.get("hash_type") or "md5").lower()
        if target.is_file():
            if hash_val and file_digest(target, hash_type) != hash_val.lower():
                raise BundleVerificationError(f"{target}: {hash_type} does not match hash_val in {listing.name}")
            continue
        if not url.startswith(("http://", "https://")):
            raise BundleVerificationError(
                f"{where} ({relpath}): the file is absent and url {url!r} cannot be downloaded; list only released "
                "files, with a real url and hash"
            )
        raise BundleVerificationError(
            f"{target} is absent: fetch it first with python -m monai.bundle download_large_files "
            f"--bundle_path {bundle} (url {url})"
        )
    return f"{len(entries)} large file(s) present with matching hashes" if entries else "large_files lists no files"


def check_necessary_files(bundle: Path) -> str:
    for relpath in NECESSARY_FILES:
        if not (bundle / relpath).is_file():
            raise BundleVerificationError(f"{bundle / relpath}: necessary file is missing")
    return "configs/metadata.json and LICENSE present"


def check_preferred_files(bundle: Path) -> str:
    if not any((bundle / f"{INFERENCE_STEM}{suffix}").is_file() for suffix in CONFIG_SUFFIXES):
        raise BundleVerificationError(f"{bundle / INFERENCE_STEM}.json: inference config is missing")
    if not (bundle / WEIGHTS_RELPATH).is_file():
        raise BundleVerificationError(f"{bundle / WEIGHTS_RELPATH} is missing: {NO_WEIGHTS_REASON}")
    return "models/model.pt and configs/inference.json present"


def _metadata(bundle: Path) -> dict[str, Any]:
    path = bundle / "configs" / "metadata.json"
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise BundleVerificationError(f"{path}: not valid JSON ({error})") from None


def check_version(bundle: Path) -> str:
    metadata = _metadata(bundle)
    path = bundle / "configs" / "metadata.json"
    for key in ("version", "changelog"):
        if key not in metadata:
            raise BundleVerificationError(f"{path}: {key!r} is missing")
    if metadata["version"] not in metadata["changelog"]:
        raise BundleVerificationError(f"{path}: version {metadata['version']} has no entry in 'changelog'")
    return f"version {metadata['version']} has a changelog entry"


def check_metadata_schema(bundle: Path, schema: Path) -> str:
    import jsonschema

    path = bundle / "configs" / "metadata.json"
    try:
        jsonschema.validate(instance=_metadata(bundle), schema=json.loads(schema.read_text()))
    except jsonschema.ValidationError as error:
        where = "/".join(str(part) for part in error.absolute_path) or "(top level)"
        raise BundleVerificationError(f"{path}: {where}: {error.message}") from None
    return f"metadata validates against {schema.name}"


def _checks(bundle: Path, schema: Path | None) -> Iterator[tuple[str, Callable[[], str]]]:
    yield "large files", lambda: check_large_files(bundle)
    yield "necessary files", lambda: check_necessary_files(bundle)
    yield "preferred files", lambda: check_preferred_files(bundle)
    yield "version", lambda: check_version(bundle)
    if schema is not None:
        yield "metadata schema", lambda: check_metadata_schema(bundle, schema)


def verify_bundle(bundle: str | Path, schema: str | Path | None = None, report: Callable[[str], None] = print) -> None:
    """Run the zoo's minimal checks on ``bundle`` in the zoo's order; raise at the first failure.

    Args:
        bundle: the bundle folder (holding ``configs/metadata.json``).
        schema: the metadata JSON schema file (the one the metadata's ``schema`` URL names); ``None`` skips it.
        report: called with one line per passed check.

    Raises:
        BundleVerificationError: naming the file at fault and the reason.
    """
    bundle = Path(bundle)
    if not bundle.is_dir():
        raise BundleVerificationError(f"{bundle}: not a bundle folder")
    for name, check in _checks(bundle, Path(schema) if schema is not None else None):
        report(f"{name}: {check()}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nnmamba_monai.verify_bundle", description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle", type=Path, help="bundle folder")
    parser.add_argument("--schema", type=Path, default=None, help="metadata JSON schema file (offline copy)")
    args = parser.parse_args(argv)
    try:
        verify_bundle(args.bundle, args.schema)
    except BundleVerificationError as error:
        print(f"FAILED: {error}", file=sys.stderr)
        return 1
    print(f"{args.bundle}: passes the model zoo's minimal checks")
    return 0


if __name__ == "__main__":
    sys.exit(main())

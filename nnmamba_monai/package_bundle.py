"""Zip a bundle with its trained weights for ``python -m monai.bundle download``.

    python -m nnmamba_monai.package_bundle --bundle bundles/brats_nnmamba_segmentation \\
        --weights runs/brats/model.pt --output dist/ --url https://example.org/brats_model.pt

Writes ``<output>/<bundle name>_v<version>.zip`` whose single top-level folder is the bundle (the layout
``monai.bundle download --name <bundle name> --url`` expects), with ``models/model.pt`` inside and
``large_files.yml`` listing that file with its SHA-256 (so ``monai.bundle download_large_files`` can fetch
and verify it from ``--url`` when the zip is shipped without weights, ``--exclude_weights``; with the weights
inside, the same command only checks their hash). Prints and writes ``<zip>.sha256`` (``sha256sum -c``
format). The weights must be a plain state_dict readable with ``torch.load(..., weights_only=True)``.

The zip holds an allow-list, not the bundle folder minus a deny-list: ``LICENSE``, ``large_files.yml`` (rewritten),
``docs/`` (``*.md``, ``*.txt``), ``configs/`` (``*.json``, ``*.yaml``, ``*.yml``, ``*.conf``) without datalists
(``configs/datalist*``: local paths, subject ids), ``scripts/**/*.py``, and one weights file, ``models/model.pt``
(the one given by ``--weights``; no resume state ``last.pt``, no TorchScript ``model.ts``, nothing under
``models/<task>/``), with ``models/network.json`` when it sits beside the weights file (the network settings the
weights were trained with). With ``--exclude_weights`` no weights file of any kind is inside. ``configs/metadata.json``
is rewritten to say which weights the zip ships (``trained_weights``: path, SHA-256, whether inside the zip, url)
instead of "ships no trained weights".

The zip is self-contained: the layers a bundle folder shares with others in this repository (files linked from
``bundles/_shared/``: the AMOS family configs, the multi-GPU fragments, logging.conf) are written into it as
plain files, and packaging refuses a config that imports another file with a ``%path#id`` macro (MONAI
resolves that path against the working directory, so it would not travel with the zip).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import BinaryIO

import torch
import yaml

from nnmamba_monai.atomic import atomic_write
from nnmamba_monai.bundle_config import NETWORK_SETTINGS
from nnmamba_monai.checkpoint import load_weights_only
from nnmamba_monai.command_line import command_parser
from nnmamba_monai.file_digest import file_digest

__all__ = [
    "allowed_member",
    "check_self_contained",
    "check_state_dict_file",
    "package_bundle",
    "without_no_weights_sentences",
]

WEIGHTS_RELPATH = "models/model.pt"
SETTINGS_RELPATH = f"models/{NETWORK_SETTINGS}"
# what a released bundle may hold, as (folder, file name patterns); everything else stays home (run outputs,
# datalists with local paths and subject ids, resume states, TorchScript exports, a training's lock file)
_ALLOWED_TOP = ("LICENSE", "large_files.yml")
_ALLOWED_UNDER = {
    "docs": (".md", ".txt"),
    "configs": (".json", ".yaml", ".yml", ".conf"),
    "scripts": (".py",),
}
_DATALIST = re.compile(r"^datalist.*", re.IGNORECASE)
_WEIGHT_SUFFIXES = (".pt", ".pth", ".ts", ".ckpt", ".onnx", ".safetensors", ".bin", ".engine")
_NO_WEIGHTS = re.compile(r"\bno trained weights\b", re.IGNORECASE)
_SENTENCE_END = re.compile(r"(?<=\.)\s+")


def _bundle_version(bundle: Path) -> str:
    meta = bundle / "configs" / "metadata.json"
    if not meta.is_file():
        raise FileNotFoundError(f"{bundle} is not a MONAI bundle: {meta} is missing")
    return str(json.loads(meta.read_text()).get("version", "0.0.0"))


def _file_macros(node: object) -> list[str]:
    """``%path/to/file.json#id`` strings in a config tree (a bare ``%id`` stays inside its own file)."""
    from monai.bundle import ConfigParser

    if isinstance(node, dict):
        return [m for value in node.values() for m in _file_macros(value)]
    if isinstance(node, list):
        return [m for value in node for m in _file_macros(value)]
    is_macro = isinstance(node, str) and node.startswith("%")
    return [node] if is_macro and ConfigParser.split_path_id(node[1:])[0] else []


def check_self_contained(bundle: str | os.PathLike) -> None:
    """Raise ValueError if ``bundle`` holds a link or a config that imports a file with a ``%`` macro."""
    bundle = Path(bundle)
    links = [str(p.relative_to(bundle)) for p in bundle.rglob("*") if p.is_symlink()]
    if links:
        raise ValueError(f"{bundle} is not self-contained: links {links}")
    for config in sorted((bundle / "configs").glob("*.json")):
        macros = _file_macros(json.loads(config.read_text()))
        if macros:
            raise ValueError(f"{config} imports other files with {macros}: inline them, the zip must run on its own")


def allowed_member(relpath: str, with_weights: bool = True) -> bool:
    """Whether a file at ``relpath`` (posix, relative to the bundle folder) belongs in a packaged bundle."""
    parts = relpath.split("/")
    if relpath == WEIGHTS_RELPATH:
        return with_weights
    if relpath == SETTINGS_RELPATH:  # the network settings of the weights (nnmamba_monai.bundle_config)
        return True
    if len(parts) == 1:
        return relpath in _ALLOWED_TOP
    suffixes = _ALLOWED_UNDER.get(parts[0])
    if suffixes is None or not parts[-1].endswith(suffixes) or parts[-1].endswith(_WEIGHT_SUFFIXES):
        return False
    if "__pycache__" in parts or any(part.startswith(".") for part in parts):
        return False
    return not (parts[0] == "configs" and _DATALIST.match(parts[-1]))


def without_no_weights_sentences(text: str) -> str:
    """``text`` without its sentences saying there are no trained weights (sentences end with ". ")."""
    return " ".join(part for part in _SENTENCE_END.split(text) if not _NO_WEIGHTS.search(part)).strip()


def _ship_metadata(meta_path: Path, sha256: str, url: str, included: bool) -> None:
    """Say in ``metadata.json`` which weights the zip ships (the source bundle says it ships none)."""
    meta = json.loads(meta_path.read_text())
    where = "inside the zip" if included else f"not inside the zip: fetch it with download_large_files from {url}"
    sentence = f"Trained weights: {WEIGHTS_RELPATH}, sha256 {sha256}, {where}."
    for section in meta.values():  # the authors' reported scores: "NOT reproduced by this bundle, which ..."
        if isinstance(section, dict) and isinstance(section.get("note"), str):
            section["note"] = section["note"].replace("which ships no trained weights", "whose weights are its own")
    for key, value in meta.items():  # the changelog keeps its history
        if key != "changelog" and isinstance(value, str):
            meta[key] = without_no_weights_sentences(value)
    meta["description"] = f"{meta.get('description', '')} {sentence}".strip()
    meta["trained_weights"] = {"path": WEIGHTS_RELPATH, "sha256": sha256, "included": included, "url": url}
    meta_path.write_text(json.dumps(meta, indent=4) + "\n")


def check_state_dict_file(path: str | os.PathLike) -> int:
    """Number of tensors in a state_dict file; raises ValueError unless it is a weights-only dict of tensors.

    Users load ``models/model.pt`` with MONAI's ``CheckpointLoader``; a file that needs pickled code
    (a whole module, a trainer object) would not load with ``weights_only=True`` there.
    """
    state = load_weights_only(path)
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        kind = type(state).__name__ if not isinstance(state, dict) else f"dict with keys {sorted(map(str, state))[:8]}"
        raise ValueError(
            f"{path}: expected a plain state_dict (parameter name -> tensor), got a {kind}; "
            "save network.state_dict() (or convert an authors' checkpoint with nnmamba_monai.convert_checkpoint)"
        )
    return len(state)


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
        url: where models/model.pt will be downloadable from (written to large_files.yml). May be empty when the
            zip carries the weights: ``download_large_files`` then only checks the hash of the file present.
        exclude_weights: leave models/model.pt out of the zip (fetch it with download_large_files).
    """
    bundle, weights, output_dir = Path(bundle).resolve(), Path(weights), Path(output_dir)
    if not weights.is_file():
        raise FileNotFoundError(f"weights file not found: {weights}")
    if exclude_weights and not url:
        raise ValueError("exclude_weights needs a url: download_large_files would have nowhere to fetch model.pt from")
    check_state_dict_file(weights)
    version = _bundle_version(bundle)
    output_dir.mkdir(parents=True, exist_ok=True)
    zip_path = output_dir / f"{bundle.name}_v{version}.zip"
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / bundle.name
        staged.mkdir()
        for path in sorted(bundle.rglob("*")):
            relpath = path.relative_to(bundle).as_posix()
            if path.is_file() and relpath not in (WEIGHTS_RELPATH, SETTINGS_RELPATH) and allowed_member(relpath):
                (staged / relpath).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, staged / relpath)  # follows links: shared layers become plain files
        check_self_contained(staged)
        (staged / "models").mkdir(exist_ok=True)
        shutil.copy(weights, staged / WEIGHTS_RELPATH)
        if (weights.parent / NETWORK_SETTINGS).is_file():  # the settings the weights were trained with travel along
            shutil.copyfile(weights.parent / NETWORK_SETTINGS, staged / SETTINGS_RELPATH)
        sha256 = file_digest(staged / WEIGHTS_RELPATH)
        _write_large_files(staged, url, sha256)
        _ship_metadata(staged / "configs" / "metadata.json", sha256, url, included=not exclude_weights)

        def write_zip(stream: BinaryIO) -> None:
            with zipfile.ZipFile(stream, "w", compression=zipfile.ZIP_DEFLATED) as archive:
                for path in sorted(staged.rglob("*")):
                    relpath = path.relative_to(staged).as_posix()
                    if path.is_file() and allowed_member(relpath, with_weights=not exclude_weights):
                        archive.write(path, f"{bundle.name}/{relpath}")

        atomic_write(zip_path, write_zip)  # never a half-written zip under the final name
    zip_path.with_name(zip_path.name + ".sha256").write_text(f"{file_digest(zip_path)}  {zip_path.name}\n")
    return zip_path


def main(argv: list[str] | None = None) -> None:
    parser = command_parser("nnmamba_monai.package_bundle", __doc__)
    parser.add_argument("--bundle", required=True, type=Path, help="bundle folder, e.g. bundles/<name>")
    parser.add_argument("--weights", required=True, type=Path, help="trained state_dict (torch.save) to ship")
    parser.add_argument("--output", default=Path("dist"), type=Path, help="folder for the zip (default: dist)")
    parser.add_argument("--url", default="", help="download URL of models/model.pt for large_files.yml")
    parser.add_argument("--exclude_weights", action="store_true", help="do not put model.pt in the zip")
    args = parser.parse_args(argv)
    try:
        zip_path = package_bundle(args.bundle, args.weights, args.output, args.url, args.exclude_weights)
    except (FileNotFoundError, ValueError) as err:
        parser.exit(2, f"package_bundle: error: {err}\n")
    print(f"wrote {zip_path}")
    print(zip_path.with_name(zip_path.name + ".sha256").read_text().strip())


if __name__ == "__main__":
    main()

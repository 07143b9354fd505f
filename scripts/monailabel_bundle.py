"""Put one of our bundles into a MONAI Label ``monaibundle`` app, ready for ``--conf models NAME``.

    python scripts/monailabel_bundle.py bundles/amos_ct_nnmamba_segmentation apps/monaibundle

copies the bundle to ``apps/monaibundle/model/amos_ct_nnmamba_segmentation`` (the folder the monaibundle app
looks in before it would try the model zoo) and writes the inference config MONAI Label reads there. MONAI
Label 0.8.5 reads ``configs/inference.json`` only, with the ids ``network_def``, ``pre_transforms`` (else
``preprocessing``), ``inferer`` and ``post_transforms`` (else ``postprocessing``); a bundle that needs other
values for MONAI Label than for ``monai.bundle run`` keeps them in ``configs/monailabel_infer.json``, which
this script applies on top of the copy's ``configs/inference.json``, written with the bundle's metadata
as ``_meta_``. Each key of an override file is a
config id (nested ids with ``::``) whose value replaces that id, as in ``ConfigParser.update``. The bundle
folder itself is not changed; ``--override FILE`` applies further files after it (a smaller ``patch_size``,
say).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from monai.bundle import ConfigParser

MONAILABEL_OVERRIDE = "configs/monailabel_infer.json"
INFERENCE_CONFIG = "configs/inference.json"
SKIPPED = ("eval", "logs", "__pycache__", "*.pyc")


def merged_inference_config(bundle_dir: Path, overrides: Sequence[Path] = ()) -> dict:
    """``configs/inference.json`` of ``bundle_dir`` with its ``monailabel_infer.json`` and ``overrides`` applied."""
    parser = ConfigParser()
    parser.read_config(str(bundle_dir / INFERENCE_CONFIG))
    # kept in the written config: MONAI Label reads inference.json alone, and a shared config can read the
    # bundle's metadata (the AMOS family picks its intensity normalisation by the metadata's input modality)
    parser.read_meta(str(bundle_dir / "configs" / "metadata.json"))
    files = [bundle_dir / MONAILABEL_OVERRIDE] if (bundle_dir / MONAILABEL_OVERRIDE).is_file() else []
    for path in [*files, *overrides]:
        parser.update(json.loads(Path(path).read_text()))
    config = dict(parser.get())
    if not config.get(ConfigParser.meta_key):
        config.pop(ConfigParser.meta_key, None)
    return config


def install_bundle(
    bundle_dir: Path, app_dir: Path, name: str | None = None, overrides: Sequence[Path] = (), force: bool = False
) -> Path:
    """Copy ``bundle_dir`` to ``app_dir/model/NAME`` with the merged inference config; returns the copy."""
    bundle_dir = Path(bundle_dir).resolve()
    if not (bundle_dir / INFERENCE_CONFIG).is_file() or not (bundle_dir / "configs/metadata.json").is_file():
        raise FileNotFoundError(f"{bundle_dir} is not a bundle: configs/inference.json and metadata.json needed")
    target = Path(app_dir).resolve() / "model" / (name or bundle_dir.name)
    if target.exists():
        if not force:
            raise FileExistsError(f"{target} exists (use --force to replace it)")
        shutil.rmtree(target)
    config = merged_inference_config(bundle_dir, overrides)
    shutil.copytree(bundle_dir, target, ignore=shutil.ignore_patterns(*SKIPPED))
    (target / INFERENCE_CONFIG).write_text(json.dumps(config, indent=4) + "\n")
    return target


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle", type=Path, help="bundle folder, e.g. bundles/amos_ct_nnmamba_segmentation")
    parser.add_argument("app", type=Path, help="MONAI Label monaibundle app folder")
    parser.add_argument("--name", help="model name in MONAI Label (default: the bundle folder's name)")
    parser.add_argument("--override", type=Path, action="append", default=[], help="further override file")
    parser.add_argument("--force", action="store_true", help="replace an existing copy")
    args = parser.parse_args(argv)
    target = install_bundle(args.bundle, args.app, args.name, args.override, args.force)
    weights = target / "models" / "model.pt"
    print(f"bundle installed: {target}")
    if not weights.is_file():
        print(f"note: {weights} is missing; MONAI Label skips a bundle without weights", file=sys.stderr)
    print(f"serve it with: --conf models {target.name} --conf zoo_source local")
    return 0


if __name__ == "__main__":
    sys.exit(main())

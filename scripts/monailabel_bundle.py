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
folder itself is not changed; ``--override FILE`` applies further files after it: the override files a
model was trained with (another width, another label set), a smaller ``patch_size``, say. An override id
under ``_meta_`` (``_meta_::network_data_format::outputs::pred::channel_def``) changes the copy's
``metadata.json``, which is where MONAI Label reads the label names.

The weights: the copy's ``models/`` holds one file, ``model.pt``, and it is the file the bundle's own
inference loads (the ``CheckpointLoader`` among the inference ``handlers``; ``models/model.pt`` by default).
MONAI Label 0.8.5 offers every ``models/*.pt`` and takes the one with the shortest name, so a training's
resume state ``last.pt`` next to ``model.pt`` would be served instead, loaded non-strictly (no key matches,
nothing is loaded, every answer is background). The weights must load strictly into the merged config's
``network_def``; a file that does not (another width, another label count, a resume state) is refused with
one line before anything is copied. The copy's ``metadata.json`` says which weights are served (their
SHA-256), and MONAI Label's ``/info`` shows that description.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from monai.bundle import ConfigParser

from nnmamba_monai.file_digest import file_digest
from nnmamba_monai.package_bundle import without_no_weights_sentences

MONAILABEL_OVERRIDE = "configs/monailabel_infer.json"
INFERENCE_CONFIG = "configs/inference.json"
METADATA = "configs/metadata.json"
# MONAI Label's name for the PyTorch weights of a bundle (BundleConstants.model_pytorch)
SERVED_WEIGHTS = "models/model.pt"
SERVED_LOAD_PATH = "$@bundle_root + '/models/model.pt'"
# models/ is not copied wholesale: the served weights are copied on their own
SKIPPED = ("eval", "logs", "models", "__pycache__", "*.pyc")


class WeightsMismatchError(ValueError):
    """The weights the bundle's inference loads do not load strictly into its network (one-line message)."""


def merged_inference_config(bundle_dir: Path, overrides: Sequence[Path] = ()) -> dict:
    """``configs/inference.json`` of ``bundle_dir`` with its ``monailabel_infer.json`` and ``overrides`` applied."""
    parser = ConfigParser()
    parser.read_config(str(bundle_dir / INFERENCE_CONFIG))
    # kept in the written config: MONAI Label reads inference.json alone, and a shared config can read the
    # bundle's metadata (the AMOS family picks its intensity normalisation by the metadata's input modality)
    parser.read_meta(str(bundle_dir / METADATA))
    files = [bundle_dir / MONAILABEL_OVERRIDE] if (bundle_dir / MONAILABEL_OVERRIDE).is_file() else []
    for path in [*files, *overrides]:
        parser.update(json.loads(Path(path).read_text()))
    config = dict(parser.get())
    if not config.get(ConfigParser.meta_key):
        config.pop(ConfigParser.meta_key, None)
    return config


def _checkpoint_loader_index(config: Mapping) -> int | None:
    for index, handler in enumerate(config.get("handlers") or []):
        if isinstance(handler, Mapping) and str(handler.get("_target_", "")).endswith("CheckpointLoader"):
            return index
    return None


def inference_weights(config: Mapping, bundle_dir: Path) -> Path:
    """The weights file the bundle's own inference loads with ``config``.

    ``bundle_root`` is ``bundle_dir``; a relative path is read from the working directory, as by ``monai.bundle
    run``.
    """
    index = _checkpoint_loader_index(config)
    if index is None:
        return bundle_dir / SERVED_WEIGHTS
    parser = ConfigParser(dict(config))
    parser["bundle_root"] = str(bundle_dir)
    path = Path(parser.get_parsed_content(f"handlers::{index}::load_path"))
    return path.resolve()


def _state_dict(checkpoint: object, weights: Path) -> Mapping:
    import torch

    # the bundle's CheckpointLoader ({"model": network}) and MONAI Label both accept a bare state dict or one
    # under "model"; anything else (a training's resume state: network, optimizer, trainer ...) loads nothing
    state = checkpoint.get("model", checkpoint) if isinstance(checkpoint, Mapping) else None
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        keys = sorted(checkpoint)[:5] if isinstance(checkpoint, Mapping) else type(checkpoint).__name__
        raise WeightsMismatchError(
            f"{weights} is not a state dict of the network (top-level keys {keys}): a resume state such as "
            "last.pt cannot be served; use the training's model.pt"
        )
    return state


def check_weights_load(config: Mapping, weights: Path) -> int:
    """Load ``weights`` strictly into ``config``'s ``network_def``; returns the number of parameters loaded.

    Raises :class:`WeightsMismatchError` with one line naming what differs (missing or unexpected keys, the
    first shape mismatch) and how to give the settings the weights were trained with.
    """
    import torch

    checkpoint = torch.load(weights, map_location="cpu", weights_only=True)
    state = _state_dict(checkpoint, weights)
    network = ConfigParser(dict(config)).get_parsed_content("network_def")
    expected = network.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [
        f"{key} {tuple(state[key].shape)} in the file, {tuple(expected[key].shape)} in the network"
        for key in expected
        if key in state and state[key].shape != expected[key].shape
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} network keys missing from the file (first: {missing[0]})")
    if unexpected:
        problems.append(f"{len(unexpected)} file keys not in the network (first: {unexpected[0]})")
    if shapes:
        problems.append(f"{len(shapes)} shape mismatches (first: {shapes[0]})")
    if problems:
        raise WeightsMismatchError(
            f"{weights} does not load into the bundle's network_def: {'; '.join(problems)}. Give the settings "
            "the model was trained with: --override FILE (the training's override files; see docs/monailabel.md)"
        )
    network.load_state_dict(state, strict=True)
    return sum(int(v.numel()) for v in state.values())


def check_labels_match_network(config: Mapping) -> None:
    """Refuse a label list (the metadata's first output ``channel_def``) of another length than the output channels.

    MONAI Label names the labels from ``channel_def``; a model trained with another label set served with the
    bundle's names would label its answers wrongly without any error.
    """
    parser = ConfigParser(dict(config))
    outputs = (config.get(ConfigParser.meta_key) or {}).get("network_data_format", {}).get("outputs", {})
    channel_def = next(iter(outputs.values()), {}).get("channel_def") if outputs else None
    out_channels = None
    for key in ("network_def::out_channels", "network_def::network::out_channels"):
        if key.rsplit("::", 1)[0] in parser and key in parser:
            out_channels = parser.get_parsed_content(key)
            break
    if channel_def and isinstance(out_channels, int) and len(channel_def) != out_channels:
        raise WeightsMismatchError(
            f"the metadata names {len(channel_def)} labels (channel_def) but the network has {out_channels} output "
            "channels: give the label names with an override of _meta_::network_data_format::outputs::pred::"
            "channel_def (see docs/monailabel.md)"
        )


def served_metadata(metadata: dict, weights: Path | None, num_values: int = 0) -> dict:
    """``metadata`` whose ``description`` says which weights are served (or that none are)."""
    metadata = json.loads(json.dumps(metadata))
    description = without_no_weights_sentences(metadata.get("description", ""))
    if weights is None:
        note = "No weights installed: MONAI Label skips this model until models/model.pt exists."
    else:
        note = (
            f"Served weights: models/model.pt, sha256 {file_digest(weights)} ({num_values} values), copied from "
            f"{weights.name} by scripts/monailabel_bundle.py."
        )
    metadata["description"] = f"{description} {note}".strip()
    return metadata


def install_bundle(
    bundle_dir: Path, app_dir: Path, name: str | None = None, overrides: Sequence[Path] = (), force: bool = False
) -> Path:
    """Copy ``bundle_dir`` to ``app_dir/model/NAME`` with the merged inference config; returns the copy.

    The copy's ``models/`` holds only ``model.pt``: the weights the bundle's inference loads, checked to load
    strictly (:class:`WeightsMismatchError` otherwise, raised before anything is written).
    """
    bundle_dir = Path(bundle_dir).resolve()
    if not (bundle_dir / INFERENCE_CONFIG).is_file() or not (bundle_dir / METADATA).is_file():
        raise FileNotFoundError(f"{bundle_dir} is not a bundle: configs/inference.json and metadata.json needed")
    target = Path(app_dir).resolve() / "model" / (name or bundle_dir.name)
    if target.exists() and not force:
        raise FileExistsError(f"{target} exists (use --force to replace it)")
    config = merged_inference_config(bundle_dir, overrides)
    check_labels_match_network(config)
    weights = inference_weights(config, bundle_dir)
    num_values = check_weights_load(config, weights) if weights.is_file() else 0
    metadata = config.get(ConfigParser.meta_key) or json.loads((bundle_dir / METADATA).read_text())
    metadata = served_metadata(metadata, weights if weights.is_file() else None, num_values)
    config[ConfigParser.meta_key] = metadata
    index = _checkpoint_loader_index(config)
    if index is not None:
        # the copy's own evaluator loads the copied weights, wherever the original ones were
        config["handlers"][index]["load_path"] = SERVED_LOAD_PATH
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(bundle_dir, target, ignore=shutil.ignore_patterns(*SKIPPED))
    (target / "models").mkdir()
    if weights.is_file():
        shutil.copyfile(weights, target / SERVED_WEIGHTS)
    (target / INFERENCE_CONFIG).write_text(json.dumps(config, indent=4) + "\n")
    (target / METADATA).write_text(json.dumps(metadata, indent=4) + "\n")
    return target


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle", type=Path, help="bundle folder, e.g. bundles/amos_ct_nnmamba_segmentation")
    parser.add_argument("app", type=Path, help="MONAI Label monaibundle app folder")
    parser.add_argument("--name", help="model name in MONAI Label (default: the bundle folder's name)")
    parser.add_argument(
        "--override",
        type=Path,
        action="append",
        default=[],
        help="further override file, e.g. the ones the model was trained with (repeatable, applied in order)",
    )
    parser.add_argument("--force", action="store_true", help="replace an existing copy")
    args = parser.parse_args(argv)
    try:
        target = install_bundle(args.bundle, args.app, args.name, args.override, args.force)
    except (WeightsMismatchError, FileExistsError, FileNotFoundError) as error:
        print(f"{type(error).__name__}: {error}", file=sys.stderr)
        return 1
    weights = target / SERVED_WEIGHTS
    print(f"bundle installed: {target}")
    if not weights.is_file():
        print(f"note: {weights} is missing; MONAI Label skips a bundle without weights", file=sys.stderr)
    print(f"serve it with: --conf models {target.name} --conf zoo_source local")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Put a checkpoint saved by the nnMamba authors' code into one of our bundles.

    python -m nnmamba_monai.convert_checkpoint --checkpoint model_final_checkpoint.model \\
        --bundle bundles/brats_nnmamba_segmentation [--output my_brats_bundle]

Reads the checkpoint with ``weights_only=True`` (nnU-Net v1 trainer file with 'state_dict', a plain
state_dict, 'module.'-prefixed keys, ...), infers the network (MICCSS or MIC segmentation generation, with or
without deep-supervision heads, or classification; channels, width, blocks, state size), checks that its
input and output channels are those of the bundle, then writes into the bundle (or into a copy at
``--output``):

- ``models/model.pt``: the plain state_dict (written to a temporary file, then renamed);
- ``configs/authors_checkpoint.json``: an override setting ``network_def`` to the inferred architecture
  (``out_relu`` true for segmentation: the authors' networks end in ReLU).

It then loads ``models/model.pt`` strictly into ``network_def`` parsed from the bundle's inference config with
the override, runs it once on a zero input of the bundle's input shape, and prints the inference command::

    python -m monai.bundle run --config_file "['configs/inference.json','configs/authors_checkpoint.json']"
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn as nn

from nnmamba_monai.atomic import atomic_torch_save, atomic_write
from nnmamba_monai.checkpoint import (
    extract_state_dict,
    infer_network_config,
    load_authors_checkpoint,
    load_weights_only,
)
from nnmamba_monai.command_line import command_parser

if TYPE_CHECKING:
    from monai.bundle import ConfigParser

__all__ = [
    "OVERRIDE_RELPATH",
    "WEIGHTS_RELPATH",
    "BundleNetwork",
    "CheckpointMismatchError",
    "bundle_network",
    "check_compatible",
    "convert_checkpoint",
    "network_override",
    "verify_converted_bundle",
]

WEIGHTS_RELPATH = "models/model.pt"
OVERRIDE_RELPATH = "configs/authors_checkpoint.json"
INFERENCE_CONFIG = "configs/inference.json"
# the tensor whose shape carries each channel count, per network class
_IN_KEY = "in_conv.conv.0.weight"
_OUT_KEYS = {"nnMambaSeg": "conv8.conv.0.weight", "nnMambaCls": "mlp.3.weight"}


class CheckpointMismatchError(ValueError):
    """The checkpoint's network does not fit the bundle (class, input or output channels)."""


@dataclass(frozen=True)
class BundleNetwork:
    """What a bundle's ``network_def`` and metadata say about its network.

    Attributes:
        name: bundle folder name.
        target: ``network_def#_target_`` as written (e.g. "nnmamba_monai.networks.nnMambaSeg").
        raw: ``network_def`` as written in the config (references unresolved).
        in_channels, out_channels: the resolved ``network_def#in_channels`` / ``#out_channels``.
        input_shape: (1, in_channels, *spatial) for a dry run, from the metadata's first input
            (``"16*n"`` sizes with n=2).
    """

    name: str
    target: str
    raw: dict
    in_channels: int
    out_channels: int
    input_shape: tuple[int, ...]

    @property
    def class_name(self) -> str:
        return self.target.rsplit(".", 1)[-1]


def _parser(bundle: Path, config_files: list[Path]) -> ConfigParser:
    """The bundle's configs (later files override earlier ones) and metadata, with ``bundle_root`` set."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config([str(f) for f in config_files])
    parser.read_meta(str(bundle / "configs" / "metadata.json"))
    parser["bundle_root"] = str(bundle)
    return parser


def _spatial_size(value: int | str, n: int = 2) -> int:
    """A metadata spatial size: an int, or an expression of ``n`` such as "16*n" (numbers and * only)."""
    if isinstance(value, int):
        return value
    text = str(value).replace(" ", "")
    product = 1
    for factor in text.split("*"):
        product *= n if factor == "n" else int(factor)
    return product


def bundle_network(bundle: str | os.PathLike, config_file: str = INFERENCE_CONFIG) -> BundleNetwork:
    """Read a bundle's ``network_def`` (class, resolved channel counts) and its metadata's input shape."""
    bundle = Path(bundle).resolve()
    config = bundle / config_file
    if not config.is_file():
        raise FileNotFoundError(f"{bundle} is not a MONAI bundle with {config_file}")
    parser = _parser(bundle, [config])
    raw = parser.get("network_def")
    if not isinstance(raw, Mapping) or "_target_" not in raw:
        raise ValueError(f"{config}: 'network_def' is not a component with a _target_")
    inputs = parser.get("_meta_#network_data_format#inputs") or {}
    first = next(iter(inputs.values()), {})
    in_channels = int(parser.get_parsed_content("network_def#in_channels"))
    spatial = tuple(_spatial_size(s) for s in first.get("spatial_shape", [32, 32, 32]))
    return BundleNetwork(
        name=bundle.name,
        target=str(raw["_target_"]),
        raw=dict(raw),
        in_channels=in_channels,
        out_channels=int(parser.get_parsed_content("network_def#out_channels")),
        input_shape=(1, in_channels, *spatial),
    )


def check_compatible(state: Mapping[str, torch.Tensor], spec: dict, bundle: BundleNetwork, source: str) -> None:
    """Raise CheckpointMismatchError naming the key, its shape and the bundle's expectation when the checkpoint's
    network class or channel counts differ from the bundle's ``network_def``."""
    class_name = spec["class"].__name__
    if class_name != bundle.class_name:
        raise CheckpointMismatchError(
            f"{source} holds a {class_name} but bundle {bundle.name} builds {bundle.target} (network_def#_target_)"
        )
    out_key = _OUT_KEYS[class_name]
    checks = (
        (_IN_KEY, 1, spec["kwargs"]["in_channels"], bundle.in_channels, "input", "network_def#in_channels"),
        (out_key, 0, spec["kwargs"]["out_channels"], bundle.out_channels, "output", "network_def#out_channels"),
    )
    for key, dim, found, expected, role, bundle_key in checks:
        if found != expected:
            raise CheckpointMismatchError(
                f"{source}: '{key}' has shape {tuple(state[key].shape)}, i.e. {found} {role} channels (dim {dim}), "
                f"but bundle {bundle.name} expects {expected} ({bundle_key}); this checkpoint was trained for "
                f"another task and cannot be used with this bundle's pre/post-processing"
            )


def network_override(spec: dict, bundle: BundleNetwork) -> dict:
    """The ``network_def`` for the override config: the bundle's own entries (e.g. ``backend``), replaced by the
    inferred architecture; ``out_relu`` true for segmentation networks, as the authors' networks are built."""
    kwargs = dict(spec["kwargs"])
    if spec["class"].__name__ == "nnMambaSeg":
        kwargs["out_relu"] = True
    return {"_target_": bundle.target, **{k: v for k, v in bundle.raw.items() if k != "_target_"}, **kwargs}


def verify_converted_bundle(bundle: str | os.PathLike, config_file: str = INFERENCE_CONFIG) -> tuple[int, ...]:
    """Strictly load ``models/model.pt`` into ``network_def`` parsed with the override and run it once (eval mode,
    no gradients) on zeros of the bundle's input shape; returns the output shape."""
    bundle = Path(bundle).resolve()
    parser = _parser(bundle, [bundle / config_file, bundle / OVERRIDE_RELPATH])
    network: nn.Module = parser.get_parsed_content("network_def")
    network.load_state_dict(torch.load(bundle / WEIGHTS_RELPATH, map_location="cpu", weights_only=True), strict=True)
    shape = bundle_network(bundle, config_file).input_shape
    with torch.no_grad():
        output = network.eval()(torch.zeros(shape))
    return tuple(output.shape)


def convert_checkpoint(
    checkpoint: str | os.PathLike,
    bundle: str | os.PathLike,
    output: str | os.PathLike | None = None,
    overwrite: bool = False,
    config_file: str = INFERENCE_CONFIG,
) -> Path:
    """Write the checkpoint's weights and architecture override into ``bundle`` (or a copy at ``output``).

    Args:
        checkpoint: a file saved by the authors' code (see :func:`nnmamba_monai.load_authors_checkpoint`).
        bundle: the bundle folder whose network the checkpoint must fit.
        output: a new folder to copy the bundle to and write into, leaving ``bundle`` as it is.
        overwrite: replace an existing ``models/model.pt`` (refused otherwise).
        config_file: the bundle config whose ``network_def`` is checked.

    Returns the folder written to. Raises CheckpointMismatchError when the checkpoint does not fit.
    """
    source = os.fspath(checkpoint)
    bundle_network_ = bundle_network(bundle, config_file)
    if not os.path.isfile(source):
        raise FileNotFoundError(f"checkpoint file not found: {source}")
    raw = load_weights_only(source)
    state = extract_state_dict(raw, source)
    spec = infer_network_config(state, source)
    check_compatible(state, spec, bundle_network_, source)
    network = load_authors_checkpoint(state)  # strict load into the inferred architecture

    target = Path(bundle).resolve()
    if output is not None:
        destination = Path(output).resolve()
        if destination.exists() and any(destination.iterdir()):
            raise FileExistsError(f"--output {destination} exists and is not empty")
        shutil.copytree(target, destination, dirs_exist_ok=True)
        target = destination
    weights = target / WEIGHTS_RELPATH
    if weights.exists() and not overwrite:
        raise FileExistsError(f"{weights} exists; pass --overwrite to replace it, or --output to write a copy")
    override = {"network_def": network_override(spec, bundle_network_)}
    atomic_torch_save(network.state_dict(), weights)
    override_text = (json.dumps(override, indent=4) + "\n").encode()
    atomic_write(target / OVERRIDE_RELPATH, lambda stream: stream.write(override_text))
    return target


def inference_command(bundle: str | os.PathLike, config_file: str = INFERENCE_CONFIG) -> str:
    """The ``monai.bundle run`` command line that runs the bundle's inference with the converted weights."""
    configs = f"\"['{config_file}','{OVERRIDE_RELPATH}']\""
    return (
        f"cd {os.fspath(bundle)} && python -m monai.bundle run --config_file {configs} "
        "--meta_file configs/metadata.json --logging_file configs/logging.conf --dataset_dir <your data folder>"
    )


def main(argv: list[str] | None = None) -> None:
    parser = command_parser("nnmamba_monai.convert_checkpoint", __doc__)
    parser.add_argument("--checkpoint", required=True, type=Path, help="file saved by the authors' code")
    parser.add_argument("--bundle", required=True, type=Path, help="bundle folder, e.g. bundles/<name>")
    parser.add_argument("--output", type=Path, help="write into a copy of the bundle at this new folder")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing models/model.pt")
    parser.add_argument("--config_file", default=INFERENCE_CONFIG, help=f"config to check (default {INFERENCE_CONFIG})")
    parser.add_argument("--skip_dry_run", action="store_true", help="do not run the network once after converting")
    args = parser.parse_args(argv)
    try:
        target = convert_checkpoint(args.checkpoint, args.bundle, args.output, args.overwrite, args.config_file)
        override = json.loads((target / OVERRIDE_RELPATH).read_text())["network_def"]
        print(f"wrote {target / WEIGHTS_RELPATH} and {target / OVERRIDE_RELPATH}")
        print(f"network_def: {json.dumps(override)}")
        if not args.skip_dry_run:
            shape = bundle_network(target, args.config_file).input_shape
            print(f"dry run: input {shape} -> output {verify_converted_bundle(target, args.config_file)}")
    except (FileNotFoundError, FileExistsError, ValueError) as err:
        parser.exit(2, f"convert_checkpoint: error: {err}\n")
    print(f"inference with these weights:\n  {inference_command(target, args.config_file)}")


if __name__ == "__main__":
    main()

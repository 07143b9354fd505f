"""The cases and expectations of a bundle, read from its train config and metadata as training would read them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from monai.bundle import ConfigParser

from nnmamba_monai.check_data.spec import DataSpec
from nnmamba_monai.datalist.schema import read_datalist_json, validate_datalist

__all__ = ["ENTRIES_ID", "LABELS_ID", "bundle_cases"]

ENTRIES_ID = "data_check_entries"  # train-config id: the datalist entries training reads (train + validation)
LABELS_ID = "data_label_values"  # train-config id: allowed label values or class labels (null: unchecked)


def bundle_cases(
    bundle_dir: str | Path,
    dataset_dir: str | Path,
    config_file: str = "configs/train.json",
    datalist_file: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
) -> tuple[list[dict], DataSpec]:
    """The datalist entries and the :class:`DataSpec` of ``bundle_dir`` on ``dataset_dir``.

    Raises:
        FileNotFoundError: the config, metadata or datalist file is missing (the message says how to build one).
        DatalistSchemaError: the datalist's structure is wrong (a section that is not a list, an entry without a
            key the bundle reads, a value of the wrong type); the message names the file, entry and key.
    """
    bundle_dir = Path(bundle_dir)
    config_path, meta_path = bundle_dir / config_file, bundle_dir / "configs" / "metadata.json"
    for path in (config_path, meta_path):
        if not path.is_file():
            raise FileNotFoundError(f"bundle file not found: {path}")
    parser = ConfigParser()
    parser.read_config(str(config_path))
    settings = {"bundle_root": str(bundle_dir), "dataset_dir": str(dataset_dir), **(overrides or {})}
    if datalist_file is not None:
        settings["datalist_file"] = str(datalist_file)
    for key, value in settings.items():
        parser[key] = value
    datalist = Path(parser.get_parsed_content("datalist_file"))
    if not datalist.is_file():
        raise FileNotFoundError(
            f"datalist not found: {datalist}; build it with python -m nnmamba_monai.datalist (see the bundle's "
            "docs/README.md) or pass --datalist_file"
        )
    labels = parser.get_parsed_content(LABELS_ID) if LABELS_ID in parser else None
    spec = DataSpec.from_metadata(json.loads(meta_path.read_text()), labels)
    # before MONAI's loader, which fails on a bad structure with a TypeError naming neither the entry nor the key
    validate_datalist(read_datalist_json(datalist), spec.required_keys, str(datalist), label_kind=spec.label_kind)
    entries = list(parser.get_parsed_content(ENTRIES_ID))
    return entries, spec

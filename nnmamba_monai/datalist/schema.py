"""The structure of a datalist: sections are lists of entries, entries are objects with the keys a bundle reads.

A decathlon-style datalist (``{"training": [{"image": ..., "label": ...}, ...], "validation": [...],
"testing": [...]}``) is checked before anything uses it, so that an entry without ``"label"``, an ``"image": 5``
or a ``"training"`` given as a string fails with one line naming the file, the entry and the key rather than
with a ``KeyError``/``TypeError`` deep inside MONAI. Only the structure is checked here (keys and JSON types);
whether the files exist and hold sensible voxels is ``nnmamba_monai.check_data``'s job.
"""

from __future__ import annotations

import json
import numbers
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from nnmamba_monai.refusal import RefusalError

__all__ = [
    "LABELLED_SECTIONS",
    "UNLABELLED_SECTIONS",
    "DatalistSchemaError",
    "entry_problem",
    "load_checked_datalist",
    "read_datalist_json",
    "validate_datalist",
    "validate_entries",
]

LABELLED_SECTIONS = ("training", "validation")  # entries need every required key
UNLABELLED_SECTIONS = ("testing", "test")  # entries need only "image"; MSD also allows bare image paths here


class DatalistSchemaError(RefusalError, ValueError):
    """The datalist's structure is wrong; the message names the file, the entry and the key."""


def _is_path(value: Any) -> bool:
    return isinstance(value, (str, os.PathLike)) and str(value) != ""


def _is_paths(value: Any) -> bool:
    """One path, or a non-empty list of paths (per-channel files)."""
    if isinstance(value, (list, tuple)):
        return bool(value) and all(_is_path(v) for v in value)
    return _is_path(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_class_label(value: Any) -> bool:
    """A class number (or a list of numbers: one-hot / multi-label)."""
    if isinstance(value, (list, tuple)):
        return bool(value) and all(_is_number(v) for v in value)
    return _is_number(value)


def _is_points(value: Any) -> bool:
    """A list of (x, y, z) coordinates."""
    return isinstance(value, (list, tuple)) and all(
        isinstance(p, (list, tuple)) and len(p) == 3 and all(_is_number(c) for c in p) for p in value
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


# key -> (test, what the key must hold); keys not listed may hold anything
KEY_TYPES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "image": (_is_paths, "a file path or a non-empty list of file paths"),
    "label": (lambda v: _is_paths(v) or _is_class_label(v), "a label-map path or a class number"),
    "landmarks": (_is_points, "a list of [x, y, z] coordinates"),
    "fold": (_is_int, "an integer"),
}
LABEL_TYPES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "map": (_is_paths, "a label-map file path"),
    "class": (_is_class_label, "a class number"),
}


def _describe(value: Any) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, os.PathLike) else repr(value)
    return f"{type(value).__name__} {text if len(text) <= 60 else text[:57] + '...'}"


def _entry_name(section: str | None, index: int, entry: Any) -> str:
    where = f"{section}[{index}]" if section else f"entry {index}"
    if isinstance(entry, Mapping):
        for key in ("case", "case_id", "subject"):
            if isinstance(entry.get(key), (str, int)) and entry[key] != "":
                return f"{where} (case {entry[key]})"
        image = entry.get("image")
        first = image[0] if isinstance(image, (list, tuple)) and image else image
        if _is_path(first):
            return f"{where} ({Path(first).name})"
    return where


def entry_problem(entry: Any, required_keys: Sequence[str], label_kind: str | None = None) -> str | None:
    """What is wrong with one entry's structure (missing key, wrong type), or None."""
    if not isinstance(entry, Mapping):
        return f'is {_describe(entry)}, an object such as {{"image": ...}} is needed'
    missing = [key for key in required_keys if key not in entry]
    if missing:
        return f"has no key {', '.join(repr(k) for k in missing)} (keys: {sorted(map(str, entry))})"
    for key, value in entry.items():
        check = LABEL_TYPES[label_kind] if key == "label" and label_kind in LABEL_TYPES else KEY_TYPES.get(key)
        if check is not None and not check[0](value):
            return f"key {key!r} is {_describe(value)}; it must be {check[1]}"
    return None


def validate_entries(
    entries: Any,
    required_keys: Sequence[str] = ("image",),
    source: str = "datalist",
    section: str | None = None,
    label_kind: str | None = None,
) -> None:
    """Raise :class:`DatalistSchemaError` unless ``entries`` is a list of objects that hold ``required_keys``
    with values of the right JSON type (``label_kind``: "map" for a label-map path, "class" for a number).

    The message names ``source`` (the file), the section, the entry's index (and case or image name) and the key.
    """
    where = f"{source}: {section!r}" if section else source
    if not isinstance(entries, (list, tuple)):
        raise DatalistSchemaError(f"{where} is {_describe(entries)}; it must be a list of entries (objects)")
    for index, entry in enumerate(entries):
        if section in UNLABELLED_SECTIONS and _is_path(entry):
            continue  # MSD style: a bare image path in the test list
        problem = entry_problem(entry, required_keys, label_kind)
        if problem:
            raise DatalistSchemaError(f"{source}: {_entry_name(section, index, entry)} {problem}")


def validate_datalist(
    datalist: Any,
    required_keys: Sequence[str] = ("image",),
    source: str = "datalist",
    sections: Sequence[str] | None = None,
    label_kind: str | None = None,
) -> None:
    """Check a whole datalist (the JSON object) or one list of entries.

    Args:
        datalist: ``{"training": [...], "validation": [...], ...}`` or a list of entries.
        required_keys: keys every entry of a labelled section ("training", "validation") must hold; entries of
            "testing"/"test" need only "image".
        source: the file (or other origin) the messages name.
        sections: sections that must be present (default: "training"); the others are checked when present.
        label_kind: "map" (label-map path), "class" (class number) or None (either).

    Raises:
        DatalistSchemaError: one line naming ``source``, the section, the entry and the key.
    """
    if not isinstance(datalist, Mapping):
        if isinstance(datalist, (list, tuple)):
            validate_entries(datalist, required_keys, source, None, label_kind)
            return
        raise DatalistSchemaError(
            f'{source} holds {_describe(datalist)}; a JSON object with a "training" list of entries is needed'
        )
    for section in sections if sections is not None else ("training",):
        if section not in datalist:
            raise DatalistSchemaError(f"{source} has no {section!r} list (keys: {sorted(map(str, datalist))})")
    for section in (*LABELLED_SECTIONS, *UNLABELLED_SECTIONS):
        if section in datalist:
            keys = required_keys if section in LABELLED_SECTIONS else ("image",)
            validate_entries(datalist[section], keys, source, section, label_kind)


def read_datalist_json(path: str | Path) -> Any:
    """The parsed JSON of a datalist file; a file that is not valid JSON raises :class:`DatalistSchemaError`."""
    try:
        return json.loads(Path(path).read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DatalistSchemaError(f"{path} is not valid JSON: {error}") from None


def load_checked_datalist(
    datalist_file: str | Path,
    data_list_key: str = "training",
    base_dir: str | Path | None = None,
    required_keys: Sequence[str] = ("image",),
    is_segmentation: bool = True,
    label_kind: str | None = None,
) -> list[dict]:
    """MONAI's ``load_decathlon_datalist`` after :func:`validate_datalist`: a config that loads its datalist with
    this (``"$nnmamba_monai.datalist.schema.load_checked_datalist(@datalist_file, 'training', @dataset_dir,
    ['image', 'label'])"``) gets a one-line :class:`DatalistSchemaError` for a malformed file instead of MONAI's
    ``TypeError`` (which names neither the entry nor the key)."""
    from monai.data import load_decathlon_datalist

    if not Path(datalist_file).is_file():
        raise DatalistSchemaError(f"datalist not found: {datalist_file}")
    validate_datalist(
        read_datalist_json(datalist_file), required_keys, str(datalist_file), (data_list_key,), label_kind
    )
    return load_decathlon_datalist(datalist_file, is_segmentation, data_list_key, base_dir)

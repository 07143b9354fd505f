"""The checks of one datalist entry (a case): files present and readable, channels, grids, labels, intensities.

An entry is a dict as the bundles read it from their datalist (paths already joined with ``dataset_dir``):
``image`` (a path or a list of per-channel paths), optionally ``label`` (a label-map path, or a class number),
optionally ``landmarks`` ((K, 3) world coordinates, RAS mm), optionally an id under ``case``/``subject``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nnmamba_monai.check_data.findings import Check, Finding, Severity
from nnmamba_monai.check_data.nifti import NiftiFile, channels_of, implausible_size, open_nifti, read_voxels
from nnmamba_monai.check_data.spec import DataSpec
from nnmamba_monai.datalist.schema import entry_problem

__all__ = ["case_id", "check_entries", "check_entry"]

_NIFTI_SUFFIXES = (".nii.gz", ".nii")


def _strip_suffix(name: str) -> str:
    for suffix in _NIFTI_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def case_id(entry: Mapping[str, Any]) -> str:
    """The entry's ``case``/``subject`` field, else the first image's folder (BraTS) or file stem (AMOS, ADNI)."""
    for key in ("case", "case_id", "subject"):
        if entry.get(key) not in (None, ""):
            return str(entry[key])
    images = _image_paths(entry)
    if not images:
        return "?"
    first = images[0]
    return first.parent.name if len(images) > 1 else _strip_suffix(first.name)


def _safe_case_id(entry: Any) -> str:
    try:
        return case_id(entry)
    except (TypeError, AttributeError):
        return "?"


def _image_paths(entry: Mapping[str, Any]) -> list[Path]:
    image = entry.get("image")
    if image is None:
        return []
    return [Path(p) for p in image] if isinstance(image, (list, tuple)) else [Path(image)]


class _CaseChecker:
    """Collects the findings of one entry; ``display`` turns a path into the text of the table's file column."""

    def __init__(self, entry: Mapping[str, Any], spec: DataSpec, headers_only: bool, root: Path | None) -> None:
        self.entry, self.spec, self.headers_only, self.root = entry, spec, headers_only, root
        self.case = case_id(entry)
        self.findings: list[Finding] = []

    def display(self, path: Path) -> str:
        if self.root is not None:
            try:
                return path.resolve().relative_to(self.root.resolve()).as_posix()
            except ValueError:
                pass
        return str(path)

    def add(self, path: Path, check: Check, message: str, severity: Severity = Severity.ERROR) -> None:
        self.findings.append(Finding(self.display(path), self.case, check, severity, message))

    def open(self, path: Path, role: str) -> NiftiFile | None:
        if not path.is_file():
            self.add(path, Check.MISSING_FILE, f"{role} file is missing: {path}")
            return None
        image, problem = open_nifti(path)
        if problem:
            self.add(path, Check.UNREADABLE, f"{role} file {path.name} {problem}")
            return None
        too_large = implausible_size(image, self.spec.max_voxels)
        if too_large:  # no further check of this file: none may read its voxels
            self.add(path, Check.IMPLAUSIBLE_HEADER, f"{role} file {path.name}: {too_large}")
            return None
        return image

    def voxels(self, path: Path, image: NiftiFile) -> np.ndarray | None:
        data, problem = read_voxels(image)
        if problem:
            self.add(path, Check.UNREADABLE, f"{path.name}: {problem}")
        return data

    def same_grid(self, path: Path, image: NiftiFile, ref_path: Path, ref: NiftiFile) -> None:
        if tuple(image.shape[:3]) != tuple(ref.shape[:3]):
            self.add(
                path,
                Check.SHAPE_MISMATCH,
                f"{path.name} has spatial shape {tuple(image.shape[:3])}, {ref_path.name} {tuple(ref.shape[:3])}",
            )
            return
        difference = float(np.abs(image.affine - ref.affine).max())
        if difference > self.spec.affine_tolerance_mm:
            self.add(
                path,
                Check.AFFINE_MISMATCH,
                f"{path.name} affine differs from {ref_path.name}'s by up to {difference:.4g} (mm); "
                f"{np.round(image.affine, 3).tolist()} vs {np.round(ref.affine, 3).tolist()}",
            )

    def check_intensities(self, path: Path, image: NiftiFile) -> None:
        data = self.voxels(path, image)
        if data is None or not np.issubdtype(data.dtype, np.floating):
            return
        finite = np.isfinite(data)
        if not finite.all():
            nan, inf = int(np.isnan(data).sum()), int(np.isinf(data).sum())
            self.add(path, Check.NON_FINITE, f"{path.name} holds {nan} NaN and {inf} Inf voxel(s) of {data.size}")

    def check_label_map(self, path: Path, image: NiftiFile) -> None:
        data = self.voxels(path, image)
        if data is None:
            return
        values = np.unique(data)
        if np.issubdtype(values.dtype, np.floating) and not np.isfinite(values).all():
            self.add(path, Check.NON_FINITE, f"label map {path.name} holds NaN/Inf voxels")
            values = values[np.isfinite(values)]
        allowed = self.spec.label_values
        if allowed is not None:
            bad = [v for v in values.tolist() if v not in allowed]
            if bad:
                shown = ", ".join(f"{v:g}" for v in bad[:10]) + (" ..." if len(bad) > 10 else "")
                self.add(
                    path,
                    Check.LABEL_VALUES,
                    f"label map {path.name} holds values {shown} outside the bundle's label set {list(allowed)}",
                )
        if not (values != 0).any():
            self.add(path, Check.EMPTY_FOREGROUND, f"label map {path.name} has no foreground", Severity.WARNING)

    def check_images(self) -> tuple[Path, NiftiFile] | None:
        """Per-channel files; returns the first readable one (the reference grid) or None."""
        paths = _image_paths(self.entry)
        opened = [(p, self.open(p, "image")) for p in paths]
        readable = [(p, im) for p, im in opened if im is not None]
        if len(readable) == len(paths) and paths:
            channels = sum(channels_of(tuple(im.shape)) for _, im in readable)
            if channels != self.spec.num_channels:
                self.add(
                    paths[0],
                    Check.CHANNELS,
                    f"{len(paths)} image file(s) ({', '.join(p.name for p in paths)}) give {channels} channel(s); "
                    f"the bundle's metadata expects {self.spec.num_channels}",
                )
        if not readable:
            return None
        ref_path, ref = readable[0]
        for path, image in readable[1:]:
            self.same_grid(path, image, ref_path, ref)
        if not self.headers_only:
            for path, image in readable:
                self.check_intensities(path, image)
        return ref_path, ref

    def check_label(self, reference: tuple[Path, NiftiFile] | None) -> None:
        label = self.entry.get("label")
        if label is None:
            return
        if isinstance(label, (str, Path)):
            path = Path(label)
            image = self.open(path, "label")
            if image is None:
                return
            if reference is not None:
                self.same_grid(path, image, *reference)
            if not self.headers_only:
                self.check_label_map(path, image)
            return
        allowed = self.spec.label_values
        value = np.asarray(label).ravel()
        if allowed is not None and (value.size != 1 or float(value[0]) not in allowed):
            where = reference[0] if reference else Path(self.case)
            self.add(where, Check.CLASS_LABEL, f"class label {label!r} is not one of {list(allowed)}")

    def check_landmarks(self, reference: tuple[Path, NiftiFile] | None) -> None:
        if self.spec.num_landmarks is None:
            return
        where = reference[0] if reference else Path(self.case)
        points = np.asarray(self.entry.get("landmarks", []), dtype=float)
        if points.shape != (self.spec.num_landmarks, 3):
            self.add(
                where, Check.LANDMARKS, f"landmarks have shape {points.shape}, ({self.spec.num_landmarks}, 3) expected"
            )
            return
        if not np.isfinite(points).all():
            self.add(where, Check.LANDMARKS, "landmarks hold NaN/Inf coordinates")
            return
        if reference is None:
            return
        image = reference[1]
        voxels = (np.linalg.inv(image.affine) @ np.c_[points, np.ones(len(points))].T).T[:, :3]
        outside = ~((voxels >= -0.5) & (voxels <= np.asarray(image.shape[:3]) - 0.5)).all(axis=1)
        if outside.any():
            self.add(
                where,
                Check.LANDMARKS,
                f"landmark(s) {np.flatnonzero(outside).tolist()} lie outside the image volume (RAS/LPS mix-up?)",
            )


def check_entry(
    entry: Mapping[str, Any], spec: DataSpec, headers_only: bool = False, root: Path | None = None
) -> list[Finding]:
    """All findings of one datalist entry; ``headers_only`` skips the checks that read voxels (label values,
    NaN/Inf, empty foreground, truncated data). File names in the findings are relative to ``root`` if given."""
    problem = entry_problem(entry, spec.required_keys, spec.label_kind)
    if problem:  # the file checks below need the keys and types the schema promises
        return [Finding("-", _safe_case_id(entry), Check.DATALIST_SCHEMA, Severity.ERROR, f"datalist entry {problem}")]
    checker = _CaseChecker(entry, spec, headers_only, Path(root) if root is not None else None)
    reference = checker.check_images()
    checker.check_label(reference)
    checker.check_landmarks(reference)
    return checker.findings


def check_entries(
    entries: Sequence[Mapping[str, Any]], spec: DataSpec, headers_only: bool = False, root: Path | None = None
) -> list[Finding]:
    """:func:`check_entry` over a datalist, in order."""
    return [finding for entry in entries for finding in check_entry(entry, spec, headers_only, root)]

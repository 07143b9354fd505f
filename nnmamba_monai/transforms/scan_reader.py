"""One image reader for every scan format the bundles' inference accepts, chosen by file type.

MONAI's ``LoadImage`` without a reader tries its registered readers by suffix; ITK claims every suffix, so a
FreeSurfer ``.mgz`` goes to ITK, which cannot read it ("Could not create IO object"). :class:`ScanReader`
picks the reader from the path instead:

| input | reader |
|---|---|
| ``.nii``, ``.nii.gz``, ``.mgz``, ``.mgh`` | MONAI ``NibabelReader`` |
| ``.nrrd``, ``.nhdr``, ``.mha``, ``.mhd`` | MONAI ``ITKReader`` |
| a folder (a DICOM series) | MONAI ``ITKReader`` (the folder's series, physical grid and tilt included) |

Both readers put the voxel-to-world matrix in RAS in the metadata's ``affine``, so ``SaveImaged`` writes a
prediction on the input's grid.

NaN and infinite voxels (SPM and other tools write NaN outside the brain or the field of view) would make every
intensity scaling NaN and the prediction silently empty; :class:`ScanReader` gives them the scan's lowest finite
value (its background) and logs a warning naming the file and how many voxels it changed
(``replace_non_finite=False`` keeps them).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from monai.data import ImageReader, ITKReader, NibabelReader

__all__ = [
    "SCAN_FORMATS",
    "ScanReader",
    "UnsupportedScanError",
    "is_dicom_series",
    "replace_non_finite",
    "scan_format",
    "supported_formats",
]

logger = logging.getLogger(__name__)

# suffix (lower case) -> the MONAI reader that reads it
SCAN_FORMATS: dict[str, str] = {
    ".nii.gz": "nibabel",
    ".nii": "nibabel",
    ".mgz": "nibabel",
    ".mgh": "nibabel",
    ".nrrd": "itk",
    ".nhdr": "itk",
    ".mha": "itk",
    ".mhd": "itk",
}
DICOM_SERIES = "dicom"


class UnsupportedScanError(ValueError):
    """A path whose type no reader of :data:`SCAN_FORMATS` takes."""


def is_dicom_series(path: str | os.PathLike) -> bool:
    """A folder holding files, none of them of another :data:`SCAN_FORMATS` type (read as one DICOM series)."""
    folder = Path(path)
    if not folder.is_dir():
        return False
    files = [p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")]
    return bool(files) and not any(scan_format(p) for p in files)


def scan_format(path: str | os.PathLike) -> str | None:
    """``"dicom"`` for a DICOM series folder, else the suffix in :data:`SCAN_FORMATS` that ``path`` ends with;
    None for anything else (another file type, an empty folder, a folder of NIfTI files)."""
    if Path(path).is_dir():
        return DICOM_SERIES if is_dicom_series(path) else None
    name = str(path).lower()
    return next((suffix for suffix in SCAN_FORMATS if name.endswith(suffix)), None)


def supported_formats() -> str:
    """The accepted formats as one phrase for error messages."""
    return ", ".join(SCAN_FORMATS) + " or a DICOM series folder"


def replace_non_finite(array: np.ndarray, source: Any = "the scan") -> np.ndarray:
    """``array`` with its NaN and infinite voxels set to its lowest finite value (0 if it has none), logging one
    warning naming ``source`` and the count; the array itself when it has none (integer arrays never do)."""
    if not np.issubdtype(array.dtype, np.floating):
        return array
    finite = np.isfinite(array)
    if finite.all():
        return array
    fill = float(array[finite].min()) if finite.any() else 0.0
    changed = int(array.size - np.count_nonzero(finite))
    logger.warning(
        "%s: %d of %d voxels are NaN or infinite; set to the scan's lowest finite value %g (its background)",
        source,
        changed,
        array.size,
        fill,
    )
    return np.where(finite, array, np.asarray(fill, dtype=array.dtype))


class ScanReader(ImageReader):
    """A MONAI ``ImageReader`` that delegates to ``NibabelReader`` or ``ITKReader`` by file type.

    Args:
        replace_non_finite: give NaN and infinite voxels the scan's lowest finite value, with a warning
            (:func:`replace_non_finite`); False keeps them.
        kwargs: passed to the chosen reader's constructor (e.g. ``channel_dim``).

    ``read`` takes one path or a sequence of same-type paths (stacked as channels by the chosen reader).
    """

    def __init__(self, replace_non_finite: bool = True, **kwargs: Any) -> None:
        super().__init__()
        self.replace_non_finite = replace_non_finite
        self.kwargs = kwargs
        self._readers: dict[str, ImageReader] = {}

    def _reader(self, kind: str) -> ImageReader:
        if kind not in self._readers:
            self._readers[kind] = NibabelReader(**self.kwargs) if kind == "nibabel" else ITKReader(**self.kwargs)
        return self._readers[kind]

    def reader_for(self, filename: str | os.PathLike) -> ImageReader:
        """The reader of ``filename``; raises :class:`UnsupportedScanError` naming the file otherwise."""
        kind = scan_format(filename)
        if kind is None:
            raise UnsupportedScanError(f"{filename}: unsupported scan format; use {supported_formats()}")
        return self._reader("itk" if kind == DICOM_SERIES else SCAN_FORMATS[kind])

    def verify_suffix(self, filename: Sequence[str | os.PathLike] | str | os.PathLike) -> bool:
        names = [filename] if isinstance(filename, (str, os.PathLike)) else list(filename)
        return bool(names) and all(scan_format(name) is not None for name in names)

    def read(
        self, data: Sequence[str | os.PathLike] | str | os.PathLike, **kwargs: Any
    ) -> tuple[ImageReader, Any, str]:
        """The chosen reader, what it read, and the first file's name (for :meth:`get_data`'s warnings)."""
        names = [data] if isinstance(data, (str, os.PathLike)) else list(data)
        readers = {type(self.reader_for(name)) for name in names}
        if len(readers) > 1:
            raise UnsupportedScanError(f"{names[0]}: the channels of one case must share one file type; got {names}")
        reader = self.reader_for(names[0])
        return reader, reader.read(data if len(names) > 1 else names[0], **kwargs), str(names[0])

    def get_data(self, img: tuple[ImageReader, Any, str]) -> tuple[Any, dict]:
        reader, loaded, name = img
        array, meta = reader.get_data(loaded)
        if self.replace_non_finite:
            array = replace_non_finite(np.asarray(array), name)
        return array, meta

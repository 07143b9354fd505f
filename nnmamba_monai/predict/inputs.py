"""The cases a bundle's inference runs on: one scan, a folder of scans, or the datalist, whichever is given."""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from pathlib import Path

from nnmamba_monai.transforms.scan_reader import scan_format

__all__ = ["find_scans", "inference_cases"]


def find_scans(input_image: str | Sequence[str] = "", dataset_dir: str = "", pattern: str = "*") -> list:
    """The scans to predict, each a path (a list of paths for a multi-channel case).

    Args:
        input_image: one scan (a file or a DICOM series folder), or a list of files (the channels of one case);
            when given, it is the only case.
        dataset_dir: otherwise, the folder whose scans (``pattern`` relative to it, ``**`` allowed) are
            predicted, sorted by path: files of a supported type and DICOM series folders. A folder that does
            not exist gives no scans (the inference pre-flight check then names it).
        pattern: glob pattern of the scans under ``dataset_dir``.
    """
    if input_image:
        return [list(input_image) if isinstance(input_image, (list, tuple)) else str(input_image)]
    if not dataset_dir or not os.path.isdir(dataset_dir):
        return []
    matches = sorted(glob.glob(os.path.join(str(dataset_dir), pattern), recursive=True))
    return [
        path
        for path in matches
        if scan_format(path) is not None and Path(path).resolve() != Path(dataset_dir).resolve()
    ]


def inference_cases(
    input_image: str | Sequence[str] = "",
    dataset_dir: str = "",
    datalist_file: str = "",
    datalist_key: str = "testing",
    val_fold: int = 0,
) -> list[dict]:
    """The ``datalist`` of a segmentation bundle's inference: ``[{"image": ...}, ...]``.

    In order: ``input_image`` (one case), else the datalist file's ``datalist_key`` list when the file exists
    (paths relative to ``dataset_dir``), else every scan in ``dataset_dir`` (see :func:`find_scans`).
    Nothing found gives an empty list (a config still initialises; the pre-flight check refuses it at run).
    """
    if not input_image and datalist_file and os.path.isfile(datalist_file):
        from nnmamba_monai.datalist import load_fold

        return load_fold(datalist_file, datalist_key, dataset_dir, val_fold)
    return [{"image": scan} for scan in find_scans(input_image, dataset_dir)]

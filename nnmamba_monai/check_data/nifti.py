"""Reading NIfTI files for the checks: the header (cheap) and the voxels (the whole file), errors as messages."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

__all__ = ["NiftiFile", "implausible_size", "open_nifti", "read_voxels"]

NiftiFile = nib.Nifti1Image | nib.Nifti2Image


def open_nifti(path: Path) -> tuple[NiftiFile | None, str | None]:
    """The image with its header parsed (no voxel data read) or None and why it could not be opened."""
    try:
        image = nib.load(str(path))
    except Exception as error:  # nibabel raises many types for corrupt files (ImageFileError, OSError, EOFError...)
        return None, f"cannot read the NIfTI header: {type(error).__name__}: {error}"
    if not isinstance(image, (nib.Nifti1Image, nib.Nifti2Image)):
        return None, f"not a NIfTI image (nibabel read it as {type(image).__name__})"
    if len(image.shape) < 3:
        return None, f"has {len(image.shape)} dimension(s), a 3D volume is needed (shape {image.shape})"
    return image, None


def implausible_size(image: NiftiFile, max_voxels: int) -> str | None:
    """Why the header's shape cannot be a real volume (more than ``max_voxels`` voxels), or None.

    Reads nothing but the header: a corrupt or hostile header claiming 2^31 voxels is refused before numpy would
    allocate gigabytes for it.
    """
    shape = tuple(int(n) for n in image.shape)
    voxels = int(np.prod(shape, dtype=np.int64)) if shape else 0
    if voxels <= max_voxels:
        return None
    itemsize = np.dtype(image.get_data_dtype()).itemsize
    gib = voxels * max(itemsize, 1) / 2**30
    return (
        f"header claims shape {shape} = {voxels} voxels ({gib:.1f} GiB as {image.get_data_dtype()}), more than the "
        f"limit of {max_voxels}; corrupt header? (a real volume this large: raise --max_voxels, or "
        "data_check#max_voxels in a bundle run)"
    )


def read_voxels(image: NiftiFile) -> tuple[np.ndarray | None, str | None]:
    """All voxels (scaled by the header's slope/intercept) or None and why they could not be read.

    Cost: decompresses and reads the whole file (e.g. ~0.2 s and 35 MB for a 240x240x155 float32 BraTS volume).
    """
    try:
        return np.asanyarray(image.dataobj), None
    except Exception as error:  # truncated gzip stream: EOFError; short file: OSError/ValueError
        return None, f"voxel data unreadable (truncated or corrupt file?): {type(error).__name__}: {error}"


def channels_of(shape: tuple[int, ...]) -> int:
    """Channels a NIfTI of ``shape`` contributes: product of the dimensions after the three spatial ones."""
    return int(np.prod(shape[3:], dtype=np.int64)) if len(shape) > 3 else 1

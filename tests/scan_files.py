"""Small scans of every type ``python -m nnmamba_monai.predict`` reads, cut from the demo's real Colin27 T1.

``write_scans(folder)`` writes one crop (2 mm voxels) as NIfTI (.nii.gz), FreeSurfer (.mgz), NRRD, MetaImage
(.mha) and a DICOM series folder whose slices are tilted 10 degrees about x (an oblique grid), and returns
``{kind: (path, ras_affine, spatial_shape)}``: the grid a prediction of that file must be written on.
"""

from __future__ import annotations

import locale
from pathlib import Path

import itk
import nibabel as nib
import numpy as np

from nnmamba_monai.demo.run import DATA_DIR

__all__ = ["COLIN27_T1", "LPS_TO_RAS", "itk_ras_affine", "write_dicom_series", "write_scans"]

COLIN27_T1 = DATA_DIR / "colin27_t1.nii.gz"
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])
CROP = (slice(24, 56), slice(30, 70), slice(30, 54))  # 32 x 40 x 24 voxels through the brain


def itk_ras_affine(image) -> np.ndarray:
    """The 4x4 voxel (i, j, k) -> RAS millimetre matrix of an ITK image (ITK holds LPS)."""
    direction = itk.array_from_matrix(image.GetDirection())
    affine = np.eye(4)
    affine[:3, :3] = LPS_TO_RAS @ direction @ np.diag(np.asarray(itk.spacing(image), dtype=float))
    affine[:3, 3] = LPS_TO_RAS @ np.asarray(itk.origin(image), dtype=float)
    return affine


def write_dicom_series(
    volume: np.ndarray, folder: Path, spacing: tuple[float, float, float], origin_lps, direction_lps: np.ndarray
) -> Path:
    """Write ``volume`` (x, y, z), int16, as one DICOM file per z slice with its position and orientation tags."""
    folder.mkdir(parents=True, exist_ok=True)
    study = "1.2.826.0.1.3680043.2.1125.7.1"
    series = f"{study}.1"
    orientation = "\\".join(f"{v:.8f}" for v in [*direction_lps[:, 0], *direction_lps[:, 1]])
    for k in range(volume.shape[2]):
        plane = itk.image_from_array(np.ascontiguousarray(volume[:, :, k].T.astype(np.int16)))
        plane.SetSpacing([float(spacing[0]), float(spacing[1])])
        position = np.asarray(origin_lps, dtype=float) + direction_lps[:, 2] * spacing[2] * k
        tags = {
            "0008|0060": "MR",
            "0020|000d": study,
            "0020|000e": series,
            "0008|0018": f"{series}.{k + 1}",
            "0020|0013": str(k + 1),
            "0020|0032": "\\".join(f"{v:.8f}" for v in position),
            "0020|0037": orientation,
            "0018|0050": f"{spacing[2]:.6f}",
        }
        dictionary = plane.GetMetaDataDictionary()
        for tag, value in tags.items():
            dictionary[tag] = value
        io = itk.GDCMImageIO.New()
        io.KeepOriginalUIDOn()
        writer = itk.ImageFileWriter[type(plane)].New(Input=plane, FileName=str(folder / f"{k:03d}.dcm"), ImageIO=io)
        writer.Update()
    return folder


def write_scans(folder: Path) -> dict[str, tuple[Path, np.ndarray, tuple[int, ...]]]:
    """One Colin27 crop in every supported type; see the module docstring.

    ITK's writers leave the process in the C locale (ASCII text I/O for every later test that reads a file
    without naming its encoding); the locale is put back as it was.
    """
    saved = locale.setlocale(locale.LC_ALL)
    try:
        return _write_scans(folder)
    finally:
        locale.setlocale(locale.LC_ALL, saved)


def _write_scans(folder: Path) -> dict[str, tuple[Path, np.ndarray, tuple[int, ...]]]:
    folder.mkdir(parents=True, exist_ok=True)
    source = nib.load(str(COLIN27_T1))
    crop = np.asarray(source.dataobj, dtype=np.float32)[CROP]
    affine = source.affine.copy()
    affine[:3, 3] = source.affine[:3, :3] @ [s.start for s in CROP] + source.affine[:3, 3]
    scans: dict[str, tuple[Path, np.ndarray, tuple[int, ...]]] = {}
    nifti = folder / "crop_nifti.nii.gz"
    nib.save(nib.Nifti1Image(crop, affine), str(nifti))
    scans["nifti"] = (nifti, affine, crop.shape)
    mgz = folder / "crop_mgz.mgz"
    nib.save(nib.MGHImage(crop, affine), str(mgz))
    scans["mgz"] = (mgz, nib.load(str(mgz)).affine, crop.shape)
    read = itk.imread(str(nifti))
    image = itk.image_from_array(itk.array_from_image(read))  # the voxels and grid, without NIfTI header fields
    image.SetSpacing(read.GetSpacing())
    image.SetOrigin(read.GetOrigin())
    image.SetDirection(read.GetDirection())
    for kind, name in (("nrrd", "crop_nrrd.nrrd"), ("mha", "crop_mha.mha")):
        itk.imwrite(image, str(folder / name))
        scans[kind] = (folder / name, itk_ras_affine(itk.imread(str(folder / name))), crop.shape)
    tilt = np.deg2rad(10.0)
    direction = LPS_TO_RAS @ np.array(
        [[1, 0, 0], [0, np.cos(tilt), -np.sin(tilt)], [0, np.sin(tilt), np.cos(tilt)]]
    )  # RAS axes tilted about x, written in LPS
    dicom = write_dicom_series(
        (crop / crop.max() * 1000).astype(np.int16),
        folder / "crop_dicom",
        (2.0, 2.0, 2.0),
        [80.0, 60.0, -20.0],
        direction,
    )
    scans["dicom"] = (dicom, itk_ras_affine(itk.imread(str(dicom))), crop.shape)
    return scans

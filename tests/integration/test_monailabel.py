"""Our segmentation bundles served by a real MONAI Label server (docs/monailabel.md).

The ``monailabel``-marked tests start ``monailabel start_server`` (through ``scripts/monailabel_server.py``)
with the stock ``monaibundle`` app of the installed MONAI Label, the bundles put into the app's ``model/``
folder by ``scripts/monailabel_bundle.py``, and two studies: one generated NIfTI for the AMOS bundles and the
real Colin27 T1 (2 mm, shipped with the package) for the brain-extraction bundle, which is served with the
weights it ships and must find Colin27's brain (Dice >= 0.95 against its mask). Each AMOS bundle
is first "trained": a copy of it gets ``models/model.pt`` (network width 8, seeded random weights) and, as a
real training leaves it, a resume state ``models/last.pt`` and a lock file; the installer is given the
width-8 override file, as a user serving a model trained with other settings would. The label maps MONAI
Label returns must have the study's shape and affine, hold only the bundle's labels, and equal (Dice 1 for
every label) what the trained bundle itself writes for the same file with its ``model.pt``; MONAI Label 0.8.5
would take ``last.pt`` (the shorter name) if the installer copied it, and answer with background only.
These tests are skipped only where ``monailabel`` does not import (install it with
``bash scripts/install_monailabel.sh``), and never under CI. The other tests check the MONAI Label override
configs against the bundles and need no server.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from nnmamba_monai.demo.run import DATA_DIR
from tests.integration.test_monailabel_install import require_monailabel

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = REPO_ROOT / "scripts"
# the bundles with a MONAI Label override, all served by one server. The AMOS bundles get random weights and
# the generated study (CT-like values; for the MR bundle its percentile scaling makes any values usable); the
# brain-extraction bundle is served as it ships, weights included, on a real T1
TRAINED_HERE = ("amos_ct_nnmamba_segmentation", "amos_mr_nnmamba_segmentation")
SHIPPED = ("brain_nnmamba_extraction",)
BUNDLES = {name: REPO_ROOT / "bundles" / name for name in TRAINED_HERE + SHIPPED}
# which study each bundle is asked about (file names in the server's studies folder)
GENERATED_STUDY = "case_0001.nii.gz"
BRAIN_STUDY = "colin27_t1.nii.gz"
STUDY_OF = {**dict.fromkeys(TRAINED_HERE, GENERATED_STUDY), **dict.fromkeys(SHIPPED, BRAIN_STUDY)}

# the study: 64 x 64 x 48 voxels of 1.2 x 1.2 x 2.5 mm, stored left-to-right flipped and posterior-to-anterior
# flipped (LPS), so the bundle's RAS reorientation and 1.5 x 1.5 x 2 mm resampling both have to be undone
STUDY_SHAPE = (64, 64, 48)
STUDY_AFFINE = np.array(
    [
        [-1.2, 0.0, 0.0, 40.0],
        [0.0, -1.2, 0.0, 30.0],
        [0.0, 0.0, 2.5, -60.0],
        [0.0, 0.0, 0.0, 1.0],
    ]
)
# test-only settings on top of the bundle's MONAI Label config: width 8 instead of 32, a sliding window
# smaller than the resampled image so that several windows are stitched
SMALL = {"channels": 8, "patch_size": [64, 64, 32], "sw_batch_size": 1}
SERVER_START_TIMEOUT_S = 300
INFER_TIMEOUT_S = 300


def _load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


monailabel_bundle = _load_script("monailabel_bundle")


def _bundle_labels(bundle: Path) -> dict[int, str]:
    metadata = json.loads((bundle / "configs" / "metadata.json").read_text())
    channels = next(iter(metadata["network_data_format"]["outputs"].values()))["channel_def"]
    return {int(k): v for k, v in channels.items()}


# ---------------------------------------------------------------------------------------------------------
# the override config against the bundle (no server)
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(BUNDLES))
def test_override_keeps_the_bundles_network(name):
    # the bare network_def takes MetaTensor batches, so the override must not redefine the network
    override = json.loads((BUNDLES[name] / "configs" / "monailabel_infer.json").read_text())
    assert "network_def" not in override


@pytest.mark.parametrize("name", sorted(BUNDLES))
def test_override_pre_transforms_are_the_bundles_preprocessing_in_order(name):
    from monai.bundle import ConfigParser

    config = monailabel_bundle.merged_inference_config(BUNDLES[name])
    parser = ConfigParser(config)
    preprocessing = parser.get_parsed_content("preprocessing").transforms
    pre_transforms = parser.get_parsed_content("pre_transforms")
    # the bundle's own transform objects (Invertd in postprocessing inverts exactly these), in their order
    shared = [t for t in pre_transforms if any(t is p for p in preprocessing)]
    assert len(shared) == len(preprocessing)
    assert all(a is b for a, b in zip(shared, preprocessing))
    # the only additions move MONAI Label's "image_path" out of Spacingd's way and back
    added = [t for t in pre_transforms if not any(t is p for p in preprocessing)]
    assert [type(t).__name__ for t in added] == ["CopyItemsd", "DeleteItemsd", "CopyItemsd"]
    names = [type(t).__name__ for t in pre_transforms]
    assert names.index("DeleteItemsd") < names.index("Spacingd") < len(names) - 1 - names[::-1].index("CopyItemsd")


def test_bundle_helper_writes_merged_config_and_leaves_bundle_alone(tmp_path):
    name, bundle = next(iter(BUNDLES.items()))
    before = (bundle / "configs" / "inference.json").read_text()
    override = tmp_path / "small.json"
    override.write_text(json.dumps({"patch_size": [32, 32, 32]}))
    target = monailabel_bundle.install_bundle(bundle, tmp_path / "app", overrides=[override])
    assert target == (tmp_path / "app" / "model" / name).resolve()
    written = json.loads((target / "configs" / "inference.json").read_text())
    assert written["patch_size"] == [32, 32, 32]
    assert written["pre_transforms"][0] == "@preprocessing::transforms::0"
    assert (target / "configs" / "metadata.json").is_file()
    assert (bundle / "configs" / "inference.json").read_text() == before
    with pytest.raises(FileExistsError):
        monailabel_bundle.install_bundle(bundle, tmp_path / "app")


def test_installer_serves_model_pt_only_and_says_so(tmp_path):
    name = "amos_ct_nnmamba_segmentation"
    small = _small_override(tmp_path, name)
    trained = tmp_path / "trained" / name
    _train_like(BUNDLES[name], trained, small)
    target = monailabel_bundle.install_bundle(trained, tmp_path / "app", overrides=[small])
    # MONAI Label offers every models/*.pt and takes the shortest name: last.pt must not be there
    assert sorted(p.name for p in (target / "models").iterdir()) == ["model.pt"]
    assert (target / "models" / "model.pt").read_bytes() == (trained / "models" / "model.pt").read_bytes()
    description = json.loads((target / "configs" / "metadata.json").read_text())["description"]
    digest = hashlib.sha256((trained / "models" / "model.pt").read_bytes()).hexdigest()
    assert f"sha256 {digest}" in description and "no trained weights" not in description


def test_installer_refuses_weights_of_another_width_in_one_line(tmp_path, capsys):
    name = "amos_ct_nnmamba_segmentation"
    small = _small_override(tmp_path, name)
    trained = tmp_path / "trained" / name
    _train_like(BUNDLES[name], trained, small)
    # width-8 weights, the bundle's width-32 network: refused, nothing written
    assert monailabel_bundle.main([str(trained), str(tmp_path / "app")]) == 1
    message = capsys.readouterr().err.strip()
    assert len(message.splitlines()) == 1
    assert "shape mismatch" in message and "--override" in message
    assert not (tmp_path / "app" / "model" / name).exists()


def test_installer_refuses_a_label_list_of_another_length_than_the_outputs(tmp_path):
    name = "amos_ct_nnmamba_segmentation"
    two_classes = tmp_path / "two_classes.json"
    two_classes.write_text(json.dumps({"num_classes": 2}))
    with pytest.raises(monailabel_bundle.WeightsMismatchError, match="names 16 labels .* 2 output channels"):
        monailabel_bundle.install_bundle(BUNDLES[name], tmp_path / "app", overrides=[two_classes])
    assert not (tmp_path / "app" / "model" / name).exists()


def test_installer_refuses_a_resume_state_as_model_pt(tmp_path):
    name = "amos_ct_nnmamba_segmentation"
    small = _small_override(tmp_path, name)
    trained = tmp_path / "trained" / name
    _train_like(BUNDLES[name], trained, small)
    shutil.copyfile(trained / "models" / "last.pt", trained / "models" / "model.pt")
    with pytest.raises(monailabel_bundle.WeightsMismatchError, match="not a state dict"):
        monailabel_bundle.install_bundle(trained, tmp_path / "app", overrides=[small])


def test_demo_model_is_served_with_the_override_file_the_demo_writes(tmp_path, capsys):
    """The demo's brain model (another width, 2 labels, weights outside the bundle): one command."""
    import torch
    from monai.bundle import ConfigParser

    from nnmamba_monai.demo.presets import network_def
    from nnmamba_monai.demo.run import DEFAULT_BUNDLE, DEMO_LABELS, write_serving_override

    ckpt_dir = tmp_path / "nnmamba_demo" / "models"
    ckpt_dir.mkdir(parents=True)
    common = {"patch_size": [64, 64, 64], "network_def": network_def("nnmamba")}
    override = write_serving_override(tmp_path / "nnmamba_demo" / "monailabel_override.json", common, ckpt_dir)
    bundle = REPO_ROOT / "bundles" / DEFAULT_BUNDLE
    config = monailabel_bundle.merged_inference_config(bundle, [override])
    network = ConfigParser(config).get_parsed_content("network_def")
    torch.save(network.state_dict(), ckpt_dir / "model.pt")
    torch.save({"network": network.state_dict(), "trainer": {"epoch": 30}}, ckpt_dir / "last.pt")
    app = tmp_path / "app"
    # the demo's weights with the bundle's own network (width, 16 classes): refused in one line, nothing installed
    weights_only = tmp_path / "weights_only.json"
    weights_only.write_text(json.dumps({"ckpt_dir": str(ckpt_dir)}))
    assert monailabel_bundle.main([str(bundle), str(app), "--name", "brain_demo", "--override", str(weights_only)]) == 1
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not (app / "model" / "brain_demo").exists()
    # the documented command
    assert monailabel_bundle.main([str(bundle), str(app), "--name", "brain_demo", "--override", str(override)]) == 0
    target = app / "model" / "brain_demo"
    metadata = json.loads((target / "configs" / "metadata.json").read_text())
    assert metadata["network_data_format"]["outputs"]["pred"]["channel_def"] == DEMO_LABELS
    assert sorted(p.name for p in (target / "models").iterdir()) == ["model.pt"]
    assert (target / "models" / "model.pt").read_bytes() == (ckpt_dir / "model.pt").read_bytes()
    written = json.loads((target / "configs" / "inference.json").read_text())
    assert written["num_classes"] == 2
    served = ConfigParser(written).get_parsed_content("network_def")
    served.load_state_dict(torch.load(target / "models" / "model.pt", weights_only=True), strict=True)


# ---------------------------------------------------------------------------------------------------------
# the server
# ---------------------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _log_tail(path: Path, chars: int = 6000) -> str:
    text = path.read_text(errors="replace") if path.is_file() else "(no log)"
    return text[-chars:]


def _write_study(path: Path) -> np.ndarray:
    rng = np.random.default_rng(0)
    # soft "organs" on a noisy background, CT-like values
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in STUDY_SHAPE], indexing="ij"))
    blob = np.exp(-((grid**2).sum(0)) * 4.0)
    data = (-800 + 1000 * blob + rng.normal(0, 30, STUDY_SHAPE)).astype(np.int16)
    nib.save(nib.Nifti1Image(data, STUDY_AFFINE), str(path))
    return data


def _small_override(root: Path, name: str) -> Path:
    """The test's narrowing as an override file, as a user passes the settings a model was trained with."""
    config = json.loads((BUNDLES[name] / "configs" / "monailabel_infer.json").read_text())
    net_id = "network_def::network" if "network" in config.get("network_def", {}) else "network_def"
    small = root / f"small_{name}.json"
    small.write_text(
        json.dumps(
            {
                f"{net_id}::channels": SMALL["channels"],
                "patch_size": SMALL["patch_size"],
                "sw_batch_size": SMALL["sw_batch_size"],
            }
        )
    )
    return small


def _train_like(bundle: Path, trained: Path, small: Path) -> None:
    """A copy of ``bundle`` at ``trained`` with what a training leaves in ``models/``.

    ``model.pt``: random weights for the narrowed network; its last normalisation layer gets random scales and
    no shift, so that the label map follows the image (several classes) instead of being one class everywhere,
    as a fresh network's often is. ``last.pt``: a resume state shaped like the one the training's
    ``checkpoint_objects`` write (network, optimizer, trainer), with other weights; ``.train.lock``.
    """
    import torch

    shutil.copytree(bundle, trained)  # links into bundles/_shared/ become plain files
    torch.manual_seed(0)
    config = monailabel_bundle.merged_inference_config(trained, [small])
    from monai.bundle import ConfigParser

    network = ConfigParser(config).get_parsed_content("network_def")
    assert sum(p.numel() for p in network.parameters()) < 2_000_000, "width override not applied"
    norms = [m for m in network.modules() if isinstance(m, torch.nn.modules.batchnorm._NormBase) and m.affine]
    with torch.no_grad():
        norms[-1].weight.normal_(0.0, 1.0)
        norms[-1].bias.zero_()
    torch.save(network.state_dict(), trained / "models" / "model.pt")
    resume_network = {key: torch.zeros_like(value) for key, value in network.state_dict().items()}
    resume = {"network": resume_network, "optimizer": {"state": {}, "param_groups": []}, "trainer": {"epoch": 2}}
    torch.save(resume, trained / "models" / "last.pt")
    (trained / "models" / ".train.lock").write_text("")


def _dice_per_label(result: np.ndarray, reference: np.ndarray) -> dict[int, float]:
    labels = sorted(set(np.unique(reference).tolist()) - {0})
    return {
        label: 2.0
        * np.sum((result == label) & (reference == label))
        / (np.sum(result == label) + np.sum(reference == label))
        for label in labels
    }


def _bundle_own_inference(bundle: Path, overrides: list[Path], study: Path, output_dir: Path) -> np.ndarray:
    """The label map the bundle itself writes (its evaluator, preprocessing, postprocessing and weights)."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.json"))
    parser.read_meta(str(bundle / "configs" / "metadata.json"))
    for path in overrides:
        parser.update(json.loads(path.read_text()))
    parser["bundle_root"] = str(bundle)
    parser["datalist"] = [{"image": str(study)}]
    parser["output_dir"] = str(output_dir)
    parser["num_workers"] = 0
    parser.get_parsed_content("evaluator").run()
    (written,) = output_dir.glob("*.nii.gz")
    return np.asanyarray(nib.load(str(written)).dataobj)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    require_monailabel()
    from monailabel.main import Main

    root = tmp_path_factory.mktemp("monailabel")
    # the stock monaibundle app, copied from the installed MONAI Label (what `monailabel apps --download` does)
    app = root / "apps" / "monaibundle"
    shutil.copytree(Main()._get_installed_dir(None, "sample-apps") + "/monaibundle", app)

    studies = root / "studies"
    studies.mkdir()
    _write_study(studies / GENERATED_STUDY)
    shutil.copyfile(DATA_DIR / BRAIN_STUDY, studies / BRAIN_STUDY)

    # each AMOS bundle "trained" (model.pt, last.pt, a lock file), the brain bundle as it ships; what each
    # predicts for its study with its own inference, and its copy in the app with the MONAI Label override (and
    # the training's settings) on top
    references, served_weights = {}, {}
    for name, bundle in BUNDLES.items():
        if name in SHIPPED:
            served, overrides = bundle, []
        else:
            overrides = [_small_override(root, name)]
            served = root / "trained" / name
            _train_like(bundle, served, overrides[0])
        study = studies / STUDY_OF[name]
        references[name] = _bundle_own_inference(served, overrides, study, root / f"out_{name}")
        assert len(np.unique(references[name])) >= 2, f"{name}: one class everywhere, the comparison would be void"
        bundle_copy = monailabel_bundle.install_bundle(served, app, overrides=overrides)
        assert sorted(p.name for p in (bundle_copy / "models").iterdir()) == ["model.pt"]
        served_weights[name] = hashlib.sha256((served / "models" / "model.pt").read_bytes()).hexdigest()

    port = _free_port()
    log = root / "server.log"
    env = dict(os.environ)
    paths = [str(REPO_ROOT), *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["MONAI_LABEL_SESSION_PATH"] = str(root / "sessions")
    command = [
        sys.executable,
        str(SCRIPTS / "monailabel_server.py"),
        "start_server",
        "--app",
        str(app),
        "--studies",
        str(studies),
        "--conf",
        "models",
        ",".join(BUNDLES),
        "--conf",
        "zoo_source",
        "local",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    url = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=root, env=env)
    try:
        import requests

        while True:
            if process.poll() is not None:
                pytest.fail(f"MONAI Label server exited with {process.returncode}:\n{_log_tail(log)}")
            if time.monotonic() - started > SERVER_START_TIMEOUT_S:
                pytest.fail(f"MONAI Label server not up after {SERVER_START_TIMEOUT_S} s:\n{_log_tail(log)}")
            try:
                if requests.get(f"{url}/info/", timeout=5).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            time.sleep(1)
        print(f"MONAI Label server up in {time.monotonic() - started:.1f} s")
        yield {
            "url": url,
            "log": log,
            "root": root,
            "references": references,
            "served_weights": served_weights,
            "studies": studies,
        }
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)


def _check_label_map(server, name: str, response, out: Path) -> np.ndarray:
    assert response.status_code == 200, f"{response.status_code} {response.text[:500]}\n{_log_tail(server['log'])}"
    out.write_bytes(response.content)
    result = nib.load(str(out))
    labels = np.asanyarray(result.dataobj)
    study = nib.load(str(server["studies"] / STUDY_OF[name]))
    assert labels.shape == study.shape
    # on the input's grid: Slicer overlays the result by its affine
    np.testing.assert_allclose(result.affine, study.affine, atol=1e-4)
    # MONAI Label writes the label map as float32 (the bundle's own writer, SaveImaged to uint8, is one of the
    # transforms MONAI Label leaves out): whole numbers from the bundle's label set
    assert np.array_equal(labels, np.round(labels))
    assert set(np.unique(labels).astype(int).tolist()) <= set(_bundle_labels(BUNDLES[name]))
    # the same label map as the trained bundle's own inference with its model.pt: every label it predicts
    # found again with Dice 1 (an all-background answer, last.pt served, would score 0)
    reference = server["references"][name].astype(np.int64)
    dice = _dice_per_label(labels.astype(np.int64), reference)
    assert dice and all(value == 1.0 for value in dice.values()), f"Dice per label against the bundle's own: {dice}"
    np.testing.assert_array_equal(labels.astype(np.int64), reference)
    return labels


@pytest.mark.monailabel
@pytest.mark.parametrize("name", sorted(BUNDLES))
def test_info_lists_the_bundle_with_its_labels(server, name):
    import requests

    info = requests.get(f"{server['url']}/info/", timeout=30).json()
    model = info["models"][name]
    assert model["type"] == "segmentation"
    assert model["dimension"] == 3
    expected = {label.lower(): index for index, label in _bundle_labels(BUNDLES[name]).items() if index != 0}
    assert model["labels"] == expected
    # the description tells which weights are served, not that the bundle ships none
    assert f"sha256 {server['served_weights'][name]}" in model["description"]
    assert "no trained weights" not in model["description"]
    assert name in info["trainers"]  # registered by the app; training through MONAI Label is not exercised


@pytest.mark.monailabel
@pytest.mark.parametrize("name", sorted(BUNDLES))
def test_infer_uploaded_image_returns_label_map_on_input_grid(server, name):
    import requests

    with open(server["studies"] / STUDY_OF[name], "rb") as f:
        response = requests.post(
            f"{server['url']}/infer/{name}",
            params={"output": "image"},
            files={"file": (STUDY_OF[name], f, "application/octet-stream")},
            data={"params": "{}"},
            timeout=INFER_TIMEOUT_S,
        )
    _check_label_map(server, name, response, server["root"] / f"upload_{name}.nii.gz")
    # the sliding window's progress bar (tqdm) in the server log: a long inference is not silent
    assert re.search(r"100%\|[^\n]*\| \d+/\d+", _log_tail(server["log"], 200_000)), "no progress bar in the log"


@pytest.mark.monailabel
def test_infer_datastore_image_by_id(server):
    """3D Slicer's usual call: the image is one of the server's studies, named by id."""
    import requests

    name = "amos_ct_nnmamba_segmentation"

    datastore = requests.get(f"{server['url']}/datastore/", params={"output": "all"}, timeout=30).json()
    assert {"case_0001", "colin27_t1"} <= set(datastore["objects"])
    response = requests.post(
        f"{server['url']}/infer/{name}",
        params={"image": "case_0001", "output": "image"},
        data={"params": "{}"},
        timeout=INFER_TIMEOUT_S,
    )
    _check_label_map(server, name, response, server["root"] / "datastore_result.nii.gz")


@pytest.mark.monailabel
def test_unknown_model_is_refused(server):
    import requests

    with open(server["studies"] / GENERATED_STUDY, "rb") as f:
        response = requests.post(
            f"{server['url']}/infer/no_such_model",
            params={"output": "image"},
            files={"file": ("case_0001.nii.gz", f, "application/octet-stream")},
            timeout=60,
        )
    # MONAI Label answers an unknown model with a bare 500; the server keeps serving
    assert response.status_code == 500
    assert requests.get(f"{server['url']}/info/", timeout=30).status_code == 200


@pytest.mark.monailabel
def test_shipped_brain_model_finds_colin27s_brain_by_datastore_id(server):
    """The one bundle with released weights, served as downloaded: a real held-out T1 (Colin27, 2 mm) asked for
    by id, as 3D Slicer does; the answer is the bundle's own mask and matches Colin27's brain mask."""
    import requests

    name = "brain_nnmamba_extraction"
    response = requests.post(
        f"{server['url']}/infer/{name}",
        params={"image": "colin27_t1", "output": "image"},
        data={"params": "{}"},
        timeout=INFER_TIMEOUT_S,
    )
    labels = _check_label_map(server, name, response, server["root"] / "colin27_brain.nii.gz").astype(np.int64)
    reference = np.asanyarray(nib.load(str(DATA_DIR / "colin27_brainmask.nii.gz")).dataobj) > 0
    dice = _dice_per_label(labels, reference.astype(np.int64))[1]
    assert dice >= 0.95, f"Dice {dice:.3f} against Colin27's brain mask"

"""Command-line overrides of ``python -m monai.bundle run`` that set an id no config file defines are refused
(``nnmamba_monai.bundle_overrides``); the bundles call the check first; the commands the docs show pass it."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from nnmamba_monai.bundle_overrides import (
    UnknownOverrideError,
    command_line_overrides,
    monai_run_arguments,
    refuse_unknown_overrides,
    unknown_override_ids,
)
from tests.bundle_support import BUNDLES_DIR, subprocess_env
from tests.conftest import REPO_ROOT

MONAI_MAIN = str(Path("/site-packages/monai/bundle/__main__.py"))
CHECK = "$nnmamba_monai.bundle_overrides.refuse_unknown_overrides()"
BUNDLE_NAMES = sorted(path.name for path in BUNDLES_DIR.iterdir() if not path.name.startswith("_"))


def monai_argv(*arguments: str) -> list[str]:
    return [MONAI_MAIN, "run", *arguments]


@pytest.fixture
def config_files(tmp_path: Path) -> tuple[Path, Path]:
    base = tmp_path / "train.json"
    base.write_text(json.dumps({"max_epochs": 2, "val_fold": 0, "check_data": True, "network_override": {}}))
    layer = tmp_path / "layer.json"
    layer.write_text(json.dumps({"learning_rate": 0.001}))
    return base, layer


# -- reading the command line ----------------------------------------------------------------------------------


def test_command_line_overrides_reads_pairs_as_python_fire_does():
    pairs = command_line_overrides(
        monai_argv(
            "--config_file",
            "['a.json','b.json']",
            "--max_epochs=3",
            "--check_data",
            "--dataset_dir",
            "/data/x",
            "--learning_rate",
            "-0.5",
            "--",
            "--help",
        )
    )
    assert pairs == {
        "config_file": ["a.json", "b.json"],
        "max_epochs": 3,
        "check_data": True,
        "dataset_dir": "/data/x",
        "learning_rate": -0.5,
    }


@pytest.mark.parametrize(
    "argv",
    [
        ["/usr/bin/pytest", "run", "--fold", "1"],  # not monai.bundle
        [MONAI_MAIN, "verify_metadata", "--fold", "1"],  # not a run
        [MONAI_MAIN],
    ],
)
def test_command_line_overrides_is_none_outside_a_bundle_run(argv):
    assert command_line_overrides(argv) is None
    refuse_unknown_overrides(argv)  # a no-op there, whatever the arguments


def test_monai_run_arguments_follow_the_installed_monai():
    names = monai_run_arguments()
    assert {"config_file", "meta_file", "logging_file", "args_file", "run_id", "init_id", "tracking"} <= names
    assert {"workflow_type", "workflow_name"} <= names
    assert "override" not in names and "kwargs" not in names and "self" not in names


# -- which ids are unknown --------------------------------------------------------------------------------------


def test_unknown_override_ids_keeps_only_new_top_level_ids():
    defined = {"max_epochs": 2, "val_fold": 0, "check_data": True, "network_override": {}}
    overrides = {
        "config_file": "train.json",  # MONAI's own
        "max_epochs": 5,  # defined
        "network_override#channels": 16,  # nested: MONAI and the component check it
        "network_override::blocks": 2,  # MONAI's newer separator
        "nocheck_data": True,  # python-fire's --noflag
        "_meta_#version": "1.0",
        "my_width": 24,  # new, but another override reads it
        "train#trainer#max_epochs": "@my_width",
        "fold": 1,
        "max_epoch": 5,
    }
    assert unknown_override_ids(defined, overrides) == ["fold", "max_epoch"]


def test_a_reference_must_name_the_whole_id():
    defined = {"other": None}
    assert unknown_override_ids(defined, {"fold": 1, "other": "@folds"}) == ["fold"]
    assert unknown_override_ids(defined, {"fold": 1, "other": "$@fold + 1"}) == []
    assert unknown_override_ids(defined, {"fold": 1, "other": "@fold#x"}) == []
    assert unknown_override_ids(defined, {"fold": 1, "other": "@fold::x"}) == []


def test_tracking_settings_are_ids_only_with_tracking():
    overrides = {"tracking_uri": "sqlite:///mlruns.db", "experiment_name": "brats"}
    assert unknown_override_ids({}, overrides, tracking=True) == []
    assert unknown_override_ids({}, overrides, tracking=False) == ["tracking_uri", "experiment_name"]


# -- the refusal --------------------------------------------------------------------------------------------------


def test_refusal_names_the_override_and_the_closest_ids(config_files):
    base, layer = config_files
    with pytest.raises(UnknownOverrideError) as raised:
        refuse_unknown_overrides(monai_argv("--config_file", str(base), "--fold", "1"))
    assert raised.value.summary == (
        "'--fold 1' sets the config id 'fold', which no config file of this run defines, so it would change "
        "nothing; did you mean --val_fold?"
    )
    assert "put it in a config file and pass that with --config_file" in raised.value.details


def test_refusal_lists_every_unknown_override(config_files):
    base, _ = config_files
    argv = monai_argv("--config_file", str(base), "--max_epoch", "5", "--zzz", "1", "--val_fold", "2")
    with pytest.raises(UnknownOverrideError) as raised:
        refuse_unknown_overrides(argv)
    assert raised.value.summary == "2 command-line overrides set config ids no config file defines: 'max_epoch', 'zzz'"
    assert "'--max_epoch 5' sets the config id 'max_epoch'" in raised.value.details
    assert "did you mean --max_epochs?" in raised.value.details
    assert "'--zzz 1' sets the config id 'zzz'" in raised.value.details
    assert "no config id is close to it" in raised.value.details


def test_ids_of_every_layered_config_file_count(config_files):
    base, layer = config_files
    listed = f"['{base}','{layer}']"
    refuse_unknown_overrides(monai_argv("--config_file", listed, "--learning_rate", "0.01", "--max_epochs", "1"))
    refuse_unknown_overrides(monai_argv(f"--config_file={base},{layer}", "--learning_rate", "0.01"))
    with pytest.raises(UnknownOverrideError, match="'learning_rate'"):
        refuse_unknown_overrides(monai_argv("--config_file", str(base), "--learning_rate", "0.01"))


def test_args_file_supplies_config_files_and_overrides(config_files, tmp_path):
    base, _ = config_files
    args_file = tmp_path / "args.json"
    args_file.write_text(json.dumps({"config_file": str(base), "max_epochs": 4}))
    refuse_unknown_overrides(monai_argv("--args_file", str(args_file), "--val_fold", "1"))
    args_file.write_text(json.dumps({"config_file": str(base), "epochs": 4}))
    with pytest.raises(UnknownOverrideError, match="'--epochs 4'"):
        refuse_unknown_overrides(monai_argv("--args_file", str(args_file)))


def test_a_bundle_run_with_a_misspelt_id_stops_before_reading_data(tmp_path):
    """End to end, the way a user runs it: the last line names the override and the id meant; exit status 1."""
    bundle = BUNDLES_DIR / "brain_nnmamba_extraction"
    command = [
        sys.executable,
        "-m",
        "monai.bundle",
        "run",
        "--config_file",
        "configs/train.json",
        "--dataset_dir",
        str(tmp_path / "no_such_dataset"),
        "--fold",
        "1",
    ]
    finished = subprocess.run(command, cwd=bundle, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert finished.returncode == 1
    last_line = finished.stderr.strip().splitlines()[-1]
    assert last_line.startswith("UnknownOverrideError: '--fold 1' sets the config id 'fold'")
    assert last_line.endswith("did you mean --val_fold?")
    assert "no_such_dataset" not in finished.stderr  # refused before the data check looked for the dataset


# -- the bundles call it, and the documented commands pass it ------------------------------------------------------


def _config_files_with_initialize() -> list[Path]:
    found = []
    for folder in [BUNDLES_DIR / "_shared", *BUNDLES_DIR.glob("_shared/*/"), *BUNDLES_DIR.glob("*/configs")]:
        for path in sorted(folder.glob("*.json")):
            if not path.is_symlink() and "initialize" in json.loads(path.read_text()):
                found.append(path)
    return found


def test_every_initialize_list_starts_with_the_check():
    files = _config_files_with_initialize()
    assert len(files) >= 15
    for path in files:
        initialize = json.loads(path.read_text())["initialize"]
        assert initialize[0] == CHECK, f"{path.relative_to(REPO_ROOT)}: initialize must start with the check"


def _documented_runs() -> list[tuple[str, list[str], list[str]]]:
    """``(where, arguments after 'run', bundles it is meant for)`` of every ``monai.bundle run`` in a code block of
    the docs. A bundle's own README is for that bundle; elsewhere the bundle named last before the block, or
    every bundle when none is."""
    documents = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
    documents += sorted(BUNDLES_DIR.glob("*/docs/README.md"))
    runs = []
    for document in documents:
        text = document.read_text()
        own_bundle = document.parents[1].name if document.parents[1].parent == BUNDLES_DIR else None
        for block in re.finditer(r"```[a-z]*\n(.*?)```", text, flags=re.S):
            before = text[: block.start()]
            mentioned = sorted((before.rfind(name), name) for name in BUNDLE_NAMES if name in before)
            bundles = [own_bundle] if own_bundle else [mentioned[-1][1]] if mentioned else BUNDLE_NAMES
            for line in block.group(1).replace("\\\n", " ").splitlines():
                line = line.split(" #", 1)[0]
                if "monai.bundle run" not in line:
                    continue
                tokens = shlex.split(line)
                arguments = tokens[tokens.index("run") + 1 :]
                runs.append((f"{document.relative_to(REPO_ROOT)}: {line.strip()}", arguments, bundles))
    return runs


def test_documented_bundle_runs_set_only_defined_ids(monkeypatch):
    """Each ``monai.bundle run`` the docs show passes the check in its bundle (every bundle when none is named);
    commands whose config files the reader writes first (``wide.json``), or with ``...``, are not checkable."""
    runs = _documented_runs()
    assert len(runs) >= 10
    checked = 0
    for where, arguments, bundle_names in runs:
        if "..." in arguments:
            continue
        overrides = command_line_overrides([MONAI_MAIN, "run", *arguments])
        config_file = overrides.get("config_file")
        names = [config_file] if isinstance(config_file, str) else list(config_file or [])
        for bundle_name in bundle_names:
            bundle = BUNDLES_DIR / bundle_name
            if not names or not all((bundle / name).is_file() for name in names):
                continue
            monkeypatch.chdir(bundle)
            try:
                refuse_unknown_overrides([MONAI_MAIN, "run", *arguments])
            except UnknownOverrideError as error:
                pytest.fail(f"{where} (in {bundle_name}): {error.summary}")
            checked += 1
    assert checked >= 10

"""Helpers for testing MONAI bundles the way users run them: ``python -m monai.bundle ...`` in a subprocess.

``run_bundle``, ``torchrun_bundle``, ``monai_bundle`` and ``verify_metadata`` run the command with
``PYTHONPATH`` set to this repository's root (so the bundle's ``nnmamba_monai`` targets import this
checkout), assert exit status 0 and, on failure, show the command with the tail of its stdout and stderr.
The checks that only parse configs (``verify_net_in_out``, ``export_and_compare_torchscript``,
``check_workflow_properties``) call the same ``monai.bundle`` functions in this process unless asked for
the CLI (``cli=True``): an interpreter start costs ~5 s here. Signatures are kept stable: other bundles'
tests import them.

Typical use::

    bundle = copy_bundle("brats_nnmamba_segmentation", tmp_path)
    verify_metadata(bundle)
    run_bundle(bundle, ["configs/train.json"], dataset_dir=str(data), **{"network_def#channels": 8})
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from tests.conftest import REFERENCE_DIR, REPO_ROOT

__all__ = [
    "BUNDLES_DIR",
    "META_SCHEMA",
    "META_SCHEMA_MD5",
    "build_network",
    "check_workflow_properties",
    "copy_bundle",
    "assert_trained_export_matches_eager",
    "export_and_compare_torchscript",
    "monai_bundle",
    "network_overrides_for",
    "read_csv_rows",
    "run_bundle",
    "run_checked",
    "subprocess_env",
    "torchrun_bundle",
    "verify_metadata",
    "verify_net_in_out",
]

BUNDLES_DIR = REPO_ROOT / "bundles"
META_SCHEMA = REFERENCE_DIR / "meta_schema_20240725.json"
META_SCHEMA_MD5 = "06954cad2cc5d3784e72077ac76f0fc8"
TAIL_CHARS = 6000


def subprocess_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for bundle subprocesses: this repo first on PYTHONPATH, few CPU threads."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *filter(None, [env.get("PYTHONPATH")])])
    # one thread per process: on a small shared CI machine oversubscribed threads cost far more than they give
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("PYTHONWARNINGS", "ignore")
    env.update(extra or {})
    return env


def run_checked(
    command: Sequence[str],
    cwd: str | Path | None = None,
    timeout: float = 900,
    env: dict[str, str] | None = None,
    expect_success: bool = True,
) -> subprocess.CompletedProcess:
    """Run ``command``; assert exit status 0 (or, with ``expect_success=False``, non-zero), showing the command
    and its output tails otherwise."""
    result = subprocess.run(
        [str(c) for c in command],
        cwd=str(cwd or REPO_ROOT),
        env=env or subprocess_env(),
        capture_output=True,
        encoding="utf-8",  # MONAI's progress bars, whatever locale an earlier test left this process in
        errors="replace",
        timeout=timeout,
    )
    assert (result.returncode == 0) == expect_success, (
        f"command {'failed' if expect_success else 'unexpectedly succeeded'} with exit status {result.returncode}:"
        f"\n  {' '.join(map(str, command))}\n"
        f"--- stdout (tail) ---\n{result.stdout[-TAIL_CHARS:]}\n--- stderr (tail) ---\n{result.stderr[-TAIL_CHARS:]}"
    )
    return result


def _cli_value(value: Any) -> str:
    """One command-line value as python-fire (used by ``monai.bundle``) parses it back."""
    if isinstance(value, (str, Path)):
        return str(value)
    return repr(value)  # lists, tuples, dicts, numbers, True/False/None as Python literals


def _override_args(overrides: dict[str, Any]) -> list[str]:
    args: list[str] = []
    for key, value in overrides.items():
        args += [f"--{key}", _cli_value(value)]
    return args


# an evaluation under torchrun: train.json's definitions, evaluate.json's evaluator, the shared multi-GPU layer
MULTI_GPU_EVALUATION = ("configs/train.json", "configs/evaluate.json", "configs/multi_gpu_evaluate.json")


def network_overrides_for(config_files: str | Sequence[str], overrides: dict[str, Any]) -> dict[str, Any]:
    """``overrides`` with ``network_def#<key>`` entries renamed ``network_override#<key>`` for a run that layers
    ``train.json``: there ``network_def`` is the one line that builds ``inference.json``'s ``network_def`` with
    ``network_override`` applied (nnmamba_monai.bundle_config), so both ids mean the same network change."""
    files = [config_files] if isinstance(config_files, (str, Path)) else list(config_files)
    if not any(Path(f).name == "train.json" for f in files):
        return dict(overrides)
    return {
        (f"network_override#{key.split('#', 1)[1]}" if key.startswith("network_def#") else key): value
        for key, value in overrides.items()
    }


def _config_paths(bundle_dir: Path, config_files: str | Sequence[str]) -> list[str]:
    files = [config_files] if isinstance(config_files, (str, Path)) else list(config_files)
    return [str(bundle_dir / f) for f in files]


def monai_bundle(
    command: str,
    *args: Any,
    timeout: float = 900,
    expect_success: bool = True,
    cwd: str | Path | None = None,
    **overrides: Any,
) -> subprocess.CompletedProcess:
    """``python -m monai.bundle <command> *args --key value ...`` (overrides may hold ids such as ``a#b``)."""
    return run_checked(
        [sys.executable, "-m", "monai.bundle", command, *map(_cli_value, args), *_override_args(overrides)],
        cwd=cwd,
        timeout=timeout,
        expect_success=expect_success,
    )


def copy_bundle(name: str, destination: str | Path) -> Path:
    """Copy ``bundles/<name>`` under ``destination`` so runs write checkpoints and outputs there, not in the repo."""
    target = Path(destination) / name
    shutil.copytree(BUNDLES_DIR / name, target, ignore=shutil.ignore_patterns("eval", "*.pt", "*.ts"))
    return target


def run_bundle(
    bundle_dir: str | Path,
    config_files: str | Sequence[str],
    *,
    run_id: str = "run",
    timeout: float = 900,
    from_bundle_dir: bool = False,
    **overrides: Any,
) -> subprocess.CompletedProcess:
    """``python -m monai.bundle run`` on a bundle, its metadata and logging config, with ``overrides``.

    ``config_files`` are relative to ``bundle_dir`` (e.g. ``["configs/train.json", "configs/evaluate.json"]``).
    By default the paths are absolute and ``bundle_root`` is set to ``bundle_dir``; ``from_bundle_dir=True``
    instead runs the command exactly as the bundle READMEs write it: from inside the bundle folder, with
    relative paths and the configs' own ``bundle_root`` ("."). Pass ids with ``#`` as
    ``**{"network_def#channels": 8}`` (with train.json, renamed ``network_override#channels``: see
    :func:`network_overrides_for`).
    """
    bundle_dir = Path(bundle_dir)
    files = [config_files] if isinstance(config_files, (str, Path)) else list(config_files)
    overrides = network_overrides_for(files, overrides)
    if from_bundle_dir:
        root, cwd = Path("."), bundle_dir
    else:
        root, cwd = bundle_dir, None
        overrides = {"bundle_root": str(bundle_dir), **overrides}
    return monai_bundle(
        "run",
        run_id,
        timeout=timeout,
        cwd=cwd,
        meta_file=str(root / "configs" / "metadata.json"),
        config_file=[str(root / f) for f in files] if len(files) > 1 else str(root / files[0]),
        logging_file=str(root / "configs" / "logging.conf"),
        **overrides,
    )


PORT_TAKEN = ("EADDRINUSE", "address already in use", "DistNetworkError")  # torchrun's port race, in its output


def torchrun_bundle(
    bundle_dir: str | Path,
    config_files: str | Sequence[str],
    *,
    nproc_per_node: int = 2,
    run_id: str = "run",
    timeout: float = 900,
    **overrides: Any,
) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nnodes=1 --nproc_per_node=N -m monai.bundle run ...`` (CPU: gloo).

    ``--standalone`` picks a free port, releases it and binds it again: another process (a test on another
    pytest-xdist worker, another run on the machine) can take it in between. That failure, and only that, is
    retried once.
    """
    bundle_dir = Path(bundle_dir)
    overrides = {"bundle_root": str(bundle_dir), **network_overrides_for(config_files, overrides)}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nnodes=1",
        f"--nproc_per_node={nproc_per_node}",
        "-m",
        "monai.bundle",
        "run",
        run_id,
        "--meta_file",
        str(bundle_dir / "configs" / "metadata.json"),
        "--config_file",
        _cli_value(_config_paths(bundle_dir, config_files)),
        "--logging_file",
        str(bundle_dir / "configs" / "logging.conf"),
        *_override_args(overrides),
    ]
    try:
        return run_checked(command, timeout=timeout)
    except AssertionError as failure:
        if not any(text in str(failure) for text in PORT_TAKEN):
            raise
        return run_checked(command, timeout=timeout)


def verify_metadata(bundle_dir: str | Path, *, cli: bool = True) -> None:
    """MONAI's ``verify_metadata`` against the schema kept offline in the reference folder (md5 checked).

    ``cli=True`` runs ``python -m monai.bundle verify_metadata``; ``cli=False`` calls the same
    ``monai.bundle.verify_metadata`` function in this process. Raises on a schema violation.
    """
    assert META_SCHEMA.is_file(), f"bundle metadata schema missing: {META_SCHEMA}"
    arguments = {
        "meta_file": str(Path(bundle_dir) / "configs" / "metadata.json"),
        "filepath": str(META_SCHEMA),
        "hash_val": META_SCHEMA_MD5,
    }
    if cli:
        result = monai_bundle("verify_metadata", **arguments)
        assert "metadata is verified with no error" in result.stdout + result.stderr
        return
    from monai.bundle import verify_metadata as monai_verify_metadata

    monai_verify_metadata(**arguments)


def verify_net_in_out(
    bundle_dir: str | Path,
    config_file: str = "configs/inference.json",
    *,
    n: int = 2,
    cli: bool = False,
    **overrides: Any,
) -> None:
    """MONAI's ``verify_net_in_out network_def`` on CPU; ``n`` fills sizes such as ``"16*n"``.

    Runs ``monai.bundle.verify_net_in_out`` in this process (the function the CLI calls; saves a 5 s
    interpreter start), or ``python -m monai.bundle verify_net_in_out`` with ``cli=True``. Raises on a
    channel or dtype mismatch with the metadata.
    """
    bundle_dir = Path(bundle_dir)
    arguments = {
        "meta_file": str(bundle_dir / "configs" / "metadata.json"),
        "config_file": str(bundle_dir / config_file),
        "device": "cpu",
        "n": n,
        "bundle_root": str(bundle_dir),
        **overrides,
    }
    if cli:
        result = monai_bundle("verify_net_in_out", "network_def", **arguments)
        assert "data shape of network is verified with no error" in result.stdout + result.stderr
        return
    from monai.bundle import verify_net_in_out as monai_verify_net_in_out

    monai_verify_net_in_out("network_def", **arguments)


def parse_bundle_configs(bundle_dir: str | Path, *config_names: str, **overrides: Any):
    """A ``ConfigParser`` over the bundle's ``configs/<name>`` files (layered in order) and its metadata, with
    ``bundle_root`` set to the bundle and ``overrides`` (ids, ``#`` paths too) applied; nothing parsed yet."""
    from monai.bundle import ConfigParser

    bundle_dir = Path(bundle_dir)
    parser = ConfigParser()
    parser.read_config([str(bundle_dir / "configs" / name) for name in config_names])
    parser.read_meta(str(bundle_dir / "configs" / "metadata.json"))
    parser.update({"bundle_root": str(bundle_dir), **overrides})
    return parser


def build_network(bundle_dir: str | Path, config_file: str = "configs/inference.json", **overrides: Any):
    """The bundle's ``network_def`` built in this process (with ``overrides``), in eval mode."""
    config_name = str(Path(config_file).relative_to("configs"))
    parser = parse_bundle_configs(bundle_dir, config_name, **network_overrides_for(config_file, overrides))
    parser.parse()  # runs the config's imports (train.json's network_def is an expression over a module)
    return parser.get_parsed_content("network_def").eval()


def export_and_compare_torchscript(
    bundle_dir: str | Path,
    ckpt_file: str | Path,
    export_file: str | Path,
    input_shape: Sequence[int],
    *,
    config_file: str = "configs/inference.json",
    use_trace: bool = True,
    atol: float = 1e-4,
    cli: bool = False,
    other_shapes: Sequence[Sequence[int]] = (),
    **overrides: Any,
) -> float:
    """Export ``ckpt_file`` with MONAI's ``ckpt_export network_def`` and compare with the eager network.

    The TorchScript file must load, carry the bundle's metadata and config, and give the eager network's
    output (same checkpoint, same random input of ``input_shape``, and of each of ``other_shapes``: a traced
    file must not be tied to the shape it was traced with) within ``atol``. Runs
    ``monai.bundle.ckpt_export`` in this process, or ``python -m monai.bundle ckpt_export`` with ``cli=True``.
    Returns the largest absolute difference.
    """
    bundle_dir = Path(bundle_dir)
    arguments = {
        "filepath": str(export_file),
        "ckpt_file": str(ckpt_file),
        "meta_file": str(bundle_dir / "configs" / "metadata.json"),
        "config_file": str(bundle_dir / config_file),
        "use_trace": use_trace,
        "input_shape": list(input_shape),
        "bundle_root": str(bundle_dir),
        **overrides,
    }
    if cli:
        monai_bundle("ckpt_export", "network_def", **arguments)
    else:
        from monai.bundle import ckpt_export

        ckpt_export("network_def", **arguments)
    config_name = Path(config_file).name
    extra_files = {"metadata.json": "", config_name: ""}
    scripted = torch.jit.load(str(export_file), map_location="cpu", _extra_files=extra_files)
    embedded = {name: bytes(content).decode() for name, content in extra_files.items()}
    assert '"network_data_format"' in embedded["metadata.json"], "exported file lacks the bundle metadata"
    assert '"network_def"' in embedded[config_name], "exported file lacks the bundle config"
    eager = build_network(bundle_dir, config_file, **overrides)
    eager.load_state_dict(torch.load(str(ckpt_file), map_location="cpu", weights_only=True))
    max_difference = 0.0
    for shape in (input_shape, *other_shapes):
        sample = torch.rand(*shape, generator=torch.Generator().manual_seed(7))
        with torch.no_grad():
            expected, actual = eager(sample), scripted(sample)
        assert actual.shape == expected.shape, f"TorchScript output {tuple(actual.shape)} != {tuple(expected.shape)}"
        difference = (actual - expected).abs().max().item()
        assert difference <= atol, f"TorchScript output differs from the eager network by {difference} at {shape}"
        max_difference = max(max_difference, difference)
    return max_difference


def check_workflow_properties(
    bundle_dir: str | Path, config_files: str | Sequence[str], workflow_type: str, **overrides: Any
) -> list[str]:
    """Missing or wrongly referenced properties of ``ConfigWorkflow(...).check_properties()`` (empty = all good).

    ``workflow_type`` is "train" or "infer". The workflow is initialised (its ``initialize`` expressions run)
    and the required properties are instantiated, so ``overrides`` should point at small data.
    """
    from monai.bundle import ConfigWorkflow

    bundle_dir = Path(bundle_dir)
    workflow = ConfigWorkflow(
        config_file=_config_paths(bundle_dir, config_files),
        meta_file=str(bundle_dir / "configs" / "metadata.json"),
        logging_file=False,
        workflow_type=workflow_type,
        **{"bundle_root": str(bundle_dir), **network_overrides_for(config_files, overrides)},
    )
    workflow.initialize()
    return list(workflow.check_properties() or [])


def assert_weights_kept(checkpoint: str | Path, pretrained: str | Path) -> None:
    """A run fine-tuned at learning rate 0 saved ``checkpoint`` with exactly ``pretrained``'s learned weights
    (normalisation running statistics, which training moves without a learning rate, are not compared)."""
    saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
    expected = torch.load(pretrained, map_location="cpu", weights_only=True)
    parameters = [name for name in saved if not name.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert parameters and all(torch.equal(saved[name], expected[name]) for name in parameters)


def read_csv_rows(path: str | Path) -> list[dict[str, str]]:
    """Rows of a comma-separated file with a header line (MONAI ``MetricsSaver`` ``*_raw.csv`` files)."""
    import csv

    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def assert_trained_export_matches_eager(
    bundle_dir: str | Path,
    export_dir: str | Path,
    input_shape: Sequence[int],
    other_shape: Sequence[int],
    channels: int = 8,
) -> None:
    """The bundle's trained ``models/model.pt`` exported by ``ckpt_export`` (traced) matches the eager network.

    The SSM scan is recorded as a TorchScript function with its loops, so the exported file must match within
    1e-4 at the traced ``input_shape`` and at ``other_shape`` too. ``channels`` is the tests' small width.
    """
    difference = export_and_compare_torchscript(
        bundle_dir,
        Path(bundle_dir) / "models" / "model.pt",
        Path(export_dir) / "model.ts",
        input_shape,
        other_shapes=[other_shape],
        **{"network_def#channels": channels},
    )
    assert difference <= 1e-4, difference

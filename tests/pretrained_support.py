"""Helpers for the pretrained-bundle tests: a loopback HTTP file server and unlabelled BraTS cases to infer on."""

from __future__ import annotations

import functools
import http.server
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import nibabel as nib
import numpy as np

from nnmamba_monai.datalist import __main__ as datalist_cli
from tests.bundles.standin_data import brats_case_id, make_brats_dataset

__all__ = ["assert_prediction_on_input_grid", "brats_unlabelled_cases", "serve_directory"]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files from its ``directory`` without logging each request to stderr."""

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's signature
        pass


@contextmanager
def _no_proxy_for_loopback() -> Iterator[None]:
    """Add 127.0.0.1 and localhost to ``no_proxy``/``NO_PROXY`` (inherited by subprocesses), then restore them:
    urllib would otherwise send loopback requests to a proxy configured in the environment."""
    saved = {name: os.environ.get(name) for name in ("no_proxy", "NO_PROXY")}
    for name, value in saved.items():
        os.environ[name] = ",".join(filter(None, [value, "127.0.0.1", "localhost"]))
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def serve_directory(directory: str | Path) -> Iterator[str]:
    """Serve ``directory`` over HTTP on 127.0.0.1 (a free port) in a daemon thread; yields the base URL
    ``http://127.0.0.1:<port>`` (no trailing slash). While it runs, loopback requests bypass any proxy set in
    the environment. The server stops when the context exits."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="loopback-http", daemon=True)
    thread.start()
    try:
        with _no_proxy_for_loopback():
            yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def brats_unlabelled_cases(root: str | Path, case_indices: tuple[int, ...] = (7,), size: int = 32) -> tuple[Path, Path]:
    """Unlabelled BraTS 2023 case folders (four ``size``^3 MR volumes each) and their testing datalist.

    Returns ``(dataset_dir, datalist_file)`` as the bundles' ``dataset_dir`` and ``datalist_file`` expect.
    """
    root = Path(root)
    data = make_brats_dataset(root / "ValidationData", case_indices, shape=(size,) * 3, with_labels=False)
    datalist = root / "test_datalist.json"
    datalist_cli.main(["brats", "--dataset_dir", str(data), "--output", str(datalist), "--unlabelled"])
    return data, datalist


def assert_prediction_on_input_grid(prediction_dir: str | Path, data_dir: str | Path, case_index: int) -> np.ndarray:
    """The BraTS label map saved for a case has the input's shape and affine; returns its voxels."""
    case = brats_case_id(case_index)
    saved = nib.load(Path(prediction_dir) / f"{case}.nii.gz")
    reference = nib.load(Path(data_dir) / case / f"{case}-t1n.nii.gz")
    assert saved.shape == reference.shape, f"prediction {saved.shape} vs input {reference.shape}"
    np.testing.assert_allclose(saved.affine, reference.affine)
    voxels = np.asarray(saved.dataobj)
    assert set(np.unique(voxels)) <= {0, 1, 2, 3}, "BraTS label values"
    return voxels

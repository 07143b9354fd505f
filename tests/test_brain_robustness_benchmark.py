"""``benchmarks/brain_robustness.py``: its changed copies keep image and reference aligned, and a run writes its
table as JSON with the shipped weights' scores."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from tests.conftest import REPO_ROOT

_spec = importlib.util.spec_from_file_location("brain_robustness", REPO_ROOT / "benchmarks" / "brain_robustness.py")
brain_robustness = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(brain_robustness)


def test_thick_slices_average_slabs_and_put_them_at_their_centres():
    image = np.arange(2 * 2 * 7, dtype=np.float32).reshape(2, 2, 7)
    mask = np.zeros((2, 2, 7), bool)
    mask[..., 1:3] = True  # two of the first slab's three slices: brain by majority
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = [-10.0, -20.0, -30.0]
    thick, thick_mask, thick_affine = brain_robustness.thick_slices(image, mask, affine, factor=3)
    assert thick.shape == thick_mask.shape == (2, 2, 2)  # the 7th slice has no full slab
    np.testing.assert_allclose(thick[..., 0], image[..., 0:3].mean(-1))
    assert thick_mask[..., 0].all() and not thick_mask[..., 1].any()
    # the first thick slice lies where the middle of its three thin slices lay
    np.testing.assert_allclose(thick_affine @ [0, 0, 0, 1], affine @ [0, 0, 1, 1])
    np.testing.assert_allclose(thick_affine[:3, 2], [0.0, 0.0, 6.0])


@pytest.mark.parametrize("change", ["tilt_30deg", "bias_60pct", "noise_10pct", "gamma_1.6"])
def test_changes_keep_the_grid_and_a_plausible_reference(change):
    image = np.zeros((20, 24, 22), np.float32)
    image[5:15, 6:18, 5:17] = 100.0
    mask = image > 0
    changed, reference, affine = brain_robustness.CHANGES[change](image, mask, np.eye(4))
    assert changed.shape == reference.shape == image.shape and changed.dtype == np.float32
    assert np.isfinite(changed).all() and np.array_equal(affine, np.eye(4))
    assert abs(int(reference.sum()) - int(mask.sum())) <= 0.1 * mask.sum()


def test_a_run_writes_the_table_with_the_shipped_weights_scores(tmp_path, capsys):
    output = tmp_path / "robustness.json"
    rows = brain_robustness.main(["--changes", "none", "thick_slices_6mm", "--output", str(output)])
    record = json.loads(output.read_text())
    assert record["rows"] == rows and [row["change"] for row in rows] == ["none", "thick_slices_6mm"]
    assert rows[1]["shape"][2] == rows[0]["shape"][2] // 3
    assert all(row["dice"] >= 0.95 for row in rows)  # 0.963 and 0.963 on 2026-12-05
    assert "thick_slices_6mm" in capsys.readouterr().out

"""The CSV saver with a header the bundles use for per-case tables."""

from __future__ import annotations

import pytest
import torch

from nnmamba_monai.data import HeaderCSVSaver


def test_header_csv_saver_writes_header_once_and_checks_row_width(tmp_path):
    saver = HeaderCSVSaver(columns=["probability", "predicted_class"], output_dir=tmp_path, filename="p.csv")
    saver.save_batch(torch.tensor([[0.25, 0.0], [0.75, 1.0]]), {"filename_or_obj": ["a.nii.gz", "b.nii.gz"]})
    saver.finalize()
    saver.save(torch.tensor([0.5, 1.0]), {"filename_or_obj": "c.nii.gz"})
    saver.finalize()  # appends, no second header
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert lines == ["image,probability,predicted_class", "a.nii.gz,0.25,0.0", "b.nii.gz,0.75,1.0", "c.nii.gz,0.5,1.0"]
    with pytest.raises(ValueError, match=r"3 values for 2 columns"):
        saver.save(torch.zeros(3), {"filename_or_obj": "d.nii.gz"})

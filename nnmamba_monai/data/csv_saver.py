"""MONAI's CSVSaver with a header row, for per-case result tables (class probabilities, landmark coordinates)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from monai.config import PathLike
from monai.data import CSVSaver

__all__ = ["HeaderCSVSaver"]


class HeaderCSVSaver(CSVSaver):
    """``monai.data.CSVSaver`` that starts a new file with a header and checks every row's width.

    Use it as the ``saver`` of ``monai.handlers.ClassificationSaver``. One row per case: the case's source file
    (``filename_or_obj`` of its metadata), then its values flattened in C order.

    Args:
        columns: names of the value columns, e.g. ``["probability", "predicted_class"]``.
        key_column: name of the first column (the case's file).
        output_dir, filename, overwrite, flush, delimiter: as for ``CSVSaver``.
    """

    def __init__(
        self,
        columns: Sequence[str],
        key_column: str = "image",
        output_dir: PathLike = "./",
        filename: str = "predictions.csv",
        overwrite: bool = True,
        flush: bool = False,
        delimiter: str = ",",
    ) -> None:
        super().__init__(
            output_dir=output_dir, filename=filename, overwrite=overwrite, flush=flush, delimiter=delimiter
        )
        self.columns = [str(c) for c in columns]
        self.key_column = key_column

    def save(self, data: torch.Tensor | np.ndarray, meta_data: dict | None = None) -> None:
        """Cache one case's values; raises ValueError if their number differs from ``columns``."""
        size = int(np.asarray(data.detach().cpu() if isinstance(data, torch.Tensor) else data).size)
        if size != len(self.columns):
            raise ValueError(f"{size} values for {len(self.columns)} columns {self.columns} in {self._filepath}")
        super().save(data, meta_data)

    def finalize(self) -> None:
        """Write the header (if the file is new or empty), then the cached rows."""
        self.output_dir.mkdir(parents=True, exist_ok=True)
        if not self._filepath.exists() or self._filepath.stat().st_size == 0:
            with open(self._filepath, "w") as f:
                f.write(self.delimiter.join([self.key_column, *self.columns]) + "\n")
        super().finalize()

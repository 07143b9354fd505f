"""``python -m nnmamba_monai.export``: MONAI's ``ckpt_export`` with a progress line while it traces.

    python -m nnmamba_monai.export network_def --filepath models/model.ts --ckpt_file models/model.pt \\
        --meta_file configs/metadata.json --config_file configs/inference.json --use_trace True \\
        --input_shape "[1, 1, 128, 128, 128]"

takes exactly the arguments of ``python -m monai.bundle ckpt_export`` and runs it unchanged. Tracing an nnMamba
network takes minutes on a CPU and MONAI prints nothing meanwhile; this prints the elapsed time every
``NNMAMBA_MONAI_PROGRESS_S`` seconds (default 10) to stderr and the total when the export ends.
"""

from __future__ import annotations

import os
import runpy
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

__all__ = ["elapsed_progress", "main"]

PROGRESS_ENV = "NNMAMBA_MONAI_PROGRESS_S"


@contextmanager
def elapsed_progress(label: str, interval_s: float = 10.0, stream: TextIO | None = None) -> Iterator[None]:
    """Print ``<label>: N s elapsed`` every ``interval_s`` seconds while the block runs, then the total."""
    stream = stream or sys.stderr
    stop = threading.Event()
    started = time.monotonic()

    def beat() -> None:
        while not stop.wait(interval_s):
            print(f"{label}: {time.monotonic() - started:.0f} s elapsed", file=stream, flush=True)

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
    print(f"{label}: done in {time.monotonic() - started:.0f} s", file=stream, flush=True)


def main(argv: list[str] | None = None) -> None:
    arguments = sys.argv[1:] if argv is None else argv
    interval_s = float(os.environ.get(PROGRESS_ENV, "10"))
    target = next((a for a in arguments if not a.startswith("-")), "network_def")
    label = f"TorchScript export of {target}"
    sys.argv = ["monai.bundle", "ckpt_export", *arguments]
    print(f"{label}: started (tracing takes minutes on a CPU)", file=sys.stderr, flush=True)
    with elapsed_progress(label, interval_s):
        runpy.run_module("monai.bundle", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()

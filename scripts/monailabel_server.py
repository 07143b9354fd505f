"""Run the MONAI Label command line (``monailabel start_server ...``) on a machine without torchvision.

    python scripts/monailabel_server.py start_server --app APP --studies STUDIES --conf models BUNDLE

takes exactly the arguments of the ``monailabel`` command. MONAI Label imports ``torchvision`` while loading
(see ``scripts/monailabel_compat/torchvision``); where ``import torchvision`` works, this script changes
nothing and only runs ``monailabel.main``. Where it fails (CPU-only torch from PyPI, for which no torchvision
imports), the stand-in folder goes first on ``sys.path`` and on ``PYTHONPATH`` (so that the processes MONAI
Label starts for training or batch inference see it too) before ``monailabel.main`` runs.
"""

from __future__ import annotations

import os
import runpy
import sys
from pathlib import Path

COMPAT_DIR = Path(__file__).resolve().parent / "monailabel_compat"


def torchvision_importable() -> bool:
    try:
        import torchvision  # noqa: F401
    except Exception:  # ImportError, or RuntimeError("operator torchvision::nms does not exist")
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        return False
    return True


def use_stand_in() -> None:
    sys.path.insert(0, str(COMPAT_DIR))
    parts = [str(COMPAT_DIR)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    os.environ["PYTHONPATH"] = os.pathsep.join(parts)


def main() -> None:
    if not torchvision_importable():
        print(f"torchvision does not import here: using the stand-in in {COMPAT_DIR}", file=sys.stderr)
        use_stand_in()
    sys.argv[0] = "monailabel"
    runpy.run_module("monailabel.main", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()

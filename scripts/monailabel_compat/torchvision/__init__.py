"""Stand-in for ``torchvision``, put on the path by ``scripts/monailabel_server.py`` only.

MONAI Label 0.8.5 imports ``torchvision.utils.make_grid`` and ``save_image`` when its post-transform module
loads (``monailabel/transform/post.py``), although only a 2D debugging transform and the DeepEdit TensorBoard
handler call them. On a CPU-only torch from PyPI there is no torchvision that imports (PyPI's wheels are built
against the CUDA torch and fail with "operator torchvision::nms does not exist"), so the launcher adds this
folder to the path when, and only when, ``import torchvision`` fails. Anything that really needs torchvision
gets a clear error instead: ``__version__`` is 0.0.0, so MONAI's ``optional_import(..., version=...)`` reports
it missing, and the two functions raise.
"""

from torchvision import utils

__version__ = "0.0.0"

__all__ = ["utils"]

"""``python -m nnmamba_monai.predict``: see :mod:`nnmamba_monai.predict.cli`."""

from nnmamba_monai.predict.cli import main

if __name__ == "__main__":
    raise SystemExit(main())

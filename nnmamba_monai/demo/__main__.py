"""Entry point of ``python -m nnmamba_monai.demo`` (see :mod:`nnmamba_monai.demo.run`)."""

from nnmamba_monai.demo.run import main

if __name__ == "__main__":
    main()

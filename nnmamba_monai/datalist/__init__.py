"""Datalist builders: one module per dataset, each turning the dataset's standard layout into MONAI's JSON.

Run ``python -m nnmamba_monai.datalist --help``. A dataset module exposes ``SUMMARY``,
``add_arguments(parser)`` and ``build_from_arguments(args)`` (the datalist as a dict); ``__main__`` registers
one subcommand per module listed in ``DATASET_MODULES`` and writes what it builds to ``--output``.
"""

from nnmamba_monai.datalist.common import DatalistError, MissingFilesError, write_datalist
from nnmamba_monai.datalist.folds import assign_folds, load_fold
from nnmamba_monai.datalist.schema import DatalistSchemaError, load_checked_datalist, validate_datalist

__all__ = [
    "DATASET_MODULES",
    "DatalistError",
    "DatalistSchemaError",
    "MissingFilesError",
    "assign_folds",
    "load_checked_datalist",
    "load_fold",
    "validate_datalist",
    "write_datalist",
]

# subcommand modules, in --help order; a module that is not present in this checkout is skipped
DATASET_MODULES = ("brats", "amos", "adni", "fetal")

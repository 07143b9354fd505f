"""Datalist builders: one module per dataset, each a subcommand of ``python -m nnmamba_monai.datalist``."""

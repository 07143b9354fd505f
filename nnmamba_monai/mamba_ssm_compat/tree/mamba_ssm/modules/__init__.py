"""Stand-in for ``mamba_ssm.modules``."""

"""Stand-in for ``mamba_ssm.utils``."""

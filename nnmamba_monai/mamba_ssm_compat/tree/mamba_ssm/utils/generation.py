"""Stand-in for ``mamba_ssm.utils.generation``: the inference state a Mamba layer reads its cache from."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

__all__ = ["InferenceParams"]


@dataclass
class InferenceParams:
    """Step-wise inference state, as in mamba_ssm: per-layer caches keyed by ``layer_idx``."""

    max_seqlen: int
    max_batch_size: int
    seqlen_offset: int = 0
    batch_size_offset: int = 0
    key_value_memory_dict: dict = field(default_factory=dict)
    lengths_per_sample: torch.Tensor | None = None

    def reset(self, max_seqlen: int, max_batch_size: int) -> None:
        """Start a new sequence: offsets back to 0, caches kept (they are overwritten by the next prompt)."""
        self.max_seqlen = max_seqlen
        self.max_batch_size = max_batch_size
        self.seqlen_offset = 0
        if self.lengths_per_sample is not None:
            self.lengths_per_sample.zero_()

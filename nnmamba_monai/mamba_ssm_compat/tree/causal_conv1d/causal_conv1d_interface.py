"""Stand-in for ``causal_conv1d.causal_conv1d_interface``: the depthwise causal convolution in PyTorch."""

from __future__ import annotations

from nnmamba_monai.ssm.inner import causal_conv1d, causal_conv1d_step

__all__ = ["causal_conv1d_fn", "causal_conv1d_update"]


def causal_conv1d_fn(
    x, weight, bias=None, seq_idx=None, initial_states=None, return_final_states=False, final_states_out=None,
    activation=None,
):  # fmt: skip
    """x (B, D, L), weight (D, W), bias (D,) -> (B, D, L); ``activation`` None, "silu" or "swish".

    Variable-length packing (``seq_idx``) and initial/final states are not provided by the stand-in.
    """
    if seq_idx is not None or initial_states is not None or return_final_states or final_states_out is not None:
        raise NotImplementedError(
            "nnmamba_monai's causal_conv1d stand-in takes x, weight, bias and activation only "
            "(no seq_idx, initial_states or final states)"
        )
    return causal_conv1d(x, weight, bias, activation)


def causal_conv1d_update(x, conv_state, weight, bias=None, activation=None, cache_seqlens=None,
                         conv_state_indices=None):  # fmt: skip
    """x (B, D) or (B, D, L) new tokens; conv_state (B, D, S) updated in place; returns x's shape."""
    if cache_seqlens is not None or conv_state_indices is not None:
        raise NotImplementedError("nnmamba_monai's causal_conv1d stand-in has no circular buffer or state indices")
    return causal_conv1d_step(x, conv_state, weight, bias, activation)

"""A Mamba-1 layer whose parameters are named, shaped and initialised like ``mamba_ssm.Mamba``.

A state_dict moves between this module and ``mamba_ssm.Mamba`` unchanged, so checkpoints trained with
the authors' code load here (and back). The constructor takes ``mamba_ssm.Mamba``'s keyword arguments
(including ``layer_idx``, ``device``, ``dtype``, ``use_fast_path``) and the layer has its step-wise
inference: ``forward(hidden_states, inference_params)``, ``step`` and ``allocate_inference_cache``.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from nnmamba_monai.ssm.dispatch import selective_scan

__all__ = ["Mamba"]


class Mamba(nn.Module):
    """Mamba-1 selective state-space layer on (B, L, C) sequences.

    Args:
        d_model: channels C of the input and output.
        d_state: state size N per inner channel.
        d_conv: width of the causal depthwise convolution.
        expand: inner width factor, d_inner = int(expand * d_model) (may be fractional, as in mamba_ssm).
        dt_rank: rank of the time-step projection; "auto" = ceil(d_model / 16).
        dt_min, dt_max: range of the initial time steps (log-uniform).
        dt_init: "random" (uniform +-dt_rank^-0.5 * dt_scale) or "constant" time-step projection weights.
        dt_scale: scale of the time-step projection initialisation.
        dt_init_floor: smallest initial time step.
        conv_bias: bias in the depthwise convolution.
        bias: bias in the input and output projections.
        use_fast_path: accepted for mamba_ssm's signature; the forward is always the scan of ``backend``
            (mamba_ssm's fused kernel is its CUDA-only fast path; the arithmetic is the same).
        layer_idx: this layer's key in ``inference_params.key_value_memory_dict`` (step-wise inference).
        device, dtype: where and in which dtype the parameters are created (``A_log`` and ``D`` are float32
            whatever ``dtype``, as in mamba_ssm).
        backend: selective-scan backend, see :func:`nnmamba_monai.ssm.selective_scan`.

    Parameters (as in mamba_ssm): ``in_proj.weight`` (2*d_inner, C), ``conv1d.weight`` (d_inner, 1, d_conv),
    ``conv1d.bias`` (d_inner,), ``x_proj.weight`` (dt_rank + 2N, d_inner), ``dt_proj.weight`` (d_inner, dt_rank),
    ``dt_proj.bias`` (d_inner,), ``A_log`` (d_inner, N), ``D`` (d_inner,), ``out_proj.weight`` (C, d_inner).
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: float = 2,
        dt_rank: int | str = "auto",
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init: str = "random",
        dt_scale: float = 1.0,
        dt_init_floor: float = 1e-4,
        conv_bias: bool = True,
        bias: bool = False,
        use_fast_path: bool = True,
        layer_idx: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        if d_model < 1 or d_state < 1 or d_conv < 1 or int(expand * d_model) < 1:
            raise ValueError(
                f"d_model, d_state, d_conv and expand * d_model must be positive; got {d_model}, {d_state}, "
                f"{d_conv}, {expand} * {d_model}"
            )
        self.d_model = d_model
        self.d_state = d_state
        self.d_conv = d_conv
        self.expand = expand
        self.d_inner = int(expand * d_model)
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)
        self.use_fast_path = use_fast_path
        self.layer_idx = layer_idx
        self.backend = backend

        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=bias, **factory)
        self.conv1d = nn.Conv1d(
            self.d_inner,
            self.d_inner,
            kernel_size=d_conv,
            groups=self.d_inner,
            padding=d_conv - 1,
            bias=conv_bias,
            **factory,
        )
        self.activation = "silu"
        self.act = nn.SiLU()
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False, **factory)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True, **factory)
        self._init_dt_proj(dt_init, dt_scale, dt_min, dt_max, dt_init_floor, factory)
        # S4D-real initialisation: A[d, n] = -(n + 1).
        a_init = torch.arange(1, d_state + 1, dtype=torch.float32, device=device).repeat(self.d_inner, 1)
        self.A_log = nn.Parameter(torch.log(a_init))
        self.A_log._no_weight_decay = True
        self.D = nn.Parameter(torch.ones(self.d_inner, device=device))
        self.D._no_weight_decay = True
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias, **factory)

    def _init_dt_proj(
        self, dt_init: str, dt_scale: float, dt_min: float, dt_max: float, floor: float, factory: dict
    ) -> None:
        std = self.dt_rank**-0.5 * dt_scale
        if dt_init == "constant":
            nn.init.constant_(self.dt_proj.weight, std)
        elif dt_init == "random":
            nn.init.uniform_(self.dt_proj.weight, -std, std)
        else:
            raise ValueError(f"dt_init must be 'random' or 'constant'; got {dt_init!r}")
        dt = torch.exp(torch.rand(self.d_inner, **factory) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=floor)
        inv_softplus_dt = dt + torch.log(-torch.expm1(-dt))  # softplus(inv_softplus_dt) == dt
        with torch.no_grad():
            self.dt_proj.bias.copy_(inv_softplus_dt)
        self.dt_proj.bias._no_reinit = True

    def forward(self, hidden_states: torch.Tensor, inference_params=None) -> torch.Tensor:
        """hidden_states: (B, L, C) -> (B, L, C).

        inference_params: mamba_ssm's generation state (``key_value_memory_dict``, ``seqlen_offset``), or
        None. With it, a first call (``seqlen_offset == 0``) runs the whole prompt and stores this layer's
        convolution and scan states under ``layer_idx``; later calls take one token each (B, 1, C) and
        advance those states with :meth:`step`.
        """
        # a trace records tensor ops only: the shape check runs on the eager module
        if not torch.jit.is_tracing() and (hidden_states.dim() != 3 or hidden_states.shape[-1] != self.d_model):
            raise ValueError(f"Mamba expects (batch, length, d_model={self.d_model}); got {tuple(hidden_states.shape)}")
        conv_state, ssm_state = None, None
        if inference_params is not None:
            conv_state, ssm_state = self._get_states_from_cache(inference_params, hidden_states.shape[0])
            if inference_params.seqlen_offset > 0:
                out, _, _ = self.step(hidden_states, conv_state, ssm_state)
                return out
        length = hidden_states.shape[1]
        xz = self.in_proj(hidden_states).transpose(1, 2)  # (B, 2*d_inner, L)
        x, z = xz.chunk(2, dim=1)
        if conv_state is not None:  # the last d_conv inputs of the convolution (zeros before the first)
            conv_state.copy_(F.pad(x, (self.d_conv - length, 0)))
        x = F.silu(self.conv1d(x)[..., :length])  # causal: keep the first L outputs
        x_dbl = self.x_proj(x.transpose(1, 2))  # (B, L, dt_rank + 2N)
        dt, B, C = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = F.linear(dt, self.dt_proj.weight).transpose(1, 2)  # bias is added inside the scan
        A = -torch.exp(self.A_log.float())
        y = selective_scan(
            x,
            delta,
            A,
            B.transpose(1, 2),
            C.transpose(1, 2),
            self.D.float(),
            z=z,
            delta_bias=self.dt_proj.bias.float(),
            delta_softplus=True,
            return_last_state=ssm_state is not None,
            backend=self.backend,
        )
        if ssm_state is not None:
            y, last_state = y
            ssm_state.copy_(last_state)
        return self.out_proj(y.transpose(1, 2))

    def step(
        self, hidden_states: torch.Tensor, conv_state: torch.Tensor, ssm_state: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One token: hidden_states (B, 1, C) -> (out (B, 1, C), conv_state, ssm_state), states updated in place.

        conv_state: (B, d_inner, d_conv), the convolution's last inputs; ssm_state: (B, d_inner, N).
        """
        if hidden_states.dim() != 3 or hidden_states.shape[1] != 1:
            raise ValueError(f"step takes one token, (batch, 1, d_model); got {tuple(hidden_states.shape)}")
        dtype = hidden_states.dtype
        xz = self.in_proj(hidden_states.squeeze(1))  # (B, 2*d_inner)
        x, z = xz.chunk(2, dim=-1)
        conv_state.copy_(torch.roll(conv_state, shifts=-1, dims=-1))
        conv_state[:, :, -1] = x
        x = (conv_state * self.conv1d.weight[:, 0]).sum(-1)
        if self.conv1d.bias is not None:
            x = x + self.conv1d.bias
        x = F.silu(x).to(dtype)
        dt, B, C = torch.split(self.x_proj(x), [self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = F.softplus(F.linear(dt, self.dt_proj.weight) + self.dt_proj.bias.to(dt.dtype))  # (B, d_inner)
        A = -torch.exp(self.A_log.float())
        decay = torch.exp(dt[:, :, None] * A)  # (B, d_inner, N)
        ssm_state.copy_(ssm_state * decay + (x * dt)[:, :, None] * B[:, None, :])
        y = (ssm_state.to(dtype) * C[:, None, :]).sum(-1)
        y = (y + self.D.to(dtype) * x) * F.silu(z)
        return self.out_proj(y).unsqueeze(1), conv_state, ssm_state

    def allocate_inference_cache(
        self, batch_size: int, max_seqlen: int, dtype: torch.dtype | None = None, **kwargs
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Zero (conv_state (B, d_inner, d_conv), ssm_state (B, d_inner, N)) on the layer's device.

        Their dtypes are the convolution's and the time-step projection's unless ``dtype`` is given.
        ``max_seqlen`` is unused (the states do not grow), as in mamba_ssm.
        """
        device = self.out_proj.weight.device
        conv_dtype = self.conv1d.weight.dtype if dtype is None else dtype
        ssm_dtype = self.dt_proj.weight.dtype if dtype is None else dtype
        conv_state = torch.zeros(batch_size, self.d_inner, self.d_conv, device=device, dtype=conv_dtype)
        ssm_state = torch.zeros(batch_size, self.d_inner, self.d_state, device=device, dtype=ssm_dtype)
        return conv_state, ssm_state

    def _get_states_from_cache(
        self, inference_params, batch_size: int, initialize_states: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """This layer's (conv_state, ssm_state) in ``inference_params.key_value_memory_dict[layer_idx]``."""
        if self.layer_idx is None:
            raise ValueError("step-wise inference needs the layer's layer_idx (its key in the cache)")
        cache = inference_params.key_value_memory_dict
        if self.layer_idx not in cache:
            cache[self.layer_idx] = self.allocate_inference_cache(batch_size, 0)
        elif initialize_states:
            for state in cache[self.layer_idx]:
                state.zero_()
        return cache[self.layer_idx]

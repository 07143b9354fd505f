"""A Mamba-1 layer whose parameters are named, shaped and initialised like ``mamba_ssm.Mamba``.

A state_dict moves between this module and ``mamba_ssm.Mamba`` unchanged, so checkpoints trained with
the authors' code load here (and back).
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
        expand: inner width factor, d_inner = expand * d_model.
        dt_rank: rank of the time-step projection; "auto" = ceil(d_model / 16).
        dt_min, dt_max: range of the initial time steps (log-uniform).
        dt_init: "random" (uniform +-dt_rank^-0.5 * dt_scale) or "constant" time-step projection weights.
        dt_scale: scale of the time-step projection initialisation.
        dt_init_floor: smallest initial time step.
        conv_bias: bias in the depthwise convolution.
        bias: bias in the input and output projections.
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
        expand: int = 2,
        dt_rank: int | str = "auto",
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init: str = "random",
        dt_scale: float = 1.0,
        dt_init_floor: float = 1e-4,
        conv_bias: bool = True,
        bias: bool = False,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        if d_model < 1 or d_state < 1 or d_conv < 1 or expand < 1:
            raise ValueError(
                f"d_model, d_state, d_conv and expand must be positive; got {d_model}, {d_state}, {d_conv}, {expand}"
            )
        self.d_model = d_model
        self.d_state = d_state
        self.d_conv = d_conv
        self.expand = expand
        self.d_inner = expand * d_model
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)
        self.backend = backend

        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=bias)
        self.conv1d = nn.Conv1d(
            self.d_inner, self.d_inner, kernel_size=d_conv, groups=self.d_inner, padding=d_conv - 1, bias=conv_bias
        )
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True)
        self._init_dt_proj(dt_init, dt_scale, dt_min, dt_max, dt_init_floor)
        # S4D-real initialisation: A[d, n] = -(n + 1).
        a_init = torch.arange(1, d_state + 1, dtype=torch.float32).repeat(self.d_inner, 1)
        self.A_log = nn.Parameter(torch.log(a_init))
        self.A_log._no_weight_decay = True
        self.D = nn.Parameter(torch.ones(self.d_inner))
        self.D._no_weight_decay = True
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias)

    def _init_dt_proj(self, dt_init: str, dt_scale: float, dt_min: float, dt_max: float, floor: float) -> None:
        std = self.dt_rank**-0.5 * dt_scale
        if dt_init == "constant":
            nn.init.constant_(self.dt_proj.weight, std)
        elif dt_init == "random":
            nn.init.uniform_(self.dt_proj.weight, -std, std)
        else:
            raise ValueError(f"dt_init must be 'random' or 'constant'; got {dt_init!r}")
        dt = torch.exp(torch.rand(self.d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=floor)
        inv_softplus_dt = dt + torch.log(-torch.expm1(-dt))  # softplus(inv_softplus_dt) == dt
        with torch.no_grad():
            self.dt_proj.bias.copy_(inv_softplus_dt)
        self.dt_proj.bias._no_reinit = True

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """hidden_states: (B, L, C) -> (B, L, C)."""
        # a trace records tensor ops only: the shape check runs on the eager module
        if not torch.jit.is_tracing() and (hidden_states.dim() != 3 or hidden_states.shape[-1] != self.d_model):
            raise ValueError(f"Mamba expects (batch, length, d_model={self.d_model}); got {tuple(hidden_states.shape)}")
        length = hidden_states.shape[1]
        xz = self.in_proj(hidden_states).transpose(1, 2)  # (B, 2*d_inner, L)
        x, z = xz.chunk(2, dim=1)
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
            backend=self.backend,
        )
        return self.out_proj(y.transpose(1, 2))

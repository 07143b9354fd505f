"""Voxel-level Mamba layers of the "Taming Mambas" family (Lumetti et al., arXiv 2410.15496).

A feature map (B, C, H, W, D) is read as a sequence of B x (H*W*D) voxel tokens of width C, in row-major
order of its axes (the last axis, D, fastest; see :mod:`~nnmamba_monai.blocks.voxel_sequence`). Three ways
of scanning it:

- :class:`VoxelMambaLayer`: one Mamba "trans" block in forward order (unidirectional);
- :class:`BiVoxelMambaLayer`: a forward block and a SEPARATE block (own weights) on the reversed sequence,
  reversed back, summed, then LayerNorm (bidirectional);
- :class:`MultiVoxelMambaLayer`: four bidirectional mixers, each on the voxels read in a different axis order
  (H, W, D), (H, D, W), (W, H, D), (D, H, W), permuted back and averaged per voxel (multi-directional).

Under ``torch.autocast`` these layers run like any other layer (the authors' code switched autocast off
around them); the selective scan inside keeps its float32 state by the policy of
:mod:`nnmamba_monai.ssm.precision`, the same for every network family.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from nnmamba_monai.blocks.voxel_sequence import on_voxel_sequence
from nnmamba_monai.ssm import Mamba

__all__ = [
    "PAPER_AXIS_ORDERS",
    "BiMambaTransBlock",
    "BiVoxelMambaLayer",
    "MambaTransBlock",
    "MultiVoxelMambaLayer",
    "VoxelMambaLayer",
    "default_d_state",
]

# Spatial axes are numbered 0 = H, 1 = W, 2 = D. An axis order lists them slowest first: (0, 2, 1) reads
# H slowest, then D, with W fastest. The paper keeps four of the six orders; (W, D, H) and (D, W, H) are left out.
PAPER_AXIS_ORDERS: tuple[tuple[int, int, int], ...] = ((0, 1, 2), (0, 2, 1), (1, 0, 2), (2, 0, 1))


def default_d_state(channels: int, cap: int) -> int:
    """The paper's state size: the channel count, capped (64 for uni/multi, 256 for bi/skip layers)."""
    return min(channels, cap)


class MambaTransBlock(nn.Module):
    """Pre-norm Mamba with a residual, then a pre-norm linear head with a residual, on (B, L, C).

    y = x + mamba(norm1(x)); out = y + head(norm2(y)).

    Args:
        channels: C, token width.
        d_state: Mamba state size.
        d_conv: width of Mamba's causal depthwise convolution.
        expand: Mamba inner width factor.
        backend: selective-scan backend, see :func:`nnmamba_monai.ssm.selective_scan`.

    State dict keys: ``mamba`` (mamba_ssm names), ``norm1``, ``norm2``, ``head``.
    """

    def __init__(self, channels: int, d_state: int, d_conv: int = 4, expand: int = 2, backend: str = "auto") -> None:
        super().__init__()
        self.mamba = Mamba(d_model=channels, d_state=d_state, d_conv=d_conv, expand=expand, backend=backend)
        self.norm1 = nn.LayerNorm(channels)
        self.norm2 = nn.LayerNorm(channels)
        self.head = nn.Linear(channels, channels)

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        """seq: (B, L, C) -> (B, L, C)."""
        seq = seq + self.mamba(self.norm1(seq))
        return seq + self.head(self.norm2(seq))


class BiMambaTransBlock(nn.Module):
    """Bidirectional sequence mixer on (B, L, C): LayerNorm(fwd(s) + reverse(bwd(reverse(s)))).

    ``fwd`` and ``bwd`` are two :class:`MambaTransBlock` with their own weights; ``bwd`` reads the sequence
    last token first, and its output is reversed back so that token t of both terms belongs to voxel t.

    Args: as :class:`MambaTransBlock`. State dict keys: ``fwd``, ``bwd``, ``norm``.
    """

    def __init__(self, channels: int, d_state: int, d_conv: int = 4, expand: int = 2, backend: str = "auto") -> None:
        super().__init__()
        self.fwd = MambaTransBlock(channels, d_state, d_conv, expand, backend)
        self.bwd = MambaTransBlock(channels, d_state, d_conv, expand, backend)
        self.norm = nn.LayerNorm(channels)

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        """seq: (B, L, C) -> (B, L, C)."""
        return self.norm(self.fwd(seq) + self.bwd(seq.flip(1)).flip(1))


class _VolumeLayer(nn.Module):
    """A layer on (B, C, *spatial) feature maps that mixes their voxel sequence (:meth:`_mix`)."""

    channels: int

    def _check(self, x: torch.Tensor) -> None:
        if torch.jit.is_tracing():  # a trace records tensor ops only: the check ran on the eager module
            return
        if x.dim() < 3 or x.shape[1] != self.channels:
            raise ValueError(
                f"{type(self).__name__} expects (batch, channels={self.channels}, *spatial); got {tuple(x.shape)}"
            )

    def _mix(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, *spatial) -> (B, C, *spatial)."""
        self._check(x)
        return self._mix(x)


class _NormedSequenceLayer(_VolumeLayer):
    """LayerNorm over the voxel sequence, then one sequence mixer of class ``mixer_cls``.

    The mixer is stored under ``mixer_name`` (the authors' attribute name), after ``norm`` in the state dict.
    """

    d_state_cap: int
    mixer_cls: type[nn.Module]
    mixer_name: str

    def __init__(
        self, channels: int, d_state: int | None = None, d_conv: int = 4, expand: int = 2, backend: str = "auto"
    ) -> None:
        super().__init__()
        self.channels = channels
        self.d_state = default_d_state(channels, self.d_state_cap) if d_state is None else d_state
        self.norm = nn.LayerNorm(channels)
        self.add_module(self.mixer_name, self.mixer_cls(channels, self.d_state, d_conv, expand, backend))

    def _mix(self, x: torch.Tensor) -> torch.Tensor:
        mixer = getattr(self, self.mixer_name)
        return on_voxel_sequence(lambda seq: mixer(self.norm(seq)), x)


class VoxelMambaLayer(_NormedSequenceLayer):
    """Unidirectional voxel Mamba (SegMamba): LayerNorm, one :class:`MambaTransBlock` pass in forward order.

    Tokens are the voxels in row-major (H, W, D) order, D fastest.

    Args:
        channels: C of the feature map.
        d_state: Mamba state size; None = min(C, 64) as in the paper.
        d_conv, expand: Mamba settings (paper: 4, 2).
        backend: selective-scan backend.

    Input/output (B, C, H, W, D) (any number of spatial axes). State dict keys: ``norm``, ``block``.
    """

    d_state_cap = 64
    mixer_cls = MambaTransBlock
    mixer_name = "block"


class BiVoxelMambaLayer(_NormedSequenceLayer):
    """Bidirectional voxel Mamba (BiSegMamba, SegMambaSkip): LayerNorm, then :class:`BiMambaTransBlock`.

    Tokens are the voxels in row-major (H, W, D) order, D fastest; the backward block reads them from the
    last voxel (H-1, W-1, D-1) to the first. Arguments as :class:`VoxelMambaLayer`, but ``d_state`` None means
    min(C, 256), as in the paper's bidirectional and skip networks.

    Input/output (B, C, H, W, D) (any number of spatial axes). State dict keys: ``norm``, ``mixer``.
    """

    d_state_cap = 256
    mixer_cls = BiMambaTransBlock
    mixer_name = "mixer"


def _check_axis_orders(axis_orders: Sequence[Sequence[int]]) -> tuple[tuple[int, ...], ...]:
    orders = tuple(tuple(int(a) for a in order) for order in axis_orders)
    if not orders or any(sorted(order) != [0, 1, 2] for order in orders) or len(set(orders)) != len(orders):
        raise ValueError(
            f"axis_orders must be distinct permutations of (0, 1, 2) (0 = H, 1 = W, 2 = D); got {axis_orders}"
        )
    return orders


class MultiVoxelMambaLayer(_VolumeLayer):
    """Multi-directional voxel Mamba (MultiSegMamba): bidirectional mixers over several axis orders, averaged.

    For each axis order (slowest axis first; 0 = H, 1 = W, 2 = D) the volume is permuted to that order,
    flattened row-major, passed through its own :class:`BiMambaTransBlock`, reshaped and permuted back; the
    per-voxel outputs of all orders are averaged. The paper's four orders (default) are (H, W, D), (H, D, W),
    (W, H, D) and (D, H, W); (W, D, H) and (D, W, H) are left out. With the bidirectional blocks each order
    is read both ways, so 4 x 2 = 8 Mamba blocks per layer. As in the paper's code there is no LayerNorm in
    front of the mixers (the uni- and bidirectional layers have one).

    What holds exactly (the directions have their own weights, so there is no plain invariance):

    - transposing W and D maps the paper's set of orders onto itself, (H, W, D) <-> (H, D, W) and
      (W, H, D) <-> (D, H, W); hence layer(x.transpose(-1, -2)) equals the output, transposed back, of the
      same layer with the weights of those two pairs of orders exchanged. With one weight set shared by all
      orders this is a true equivariance. Transposes involving H have no such pairing (they map an order to a
      left-out one).
    - flipping all three axes reverses the sequence in every order, so layer(x.flip(2, 3, 4)) equals the
      flipped output of the layer with ``fwd`` and ``bwd`` exchanged in every mixer.

    Args:
        channels: C of the feature map.
        d_state: Mamba state size; None = min(C, 64) as in the paper's multi-directional network.
        d_conv, expand: Mamba settings (paper: 4, 2).
        axis_orders: the axis orders scanned, each a permutation of (0, 1, 2); default the paper's four.
        backend: selective-scan backend.

    Input/output (B, C, H, W, D). State dict keys: ``directions.{k}`` for the k-th axis order.
    """

    d_state_cap = 64

    def __init__(
        self,
        channels: int,
        d_state: int | None = None,
        d_conv: int = 4,
        expand: int = 2,
        axis_orders: Sequence[Sequence[int]] = PAPER_AXIS_ORDERS,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        self.channels = channels
        self.d_state = default_d_state(channels, self.d_state_cap) if d_state is None else d_state
        self.axis_orders = _check_axis_orders(axis_orders)
        self.directions = nn.ModuleList(
            BiMambaTransBlock(channels, self.d_state, d_conv, expand, backend) for _ in self.axis_orders
        )

    def _check(self, x: torch.Tensor) -> None:
        super()._check(x)
        if x.dim() != 5:
            raise ValueError(f"MultiVoxelMambaLayer expects (batch, channels, H, W, D); got {tuple(x.shape)}")

    def _mix(self, x: torch.Tensor) -> torch.Tensor:
        outs = []
        for order, mixer in zip(self.axis_orders, self.directions):
            permuted = x.permute(0, 1, *(2 + a for a in order))
            mixed = on_voxel_sequence(mixer, permuted)
            inverse = sorted(range(3), key=lambda axis: order[axis])  # position of each original axis
            outs.append(mixed.permute(0, 1, *(2 + p for p in inverse)))
        return torch.stack(outs, dim=0).mean(dim=0)

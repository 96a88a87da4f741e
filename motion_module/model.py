"""The AnimateDiff temporal layers and the whole motion module, in pure torch.

Module and parameter names reproduce the original checkpoint keys, so a file's state dict loads
as is: ``{down_blocks.i | mid_block | up_blocks.i}.motion_modules.j.temporal_transformer.<tensor>``.

Every temporal layer is called as ``layer(x, num_frames)`` with ``x`` of shape ``(G*F, C, H, W)``:
``G`` groups of ``F = num_frames`` consecutive frames. Attention runs across the ``F`` frames of
each group at every pixel; the GroupNorm at the layer input normalises each frame on its own, as
the original SD1.5 module does.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from motion_module.errors import MotionModuleError
from motion_module.variants import VARIANTS, BetaSchedule

HEADS = 8
GROUPS = 32
GROUPNORM_EPS = 1e-6
SDPA_MAX_BATCH = 65535  # sequences per attention call (CUDA grid limit); read at call time


def sinusoid_table(length: int, channels: int) -> Tensor:
    """The fixed positional encoding ``[1, length, channels]``: sin on even, cos on odd channels.

    Always computed on the CPU in float32 (as the original files were), also inside a ``meta``
    device context, where these ops would be slow to trace.
    """
    cpu = torch.device("cpu")
    position = torch.arange(length, dtype=torch.float32, device=cpu).unsqueeze(1)
    steps = torch.arange(0, channels, 2, dtype=torch.float32, device=cpu)
    frequency = torch.exp(steps * (-math.log(10000.0) / channels))
    table = torch.zeros(1, length, channels, device=cpu)
    table[0, :, 0::2] = torch.sin(position * frequency)
    table[0, :, 1::2] = torch.cos(position * frequency)
    return table


class PositionalEncoding(nn.Module):
    """Holds the ``pe`` buffer; persistent where the checkpoint format stores it."""

    pe: Tensor

    def __init__(self, channels: int, length: int, *, persistent: bool = True) -> None:
        super().__init__()
        self.register_buffer("pe", sinusoid_table(length, channels), persistent=persistent)

    @property
    def length(self) -> int:
        return self.pe.shape[1]


def chunked_attention(query: Tensor, key: Tensor, value: Tensor) -> Tensor:
    """``scaled_dot_product_attention`` over ``(B, heads, F, head_dim)``, at most
    ``SDPA_MAX_BATCH`` sequences per call.

    CUDA's attention kernels put the batch on a grid axis limited to 65,535 blocks, and temporal
    attention's batch is groups x pixels (8,192 at 512² with cond/uncond, 65,536 at 1024² with two
    windows per call): past the limit they fail with "invalid configuration argument". Each
    sequence is independent, so the chunks give the same result as one call.
    """
    batch = query.shape[0]
    limit = SDPA_MAX_BATCH
    if batch <= limit:
        return F.scaled_dot_product_attention(query, key, value)
    heads, frames, head_dim = query.shape[1], query.shape[2], value.shape[3]
    out = query.new_empty(batch, frames, heads, head_dim)
    for start in range(0, batch, limit):
        part = slice(start, start + limit)
        out[part] = F.scaled_dot_product_attention(query[part], key[part], value[part]).transpose(1, 2)
    return out.transpose(1, 2)


class GEGLU(nn.Module):
    """``proj`` to twice the hidden width, then value * gelu(gate)."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.proj = nn.Linear(channels, hidden * 2)

    def forward(self, x: Tensor) -> Tensor:
        value, gate = self.proj(x).chunk(2, dim=-1)
        return F.gelu(gate).mul_(value)


class FeedForward(nn.Module):
    """GEGLU feed-forward ``c -> 4c -> c``; ``net.1`` is the (parameter-free) dropout slot of the original."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            GEGLU(channels, 4 * channels), nn.Identity(), nn.Linear(4 * channels, channels)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class TemporalAttention(nn.Module):
    """Self-attention across the frames of each group, with the PE added to its input."""

    def __init__(
        self, channels: int, pe_length: int, heads: int = HEADS, *, persistent_pe: bool = True
    ) -> None:
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(channels, channels, bias=False)
        self.to_k = nn.Linear(channels, channels, bias=False)
        self.to_v = nn.Linear(channels, channels, bias=False)
        self.to_out = nn.Sequential(nn.Linear(channels, channels))
        self.pos_encoder = PositionalEncoding(channels, pe_length, persistent=persistent_pe)

    def forward(self, x: Tensor) -> Tensor:
        """``x``: ``(B, F, C)``, ``B`` sequences of ``F`` frames; returns the same shape (no residual).

        The heads are strided views of the projections (no copies); the attention output comes back
        in ``(B, F, heads, head_dim)`` order, so merging the heads is a view as well.
        """
        batch, frames, channels = x.shape
        x = x + self.pos_encoder.pe[0, :frames].to(x)
        head_dim = channels // self.heads

        def split_heads(t: Tensor) -> Tensor:
            return t.view(batch, frames, self.heads, head_dim).transpose(1, 2)

        out = chunked_attention(
            split_heads(self.to_q(x)), split_heads(self.to_k(x)), split_heads(self.to_v(x))
        )
        return self.to_out(out.transpose(1, 2).reshape(batch, frames, channels))


class TemporalTransformerBlock(nn.Module):
    """Pre-norm temporal self-attentions (each with a residual), then a pre-norm GEGLU feed-forward."""

    def __init__(
        self, channels: int, pe_length: int, num_attention_blocks: int, heads: int, *, persistent_pe: bool
    ) -> None:
        super().__init__()
        self.attention_blocks = nn.ModuleList(
            TemporalAttention(channels, pe_length, heads, persistent_pe=persistent_pe)
            for _ in range(num_attention_blocks)
        )
        self.norms = nn.ModuleList(nn.LayerNorm(channels) for _ in range(num_attention_blocks))
        self.ff = FeedForward(channels)
        self.ff_norm = nn.LayerNorm(channels)

    def forward(self, x: Tensor) -> Tensor:
        """``x``: ``(B, F, C)``; the residuals are added in place to the fresh sub-layer outputs."""
        for attention, norm in zip(self.attention_blocks, self.norms, strict=True):
            x = attention(norm(x)).add_(x)
        return self.ff(self.ff_norm(x)).add_(x)


class TemporalTransformer(nn.Module):
    """One temporal layer: per-frame GroupNorm, proj_in, transformer block, proj_out, plus the input."""

    def __init__(
        self,
        channels: int,
        pe_length: int,
        num_attention_blocks: int = 2,
        heads: int = HEADS,
        groups: int = GROUPS,
        *,
        persistent_pe: bool = True,
    ) -> None:
        super().__init__()
        if channels % groups or channels % heads:
            raise MotionModuleError(
                f"channels={channels} must be a multiple of groups={groups} and heads={heads}"
            )
        self.norm = nn.GroupNorm(groups, channels, eps=GROUPNORM_EPS)
        self.proj_in = nn.Linear(channels, channels)
        self.transformer_blocks = nn.ModuleList(
            [
                TemporalTransformerBlock(
                    channels, pe_length, num_attention_blocks, heads, persistent_pe=persistent_pe
                )
            ]
        )
        self.proj_out = nn.Linear(channels, channels)

    @property
    def pe_length(self) -> int:
        first_block = cast(TemporalTransformerBlock, self.transformer_blocks[0])
        return cast(TemporalAttention, first_block.attention_blocks[0]).pos_encoder.length

    def forward(self, x: Tensor, num_frames: int) -> Tensor:
        """``x``: ``(G*F, C, H, W)`` with ``F = num_frames``; returns ``x`` plus the layer's output."""
        batch, channels, height, width = x.shape
        if num_frames < 1 or batch % num_frames:
            raise MotionModuleError(
                f"batch of {batch} images is not a whole number of groups of num_frames={num_frames}"
            )
        if num_frames > self.pe_length:
            raise MotionModuleError(
                f"num_frames={num_frames} is longer than the motion module's positional encoding ({self.pe_length})"
            )
        groups, pixels = batch // num_frames, height * width
        # Tokens pixel-major, (G, P, F, C): every pixel's frames are one contiguous sequence. The
        # only layout copies are proj_in's read of the normed input and the residual add's read back.
        h = self.norm(x).to(x.dtype).view(groups, num_frames, channels, pixels).permute(0, 3, 1, 2)
        h = self.proj_in(h).reshape(groups * pixels, num_frames, channels)
        for block in self.transformer_blocks:
            h = block(h)
        h = self.proj_out(h).reshape(groups, pixels, num_frames, channels).permute(0, 2, 3, 1)
        return (x.reshape(groups, num_frames, channels, pixels) + h).view(batch, channels, height, width)


FrameSource = Callable[[], int]
"""Gives the frame count ``F`` to a layer that is called without one."""


class MotionLayer(nn.Module):
    """The ``motion_modules.j`` entry: a temporal transformer (the name level the keys carry)."""

    def __init__(self, temporal_transformer: TemporalTransformer) -> None:
        super().__init__()
        self.temporal_transformer = temporal_transformer
        self.frame_source: FrameSource | None = None

    def forward(self, x: Tensor, num_frames: int | None = None) -> Tensor:
        """Without ``num_frames`` (a foreign caller: ControlNet's SparseCtrl calls ``layer(x)``) the
        count comes from the layer's :attr:`frame_source` (see :meth:`MotionModule.bind_frame_source`)."""
        if num_frames is None:
            if self.frame_source is None:
                raise MotionModuleError(
                    "a temporal layer was called without a frame count and has no frame source bound"
                )
            num_frames = self.frame_source()
        return self.temporal_transformer(x, num_frames)


class MotionBlock(nn.Module):
    """The temporal layers of one UNet level (``down_blocks.i``, ``mid_block`` or ``up_blocks.i``)."""

    def __init__(self, layers: Sequence[MotionLayer]) -> None:
        super().__init__()
        self.motion_modules = nn.ModuleList(layers)

    @property
    def layers(self) -> list[MotionLayer]:
        return [cast(MotionLayer, layer) for layer in self.motion_modules]


class MotionModule(nn.Module):
    """A whole motion module: 2 layers per down level, 3 per up level, optionally 1 in the mid block.

    ``down_channels`` are the channels per down level (``up`` levels mirror them); ``pe_length``
    defaults to the variant's; ``pe_in_state_dict`` says whether the format stores PE buffers
    (AnimateLCM does not: its PE is computed). SparseCtrl's motion part has no up levels
    (``with_up_blocks=False``) and one attention block per layer.
    """

    def __init__(
        self,
        variant: str,
        down_channels: Sequence[int],
        *,
        has_mid_block: bool,
        pe_length: int | None = None,
        pe_in_state_dict: bool = True,
        num_attention_blocks: int = 2,
        with_up_blocks: bool = True,
    ) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise MotionModuleError(
                f"unknown motion module variant={variant!r}; known: {', '.join(VARIANTS)}"
            )
        info = VARIANTS[variant]
        self.variant = variant
        self.family = info.family
        self.pe_length = pe_length or info.pe_length
        self.cross_frame_groupnorm = info.cross_frame_groupnorm
        self.has_mid_block = has_mid_block
        self.beta_schedule: BetaSchedule = info.beta_schedule
        self.sha256: str | None = None
        self.short_hash: str | None = None

        def block(channels: int, count: int) -> MotionBlock:
            return MotionBlock(
                [
                    MotionLayer(
                        TemporalTransformer(
                            channels, self.pe_length, num_attention_blocks, persistent_pe=pe_in_state_dict
                        )
                    )
                    for _ in range(count)
                ]
            )

        self.down_blocks = nn.ModuleList(block(c, 2) for c in down_channels)
        self.mid_block = block(down_channels[-1], 1) if has_mid_block else None
        self.up_blocks = nn.ModuleList(block(c, 3) for c in reversed(down_channels) if with_up_blocks)

    @property
    def down_layers(self) -> list[list[MotionLayer]]:
        """Layers per down level, shallowest level first."""
        return [cast(MotionBlock, b).layers for b in self.down_blocks]

    @property
    def mid_layer(self) -> MotionLayer | None:
        return self.mid_block.layers[0] if self.mid_block is not None else None

    @property
    def up_layers(self) -> list[list[MotionLayer]]:
        """Layers per up level, deepest level first (the UNet decoder's order)."""
        return [cast(MotionBlock, b).layers for b in self.up_blocks]

    def bind_frame_source(self, source: FrameSource | None) -> None:
        """Every layer called without a frame count asks ``source`` for it (None: such calls fail)."""
        for module in self.modules():
            if isinstance(module, MotionLayer):
                module.frame_source = source

    def extra_repr(self) -> str:
        return f"variant={self.variant!r}, family={self.family!r}, pe_length={self.pe_length}"

"""Injection into the ldm / sgm ``UNetModel`` that A1111 runs (SD1.x, SD2.x, SDXL).

The UNet's blocks are ``TimestepEmbedSequential`` layer lists that call unknown layers as
``layer(x)``; each temporal layer is inserted into them (wrapped in :class:`FramedTemporal`, which
supplies the frame count), at the places the original extension uses:

* ``input_blocks`` 1, 2, 4, 5, 7, 8, 10, 11 (SD1.5; SDXL: 1, 2, 4, 5, 7, 8): the two blocks of
  level ``k`` get ``down[k][0]`` and ``down[k][1]``, appended after their ResBlock and
  SpatialTransformer (if any).
* ``middle_block`` (motion modules with a mid block: v2, AnimateLCM): ``mid`` between the
  SpatialTransformer and the last ResBlock.
* ``output_blocks`` 0..11 (SDXL: 0..8): block ``u`` gets ``up[u // 3][u % 3]``, inserted before the
  block's trailing Upsample (blocks 2, 5, 8; SDXL 2, 5), else appended.

For motion modules trained with cross-frame GroupNorm (v1, HotShot-XL) the GroupNorms of every
ResBlock and of the final ``out`` norm are made cross-frame; the spatial transformers' and the
motion module's own norms stay per frame.
"""

from __future__ import annotations

from torch import nn

from motion_module.errors import MotionModuleError
from motion_module.inject_base import (
    EditJournal,
    FrameCount,
    FramedTemporal,
    HostModule,
    check_family,
    check_layer,
    check_level_counts,
    make_cross_frame,
)
from motion_module.model import MotionLayer, MotionModule

BLOCKS_PER_FAMILY = {12: "sd15", 9: "sdxl"}


def is_ldm_unet(unet: HostModule) -> bool:
    """Whether ``unet`` has the ldm/sgm ``UNetModel`` block structure."""
    return all(hasattr(unet, name) for name in ("input_blocks", "middle_block", "output_blocks"))


def unet_family(unet: HostModule) -> str:
    """``"sd15"`` (4 levels, 12 input blocks) or ``"sdxl"`` (3 levels, 9 input blocks)."""
    counts = (len(unet.input_blocks), len(unet.output_blocks))
    family = BLOCKS_PER_FAMILY.get(counts[0])
    if family is None or counts[0] != counts[1]:
        raise MotionModuleError(
            f"unsupported UNet layout: {counts[0]} input and {counts[1]} output blocks (expected 12/12 or 9/9)"
        )
    return family


def _block_channels(block: HostModule, where: str) -> int:
    """Output channels of a UNet block, read from its leading ResBlock."""
    channels = getattr(block[0], "out_channels", None)
    if not isinstance(channels, int):
        raise MotionModuleError(f"unsupported UNet layout: {where} does not start with a ResBlock")
    return channels


def _ends_with_upsample(block: HostModule) -> bool:
    return type(block[-1]).__name__ == "Upsample"


def _placements(unet: HostModule, mm: MotionModule) -> list[tuple[HostModule, int, MotionLayer]]:
    """``(block, index, layer)`` for every temporal layer, checked against the UNet's channels."""
    placements = []
    for level, level_layers in enumerate(mm.down_layers):
        for i, layer in enumerate(level_layers):
            where = f"input_blocks[{3 * level + 1 + i}]"
            block = unet.input_blocks[3 * level + 1 + i]
            check_layer(where, layer, _block_channels(block, where))
            placements.append((block, len(block), layer))
    if mm.mid_layer is not None:
        middle = unet.middle_block
        check_layer("middle_block", mm.mid_layer, _block_channels(middle, "middle_block"))
        placements.append((middle, len(middle) - 1, mm.mid_layer))
    for level, level_layers in enumerate(mm.up_layers):
        for i, layer in enumerate(level_layers):
            where = f"output_blocks[{3 * level + i}]"
            block = unet.output_blocks[3 * level + i]
            check_layer(where, layer, _block_channels(block, where))
            placements.append((block, len(block) - _ends_with_upsample(block), layer))
    return placements


def _resblock_norms(unet: HostModule) -> list[nn.GroupNorm]:
    """The GroupNorms inside ResBlocks, and the final ``out`` norm."""
    norms = [
        sub
        for module in unet.modules()
        if type(module).__name__ == "ResBlock"
        for sub in module.modules()
        if isinstance(sub, nn.GroupNorm)
    ]
    return norms + [sub for sub in unet.out if isinstance(sub, nn.GroupNorm)]


def inject_into(unet: HostModule, mm: MotionModule, frames: FrameCount, journal: EditJournal) -> None:
    """Insert ``mm``'s temporal layers into ``unet``; everything is checked before the first edit."""
    family = unet_family(unet)
    check_family(family, mm)
    check_level_counts(mm, 4 if family == "sd15" else 3)
    placements = _placements(unet, mm)
    norms = _resblock_norms(unet) if mm.cross_frame_groupnorm else []
    for block, index, layer in placements:
        journal.insert(block, index, FramedTemporal(layer, frames))
    for norm in norms:
        make_cross_frame(journal, norm, frames)

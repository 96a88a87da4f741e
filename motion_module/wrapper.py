"""The original extension's names for motion modules, which sd-webui-controlnet imports.

ControlNet's SparseCtrl builds its motion part as ``MotionWrapper("", "", MotionModuleType.SparseCtrl)``,
loads the checkpoint's ``motion_modules`` tensors into it strictly and calls each
``down_blocks[i].motion_modules[j]`` as ``layer(x)`` inside its own network; called that way a layer
asks its bound frame source (the A1111 glue binds it to the sampling call's injection).
The other types give the original's layouts of the released modules.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from motion_module.model import MotionModule

SD15_CHANNELS = (320, 640, 1280, 1280)
SDXL_CHANNELS = (320, 640, 1280)


class MotionModuleType(Enum):
    """The original's motion-module types (member names and values as ControlNet sees them)."""

    AnimateDiffV1 = "AnimateDiff V1, Yuwei Guo, Shanghai AI Lab"
    AnimateDiffV2 = "AnimateDiff V2, Yuwei Guo, Shanghai AI Lab"
    AnimateDiffV3 = "AnimateDiff V3, Yuwei Guo, Shanghai AI Lab"
    AnimateDiffXL = "AnimateDiff SDXL, Yuwei Guo, Shanghai AI Lab"
    AnimateLCM = "AnimateLCM, Fu-Yun Wang, MMLab@CUHK"
    SparseCtrl = "SparseCtrl, Yuwei Guo, Shanghai AI Lab"
    HotShotXL = "HotShot-XL, John Mullan, Natural Synthetics Inc"


# type -> (our variant, down channels, MotionModule keyword arguments)
LAYOUTS: dict[MotionModuleType, tuple[str, tuple[int, ...], dict[str, Any]]] = {
    MotionModuleType.AnimateDiffV1: ("v1", SD15_CHANNELS, {"has_mid_block": False}),
    MotionModuleType.AnimateDiffV2: ("v2", SD15_CHANNELS, {"has_mid_block": True}),
    MotionModuleType.AnimateDiffV3: ("v3", SD15_CHANNELS, {"has_mid_block": False}),
    MotionModuleType.AnimateDiffXL: ("sdxl", SDXL_CHANNELS, {"has_mid_block": False}),
    MotionModuleType.AnimateLCM: (
        "animatelcm",
        SD15_CHANNELS,
        {"has_mid_block": True, "pe_in_state_dict": False},
    ),
    MotionModuleType.HotShotXL: ("hotshotxl", SDXL_CHANNELS, {"has_mid_block": False}),
    MotionModuleType.SparseCtrl: (
        "v3",
        SD15_CHANNELS,
        {"has_mid_block": False, "with_up_blocks": False, "num_attention_blocks": 1},
    ),
}


class MotionWrapper(MotionModule):
    """``MotionWrapper(mm_name, mm_hash, mm_type)``: an empty motion module in ``mm_type``'s layout
    with the original's state-dict keys (``operations`` is accepted and ignored)."""

    def __init__(self, mm_name: str, mm_hash: str, mm_type: MotionModuleType, operations: Any = None) -> None:
        variant, channels, options = LAYOUTS[MotionModuleType(mm_type)]
        super().__init__(variant, channels, **options)
        self.mm_name = mm_name
        self.mm_hash = mm_hash
        self.mm_type = MotionModuleType(mm_type)

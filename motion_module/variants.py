"""What each motion-module variant needs from its host: SD family, PE length, GroupNorm mode, betas."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class BetaSchedule:
    """The training noise schedule of a motion module (reference 2.8).

    ``kind`` "linear" spaces the betas linearly; "scaled_linear" spaces their square roots linearly.
    """

    kind: Literal["linear", "scaled_linear"]
    beta_start: float
    beta_end: float
    num_steps: int = 1000


@dataclass(frozen=True)
class VariantInfo:
    """Fixed facts about one variant that cannot be read from its tensors."""

    family: Literal["sd15", "sdxl"]
    pe_length: int
    cross_frame_groupnorm: bool
    beta_schedule: BetaSchedule


LINEAR_BETAS = BetaSchedule("linear", 0.00085, 0.012)
SDXL_BETAS = BetaSchedule("scaled_linear", 0.00085, 0.020)

VARIANTS: dict[str, VariantInfo] = {
    "v1": VariantInfo("sd15", 24, True, LINEAR_BETAS),
    "v2": VariantInfo("sd15", 32, False, LINEAR_BETAS),
    "v3": VariantInfo("sd15", 32, False, LINEAR_BETAS),
    "animatelcm": VariantInfo("sd15", 64, False, LINEAR_BETAS),
    "sdxl": VariantInfo("sdxl", 32, False, SDXL_BETAS),
    "hotshotxl": VariantInfo("sdxl", 24, True, LINEAR_BETAS),
}

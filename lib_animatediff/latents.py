"""img2img "I2V traditional": blend the init latent (and an optional last frame) into per-frame latents.

Frame ``i`` keeps ``α_i = max(0, 1 − i^latent_power / latent_scale)`` of the init latent and takes the
rest from noise (defaults 1 and 32: 1, 0.96875, …, 0.53125 at frame 15). With a last-frame latent,
``β_i`` is built the same way from ``latent_power_last``/``latent_scale_last`` counting back from the
video's last frame; where ``α + β > 1`` both are multiplied by ``1/(α + β)``; then frame 0 is pinned to
``(α, β) = (1, 0)`` and the last frame to ``(0, 1)``, and ``latent_i = α·init + β·last + (1 − α − β)·noise``.
Weights are computed in float32 as in the original.

Unlike the original (which sized the weights by ``video_length`` and failed when the batch held more
frames), the weights cover every row of the batch; rows past the video's last frame count their
distance to it the same way and are trimmed by the host.
"""

from __future__ import annotations

from typing import Protocol

import torch


class LatentSettings(Protocol):
    """The parameters the blend reads (``AnimateDiffParams`` has them)."""

    @property
    def video_length(self) -> int: ...
    @property
    def latent_power(self) -> float: ...
    @property
    def latent_scale(self) -> float: ...
    @property
    def latent_power_last(self) -> float: ...
    @property
    def latent_scale_last(self) -> float: ...


def decay(distances: list[int], power: float, scale: float) -> torch.Tensor:
    """``max(0, 1 − d^power / scale)`` per distance, float32."""
    return torch.tensor([1 - d**power / scale for d in distances], dtype=torch.float32).clamp(min=0)


def blend_weights(
    rows: int, settings: LatentSettings, *, with_last: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-row ``(α, β)``; ``β`` is ``None`` without a last frame."""
    if rows < 1:
        raise ValueError(f"rows={rows}: expected at least one frame")
    alpha = decay(list(range(rows)), settings.latent_power, settings.latent_scale)
    if not with_last:
        return alpha, None
    last_index = min(settings.video_length, rows) - 1 if settings.video_length > 0 else rows - 1
    beta = decay(
        [abs(last_index - i) for i in range(rows)], settings.latent_power_last, settings.latent_scale_last
    )
    total = alpha + beta
    over = total > 1
    rescale = 1 / total[over]
    alpha[over] *= rescale
    beta[over] *= rescale
    alpha[0], beta[0] = 1.0, 0.0
    alpha[last_index], beta[last_index] = 0.0, 1.0
    return alpha, beta


def blend(
    init_latent: torch.Tensor,
    noise: torch.Tensor,
    settings: LatentSettings,
    *,
    last_latent: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-frame latents ``(rows, C, H, W)`` from the (repeated) init latent, noise and the last frame.

    ``init_latent`` has one row per frame (or one row, broadcast); ``last_latent`` one row.
    """
    rows = noise.shape[0]
    if init_latent.shape[1:] != noise.shape[1:] or init_latent.shape[0] not in (1, rows):
        raise ValueError(f"init latent {tuple(init_latent.shape)} does not match noise {tuple(noise.shape)}")
    if last_latent is not None and (last_latent.dim() != 4 or last_latent.shape[1:] != noise.shape[1:]):
        raise ValueError(
            f"last-frame latent {tuple(last_latent.shape)} does not match noise {tuple(noise.shape)}"
        )
    alpha, beta = blend_weights(rows, settings, with_last=last_latent is not None)
    shape = (rows, 1, 1, 1)
    alpha = alpha.to(noise.device).view(shape)
    if beta is None:
        return init_latent * alpha + noise * (1 - alpha)
    assert last_latent is not None  # blend_weights gives beta only with a last latent
    beta = beta.to(noise.device).view(shape)
    return init_latent * alpha + last_latent * beta + noise * (1 - alpha - beta)

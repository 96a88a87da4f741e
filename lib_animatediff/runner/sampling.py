"""The runner's sampling loop: a diffusers scheduler over all frames, the UNet over context windows.

At every step the frames are split into context windows by a :class:`lib_animatediff.windows.WindowPlan`
(the same plan the A1111 hook uses); each UNet call takes the windows of equal length the plan packs
into it, with the conditional and unconditional copies as separate groups of frames (batch ``G*F``:
``G = 2*windows`` groups of ``F`` frames), and the guided noise predictions of overlapping windows
are fused per frame. With ``cfg_scale == 1`` the unconditional half is skipped. A window
whose prediction holds NaN/Inf stops sampling with an error naming the step and the frames.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from diffusers import UNet2DConditionModel
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from tqdm.auto import tqdm

from lib_animatediff.windows import WindowPlan, check_finite


@dataclass(frozen=True)
class FrameConditioning:
    """Text conditioning per frame: ``hidden`` ``(N, T, D)``; SDXL also ``pooled`` and ``time_ids``."""

    hidden: torch.Tensor
    pooled: torch.Tensor | None = None
    time_ids: torch.Tensor | None = None

    @staticmethod
    def gather(groups: Sequence[FrameConditioning], rows: torch.Tensor, num_frames: int) -> FrameConditioning:
        """The conditioning of batch rows ``g*N + f`` (frame ``f`` of ``groups[g]``; ``rows`` on the
        CPU), picked from each group without concatenating the groups: a group whose rows are one
        expanded prompt stays a view, so no ``N``-row copy of it is made."""
        group, frame = rows // num_frames, rows % num_frames
        picks = [torch.nonzero(group == g).squeeze(1) for g in range(len(groups))]

        def pick(parts: Sequence[torch.Tensor]) -> torch.Tensor:
            out = parts[0].new_empty((len(rows), *parts[0].shape[1:]))
            for part, positions in zip(parts, picks, strict=True):
                positions = positions.to(part.device)
                out.index_copy_(0, positions, part.index_select(0, frame.to(part.device)[positions]))
            return out

        def pick_optional(parts: Sequence[torch.Tensor | None]) -> torch.Tensor | None:
            present = [part for part in parts if part is not None]
            return pick(present) if present else None

        return FrameConditioning(
            pick([g.hidden for g in groups]),
            pick_optional([g.pooled for g in groups]),
            pick_optional([g.time_ids for g in groups]),
        )


class WindowedGuidedDenoiser:
    """Predicts classifier-free-guided noise for all frames, window by window.

    ``set_frames`` is the injection handle's frame-count setter (frames per group of the next call);
    ``alphas_cumprod`` (the scheduler's) gives the noise level that the ``gauss`` fuse weights use.
    """

    def __init__(
        self,
        unet: UNet2DConditionModel,
        set_frames: Callable[[int], None],
        cond: FrameConditioning,
        uncond: FrameConditioning | None,
        cfg_scale: float,
        plan: WindowPlan,
        alphas_cumprod: torch.Tensor,
    ) -> None:
        self.unet = unet
        self.set_frames = set_frames
        self.groups = [cond] if cfg_scale == 1 or uncond is None else [cond, uncond]
        self.cfg_scale = cfg_scale
        self.plan = plan
        self.alphas_cumprod = alphas_cumprod
        self.frame_evaluations = 0

    def __call__(self, latents: torch.Tensor, timestep: torch.Tensor, step: int) -> torch.Tensor:
        """Guided noise for ``latents`` ``(N, C, h, w)`` at ``timestep``; ``step`` rotates the windows."""
        num_frames = latents.shape[0]
        frame_windows = self.plan.windows(step, num_frames)
        alpha = self.alphas_cumprod[int(timestep)].item()

        def denoise(rows: torch.Tensor, frames: int) -> torch.Tensor:
            conditioning = FrameConditioning.gather(self.groups, rows, num_frames)
            prediction = self._unet(
                latents[rows.to(latents.device) % num_frames], timestep, conditioning, frames
            )
            return check_finite(prediction, step=step, rows=rows, num_frames=num_frames)

        eps = self.plan.denoise(
            denoise,
            frame_windows,
            num_frames=num_frames,
            num_groups=len(self.groups),
            sigma=((1 - alpha) / alpha) ** 0.5,
        )
        if len(self.groups) == 1:
            return eps
        eps_cond, eps_uncond = eps.chunk(2)
        return eps_uncond + self.cfg_scale * (eps_cond - eps_uncond)

    def _unet(
        self, x: torch.Tensor, timestep: torch.Tensor, conditioning: FrameConditioning, frames: int
    ) -> torch.Tensor:
        self.set_frames(frames)
        added = None
        if conditioning.pooled is not None:
            added = {"text_embeds": conditioning.pooled, "time_ids": conditioning.time_ids}
        self.frame_evaluations += x.shape[0]
        return self.unet(
            x, timestep, encoder_hidden_states=conditioning.hidden, added_cond_kwargs=added
        ).sample


def run_scheduler(
    scheduler: SchedulerMixin,
    denoiser: Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor],
    latents: torch.Tensor,
    steps: int,
    *,
    generator: torch.Generator | None = None,
    progress: bool = True,
    description: str = "sampling",
) -> torch.Tensor:
    """Denoise ``latents`` (already scaled by ``init_noise_sigma``) over ``steps`` scheduler steps."""
    scheduler.set_timesteps(steps, device=latents.device)
    for step, timestep in enumerate(tqdm(scheduler.timesteps, desc=description, disable=not progress)):
        model_input = scheduler.scale_model_input(latents, timestep)
        noise = denoiser(model_input, timestep, step)
        latents = scheduler.step(noise, timestep, latents, generator=generator).prev_sample
    return latents

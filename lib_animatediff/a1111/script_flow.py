"""One AnimateDiff generation inside A1111's ``process_images``, from parsed params to restored UNet.

Order of events (A1111 1.10.1 ``processing.process_images``):

* ``before_process`` — :meth:`AnimateDiffRun.start`: resolves the frame count (bounded by
  ControlNet batch units, which get the video's frames: :mod:`lib_animatediff.a1111.controlnet`), sets
  ``p.batch_size`` to it (one batch = one video, ``n_iter`` = number of videos), expands a
  prompt-travel prompt into per-frame prompts, writes the infotext entry and replaces ``p.sample``
  on this ``p`` by :meth:`AnimateDiffRun.sample`. Every change to the host goes through the run's
  :class:`~motion_module.journal.Journal` (:attr:`AnimateDiffRun.journal`), undone in
  ``postprocess`` or, when sampling raises, before the error leaves ``p.sample``. A parameter error instead makes ``p.sample``
  raise it, so nothing is generated and the API answers 422 (A1111 swallows hook exceptions).
* ``p.sample`` (once per batch, after A1111 applied ``override_settings`` and loaded the checkpoint
  the request asks for): loads the motion module (cached), checks it fits, merges the prompt's
  motion LoRAs (:mod:`lib_animatediff.a1111.lora`), injects it into
  ``p.sd_model``'s UNet, swaps the training noise schedule in, installs the window hook and runs
  A1111's own sampling (FreeInit repeats it), all recorded in a scope of the journal that is undone
  when the call ends, so also on exceptions, Interrupt and Skip.
* ``before_process_batch`` — img2img: init latent → per-frame latents (latent power/scale, last frame).
  Not for an img2img batch (:mod:`lib_animatediff.a1111.i2i_batch`): its frames are the init images.
* ``process_before_every_sampling`` (A1111 calls it inside ``p.sample`` with the noise of each
  sampling pass, hires included) — FreeNoise reschedules that noise in place.
* ``postprocess`` — :mod:`lib_animatediff.a1111.outputs` writes the videos and fills the result.
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path
from typing import Any

import torch

from lib_animatediff import budget, freeinit, latents, output, prompt_travel
from lib_animatediff.a1111 import controlnet, i2i_batch, infotext, outputs, roots, settings, xyz
from lib_animatediff.a1111.compat import foreign_layers_follow
from lib_animatediff.a1111.control_hints import ControlHints
from lib_animatediff.a1111.denoiser_hook import FrameWindowHook
from lib_animatediff.a1111.lora import apply_loras
from lib_animatediff.a1111.model_cache import cache, keep_on_cpu
from lib_animatediff.a1111.schedule_swap import swap_training_schedule
from lib_animatediff.a1111.script_args import RequestError, parse_script_args
from lib_animatediff.params import AnimateDiffParams
from lib_animatediff.resolve import HostFacts, resolve
from motion_module.journal import Journal
from motion_module.model import MotionModule

RUN_ATTRIBUTE = "animatediff_run"  # the AnimateDiffRun of a processing object
COMPUTE_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
logger = logging.getLogger(__name__)


def current_run(p: Any) -> AnimateDiffRun | None:
    """The AnimateDiff run attached to processing object ``p``, if any."""
    return getattr(p, RUN_ATTRIBUTE, None)


def refuse(p: Any, error: Exception) -> None:
    """Make generation stop with ``error`` at its first sampling call, before anything is changed."""

    def raise_error(*args: Any, **kwargs: Any) -> None:
        raise RequestError.from_error(error)

    p.sample = raise_error


class AnimateDiffRun:
    """The state of one enabled AnimateDiff generation, kept on ``p`` (never in module globals)."""

    def __init__(self, p: Any, params: AnimateDiffParams, *, is_img2img: bool) -> None:
        self.i2i_batch = i2i_batch.batch_of(p) if is_img2img else None
        allowed = roots.allowed_roots(p)
        self.controlnet = controlnet.plan_feed(
            p,
            roots=allowed,
            backend=settings.get("animatediff_default_frame_extract_method"),
            inpaint_masks=self.i2i_batch.mask_folder if self.i2i_batch is not None else None,
        )
        self.resolved = resolve(params, host_facts(self.i2i_batch, self.controlnet, allowed))
        self.params = self.resolved.params
        if self.params.interp != params.interp:  # FILM without its model file: optical flow runs
            logger.warning("%s", outputs.missing_film_model())
        budget.check(budget.estimate(self.params, p.width, p.height), settings.memory_budget())
        output.preflight(self.params, p.outpath_samples, outdir_field="outpath_samples")
        self.p = p
        self.journal = Journal("AnimateDiff run")
        self.is_img2img = is_img2img
        self.num_frames = self.params.frame_count
        self.prompt = p.prompt
        self.travel: prompt_travel.PromptSchedule | None = None
        self.hook: FrameWindowHook | None = None
        self.motion_module: MotionModule | None = None
        self.incomplete_batches: set[int] = set()
        self.init_latent: torch.Tensor | None = None
        self.last_latent: torch.Tensor | None = None
        self.freeinit_noise: torch.Tensor | None = None
        self._host_sample = p.sample

    # ---- before_process ---------------------------------------------------------------------
    def start(self) -> None:
        """Set ``p`` up for a video (see the module docstring); a failure leaves ``p`` unchanged."""
        try:
            self._set_up()
        except BaseException:
            self._undo_after_error()
            raise

    def _set_up(self) -> None:
        p, params, journal = self.p, self.params, self.journal
        if isinstance(p.prompt, str):
            self.travel = prompt_travel.parse(p.prompt, self.num_frames)
        if self.travel is not None and self.travel.is_travel:
            journal.set_attr(p, "prompt", self.travel.frame_prompts() * p.n_iter)
        journal.set_attr(p, "batch_size", self.num_frames)
        if self.controlnet is not None:
            self.controlnet.apply(p, self.resolved)
            journal.record(self.controlnet.remove_frames, "ControlNet frames folder")
        if self.i2i_batch is not None:
            i2i_batch.trim_frames(p, self.num_frames)
        journal.set_attr(
            p,
            "do_not_save_samples",
            "PNG" not in params.format or bool(settings.get("animatediff_save_to_custom")),
        )
        journal.set_attr(p, RUN_ATTRIBUTE, self)
        journal.set_attr(p, "sample", self.sample)

    # ---- p.sample ----------------------------------------------------------------------------
    def sample(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        """A1111's sampling with the motion module in; everything restored afterwards. An error
        ends the generation (A1111 skips ``postprocess``), so then the whole run is undone."""
        try:
            return self._sample(*args, **kwargs)
        except BaseException:
            self._undo_after_error()
            raise

    def _sample(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        from modules import devices, sd_samplers, sd_samplers_common, shared

        from motion_module import MotionModuleError, inject

        p = self.p
        sd_model = p.sd_model
        unet = sd_model.model.diffusion_model
        weight = next(unet.parameters())
        dtype = (
            weight.dtype if weight.dtype in COMPUTE_DTYPES else devices.dtype_unet
        )  # fp8-stored UNets compute in it
        try:
            mm = cache.get(self.params.model, device=weight.device, dtype=dtype)
            self.params.validate(pe_length=mm.pe_length)
        except MotionModuleError as error:
            raise RequestError(str(error), field="model") from error
        except ValueError as error:
            raise RequestError.from_error(error) from error
        self.motion_module = mm
        infotext.write(p, self.params, mm, is_img2img=self.is_img2img)
        travel = self.travel if self.travel is not None and self.travel.is_travel else None
        sampling = self.journal.scope("sampling call")
        try:
            apply_loras(sampling, p, mm, unet)
            handle = inject(unet, mm)
            sampling.record(handle.restore, "motion module injection")
            swap_training_schedule(sampling, sd_model, mm.beta_schedule)
            self.hook = FrameWindowHook(
                sd_model,
                handle,
                self.resolved.plan,
                self.num_frames,
                state=shared.state,
                interrupted=sd_samplers_common.InterruptedException,
                travel_cond=partial(self._travel_cond, travel) if travel is not None else None,
                control_hints=ControlHints.of(p, self.num_frames),
            ).install(sampling)
            if self.is_img2img:
                # the sampler built in p.init took its sigmas from the schedule swapped out above
                sampling.set_attr(p, "sampler", sd_samplers.create_sampler(p.sampler_name, sd_model))
            with foreign_layers_follow(handle):
                if self.params.freeinit_enable:
                    samples = self._sample_freeinit(*args, **kwargs)
                else:
                    samples = self._host_sample(*args, **kwargs)
        finally:
            self.hook = None
            try:
                sampling.undo()
            finally:
                if keep_on_cpu(sd_model):
                    cache.offload()
        if shared.state.interrupted or shared.state.skipped:
            self.incomplete_batches.add(p.iteration)
        return samples

    def _undo_after_error(self) -> None:
        """Undo the whole run while an error propagates; a failing undo is logged, not raised over it."""
        try:
            self.journal.undo()
        except Exception:
            logger.exception("AnimateDiff: restoring the host after the error failed")

    def _travel_cond(self, travel: prompt_travel.PromptSchedule, cond: Any) -> Any:
        return prompt_travel.interpolate(cond, travel, closed=self.params.prompt_wraps)

    def _sample_freeinit(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        """Sample ``freeinit_iters`` times; each pass after the first starts from noise whose low
        frequencies come from the previous result (hires fix, if on, runs in the last pass only)."""
        from modules import shared

        p, params, state = self.p, self.params, shared.state
        rng = p.rng
        initial = rng.next()
        hires = getattr(p, "enable_hr", False)
        last = params.freeinit_iters - 1
        state.job_count += last
        passes = self.journal.scope("FreeInit passes")

        def sample_from(noise: torch.Tensor, iteration: int) -> torch.Tensor:
            passes.set_attr(p, "enable_hr", hires and iteration == last)
            passes.set_attr(rng, "next", lambda: noise)
            self.freeinit_noise = noise if iteration else None
            return self._host_sample(*args, **kwargs)

        try:
            samples = sample_from(initial, 0)
            for iteration in range(1, last + 1):
                if state.interrupted or state.skipped:
                    break
                state.nextjob()
                fresh = self._fresh_noise(initial, iteration)
                noise = freeinit.reinit_noise(
                    samples, initial, p.sd_model.alphas_cumprod, params, fresh_noise=fresh
                )
                samples = sample_from(noise, iteration)
        finally:
            self.freeinit_noise = None
            passes.undo()
        return samples

    def _fresh_noise(self, like: torch.Tensor, iteration: int) -> torch.Tensor | None:
        """FreeInit "fresh" mode: new noise for a pass, seeded by the video's seed and the pass."""
        if self.params.freeinit_noise != "fresh":
            return None
        generator = torch.Generator().manual_seed(int(self.p.seeds[0]) * 101 + iteration)
        return torch.randn(like.shape, generator=generator).to(like)

    # ---- process_before_every_sampling -----------------------------------------------------------
    def reschedule_noise(self, noise: torch.Tensor) -> None:
        """FreeNoise: after the first context window, each chunk of frames gets a seeded shuffle of the
        noise one context earlier (:meth:`lib_animatediff.windows.WindowPlan.freenoise`), in place, so A1111's
        sampler starts from it. FreeInit's later passes start from noise built on the rescheduled
        noise already, which is left as it is."""
        params = self.params
        if params.noise != "freenoise" or noise is self.freeinit_noise or noise.shape[0] != self.num_frames:
            return
        generator = torch.Generator().manual_seed(int(self.p.seeds[0]))
        noise.copy_(self.resolved.plan.freenoise(noise, generator))

    # ---- before_process_batch ----------------------------------------------------------------
    def prepare_init_latents(self) -> None:
        """img2img: blend the init latent towards noise per frame (and towards the last frame); an
        img2img batch already has one init latent per frame."""
        if self.i2i_batch is not None:
            return
        p, params = self.p, self.params
        if self.init_latent is None:
            self.init_latent = p.init_latent.clone()
            if params.last_frame is not None:
                self.last_latent = encode_last_frame(p, params.last_frame).to(self.init_latent)
        blended = latents.blend(self.init_latent, p.rng.next(), params, last_latent=self.last_latent)
        self.journal.set_attr(p, "init_latent", blended)

    # ---- postprocess_batch_list / postprocess ---------------------------------------------------
    def restore_prompts(self) -> None:
        """Per-frame infotexts show the travel prompt as the user wrote it."""
        if self.travel is not None and self.travel.is_travel:
            self.p.prompts = [self.prompt] * len(self.p.prompts)

    def finish(self) -> None:
        """Undo every change the run made to the host (``p`` gets its batch size, prompt and
        ``sample`` back, and the run is detached)."""
        self.journal.undo()


def host_facts(
    batch: i2i_batch.BatchFrames | None, feed: controlnet.FeedPlan | None, allowed: list[Path] | None
) -> HostFacts:
    """What A1111 and its settings tell :func:`lib_animatediff.resolve.resolve` about this run."""
    return HostFacts(
        batch_frames=batch.count if batch is not None else None,
        batch_folder=batch.folder if batch is not None else None,
        unit_frames=feed.unit_frames() if feed is not None else (),
        source_frames_for=feed.source_frames_for() if feed is not None else None,
        roots=allowed,
        max_frames=int(settings.get("animatediff_max_frames")) or None,
        backend=settings.get("animatediff_default_frame_extract_method"),
        film_dirs=tuple(outputs.film_dirs()),
        max_frames_per_call=int(settings.get("animatediff_max_frames_per_call")) or None,
    )


def encode_last_frame(p: Any, image: Any) -> torch.Tensor:
    """The optional img2img last frame (PIL image or base64) as a latent of the init latent's size."""
    import numpy as np
    from modules import devices, images

    if isinstance(image, str):
        from modules.api import api

        image = api.decode_base64_to_image(image)
    image = images.resize_image(p.resize_mode, image.convert("RGB"), p.width, p.height)
    pixels = torch.from_numpy(np.asarray(image, dtype=np.float32) / 127.5 - 1.0).permute(2, 0, 1)[None]
    model = p.sd_model
    encoded = model.encode_first_stage(pixels.to(device=devices.device, dtype=devices.dtype_vae))
    return model.get_first_stage_encoding(encoded) if hasattr(model, "get_first_stage_encoding") else encoded


def before_process(p: Any, args: Any, *, is_img2img: bool) -> AnimateDiffRun | None:
    """Parse the script's arguments (X/Y/Z plot axis values over them) and set ``p`` up for a video;
    a bad value refuses the generation."""
    try:
        params = parse_script_args(
            args,
            is_img2img=is_img2img,
            default_format=settings.get("animatediff_default_save_formats"),
            overrides=xyz.overrides_of(p),
            roots=roots.allowed_roots(p),
        )
        if not params.enable:
            return None
        run = AnimateDiffRun(p, params, is_img2img=is_img2img)
        run.start()
    except ValueError as error:
        logger.error("%s", error)
        refuse(p, error)
        return None
    logger.info("AnimateDiff will generate %d frames per video (%d video(s)).", run.num_frames, p.n_iter)
    return run


def on_cfg_denoiser(cfg_params: Any) -> None:
    """``on_cfg_denoiser`` callback: hand the call to the active run's window hook, if any."""
    run = current_run(getattr(cfg_params.denoiser, "p", None))
    if run is not None and run.hook is not None:
        run.hook.on_cfg_denoiser(cfg_params)

"""Mirrors A1111 ``modules/processing.py``: the processing objects and ``process_images``.

The order of script hooks (``process_before_every_sampling`` with the noise before each sampling
pass, as in 1.10), the per-batch loop (``p.rng``, ``p.sample``, VAE decode, per-image
saving and infotext), the grid put in front of the images, and the way an exception raised while
sampling skips ``postprocess`` follow A1111 1.10.1. Prompt parsing, extra-network activation
(``<lora:…>`` tags are only parsed into ``p.extra_network_data``), face restore,
non-latent hires upscalers and inpaint overlays are left out; text encoding and the VAE come from the fake ``sd_model``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps

from . import extra_networks, images, scripts, sd_samplers, shared


def fix_seed(p) -> None:
    """A seed of -1 (or None) becomes a random one, as A1111's ``fix_seed`` does."""
    if p.seed is None or int(p.seed) == -1:
        p.seed = random.randrange(4294967294)


class ImageRNG:
    """``rng.ImageRNG``: one seeded generator per image; ``next()`` draws the batch's noise."""

    def __init__(self, shape, seeds):
        self.shape = tuple(shape)
        self.generators = [torch.Generator().manual_seed(int(seed)) for seed in seeds]

    def next(self) -> torch.Tensor:
        return torch.stack([torch.randn(self.shape, generator=g) for g in self.generators])


@dataclass(repr=False)
class StableDiffusionProcessing:
    sd_model: Any = None
    outpath_samples: str = ""
    prompt: Any = ""
    negative_prompt: str = ""
    seed: int = 1
    sampler_name: str = "Euler"
    batch_size: int = 1
    n_iter: int = 1
    steps: int = 3
    cfg_scale: float = 7.0
    width: int = 64
    height: int = 64
    s_min_uncond: float = 0.0
    do_not_save_samples: bool = False
    do_not_save_grid: bool = True
    is_api: bool = False
    scripts: Any = None
    script_args: list = field(default_factory=list)
    override_settings: dict = field(default_factory=dict)
    extra_generation_params: dict = field(default_factory=dict)
    disable_extra_networks: bool = False

    def __post_init__(self):
        self.sampler = None
        self.rng = None
        self.iteration = 0
        self.batch_index = 0
        self.c = None
        self.uc = None
        self.extra_network_data = None

    def setup_prompts(self):
        prompts = (
            self.prompt if isinstance(self.prompt, list) else [self.prompt] * (self.batch_size * self.n_iter)
        )
        self.all_prompts = prompts
        self.all_negative_prompts = [self.negative_prompt] * len(prompts)

    def parse_extra_network_prompts(self):
        self.prompts, self.extra_network_data = extra_networks.parse_prompts(self.prompts)

    def setup_conds(self):
        self.c = self.sd_model.get_learned_conditioning(self.prompts)
        self.uc = self.sd_model.get_learned_conditioning(self.negative_prompts)

    def close(self):
        """A1111's callers close ``p`` after ``process_images`` (``with closing(p)``), also on errors."""
        self.sampler = None
        self.c = None
        self.uc = None

    def save_samples(self) -> bool:
        state = shared.state
        return (
            shared.opts.samples_save
            and not self.do_not_save_samples
            and (shared.opts.save_incomplete_images or (not state.interrupted and not state.skipped))
        )

    def init(self, all_prompts, all_seeds, all_subseeds):
        pass


LATENT_UPSCALE_MODES = {"Latent": "bilinear", "Latent (nearest)": "nearest"}


class DecodedSamples(list):
    """``processing.DecodedSamples``: images the hires pass already decoded (``process_images`` skips decoding)."""

    already_decoded = True


@dataclass(repr=False)
class StableDiffusionProcessingTxt2Img(StableDiffusionProcessing):
    """Txt2img with A1111's hires fix: a first pass, then ``sample_hr_pass`` (latent upscalers only)."""

    enable_hr: bool = False
    denoising_strength: float = 0.75
    hr_scale: float = 2.0
    hr_upscaler: str = "Latent"
    hr_second_pass_steps: int = 0
    hr_sampler_name: str | None = None
    hr_prompt: str = ""
    hr_negative_prompt: str = ""

    def __post_init__(self):
        super().__post_init__()
        self.hr_c = None
        self.hr_uc = None
        self.is_hr_pass = False

    def setup_prompts(self):
        super().setup_prompts()
        hr_prompt = self.hr_prompt or self.prompt
        hr_negative = self.hr_negative_prompt or self.negative_prompt
        count = len(self.all_prompts)
        self.all_hr_prompts = hr_prompt if isinstance(hr_prompt, list) else [hr_prompt] * count
        self.all_hr_negative_prompts = [hr_negative] * count

    def init(self, all_prompts, all_seeds, all_subseeds):
        if self.enable_hr:
            if self.hr_upscaler not in LATENT_UPSCALE_MODES:
                raise ValueError(f"fake host: only latent upscalers, not {self.hr_upscaler!r}")
            self.extra_generation_params["Denoising strength"] = self.denoising_strength
            self.hr_upscale_to_x = int(self.width * self.hr_scale)
            self.hr_upscale_to_y = int(self.height * self.hr_scale)

    def setup_conds(self):
        super().setup_conds()
        self.hr_c = None
        self.hr_uc = None

    def calculate_hr_conds(self):
        if self.hr_c is not None:
            return
        batch = slice(self.iteration * self.batch_size, (self.iteration + 1) * self.batch_size)
        self.hr_prompts = self.all_hr_prompts[batch]
        self.hr_negative_prompts = self.all_hr_negative_prompts[batch]
        self.hr_uc = self.sd_model.get_learned_conditioning(self.hr_negative_prompts)
        self.hr_c = self.sd_model.get_learned_conditioning(self.hr_prompts)

    def sample(self, conditioning, unconditional_conditioning, seeds, subseeds, subseed_strength, prompts):
        self.sampler = sd_samplers.create_sampler(self.sampler_name, self.sd_model)
        x = self.rng.next()
        if self.scripts is not None:
            self.scripts.process_before_every_sampling(
                p=self, x=x, noise=x, c=conditioning, uc=unconditional_conditioning
            )
        image_conditioning = torch.zeros(x.shape[0], 5, 1, 1)
        samples = self.sampler.sample(
            self, x, conditioning, unconditional_conditioning, image_conditioning=image_conditioning
        )
        if not self.enable_hr:
            return samples
        return self.sample_hr_pass(samples, None, seeds, subseeds, subseed_strength, prompts)

    def sample_hr_pass(self, samples, decoded_samples, seeds, subseeds, subseed_strength, prompts):
        """Upscale the latents, then img2img them at the hires size with a fresh sampler and hires conds."""
        if shared.state.interrupted:
            return samples
        self.is_hr_pass = True
        self.sampler = sd_samplers.create_sampler(self.hr_sampler_name or self.sampler_name, self.sd_model)
        size = (self.hr_upscale_to_y // 8, self.hr_upscale_to_x // 8)
        samples = torch.nn.functional.interpolate(
            samples, size=size, mode=LATENT_UPSCALE_MODES[self.hr_upscaler], antialias=False
        )
        image_conditioning = torch.zeros(samples.shape[0], 5, 1, 1)
        shared.state.nextjob()
        self.rng = ImageRNG(samples.shape[1:], self.seeds)
        noise = self.rng.next()
        self.calculate_hr_conds()
        if self.scripts is not None:
            self.scripts.process_before_every_sampling(
                p=self, x=samples, noise=noise, c=self.hr_c, uc=self.hr_uc
            )
        samples = self.sampler.sample_img2img(
            self,
            samples,
            noise,
            self.hr_c,
            self.hr_uc,
            steps=self.hr_second_pass_steps or self.steps,
            image_conditioning=image_conditioning,
        )
        self.sampler = None
        decoded = DecodedSamples(decode(self.sd_model, samples))
        self.is_hr_pass = False
        return decoded


@dataclass(repr=False)
class StableDiffusionProcessingImg2Img(StableDiffusionProcessing):
    """Img2img: every init image encoded (one repeated over the batch); an inpaint mask as A1111 turns
    it into a binary mask (alpha or luminance), inverted on request, latent mask + overlays; fill
    modes 0/1/3 (2, latent noise, is left out), no blur and no "only masked" crop."""

    init_images: list = field(default_factory=list)
    denoising_strength: float = 0.75
    resize_mode: int = 0
    image_mask: Any = None
    inpainting_mask_invert: int = 0
    inpainting_fill: int = 1
    inpaint_full_res: bool = False

    def __post_init__(self):
        super().__post_init__()
        self.mask = None
        self.nmask = None
        self.overlay_images = None
        self.color_corrections = None
        self.mask_for_overlay = None
        self.paste_to = None

    def binary_mask(self) -> Image.Image:
        mask = self.image_mask
        mask = mask.getchannel("A") if mask.mode == "RGBA" else mask.convert("L")
        mask = mask.point(lambda value: 255 if value >= 128 else 0)
        if self.inpainting_mask_invert:
            mask = ImageOps.invert(mask)
        return mask.resize((self.width, self.height))

    def init(self, all_prompts, all_seeds, all_subseeds):
        self.sampler = sd_samplers.create_sampler(self.sampler_name, self.sd_model)
        mask = self.binary_mask() if self.image_mask is not None else None
        if mask is not None:
            self.mask_for_overlay = mask
            self.overlay_images = []
        pixels = []
        for init_image in self.init_images:
            image = init_image.convert("RGB").resize((self.width, self.height))
            if mask is not None:
                keep = Image.new("RGBA", image.size)
                keep.paste(image.convert("RGBA"), mask=ImageOps.invert(mask))
                self.overlay_images.append(keep)
            pixels.append(np.asarray(image, dtype=np.float32) / 127.5 - 1.0)
        if len(pixels) == 1:
            pixels = pixels * self.batch_size
            if self.overlay_images is not None:
                self.overlay_images = self.overlay_images * self.batch_size
        elif len(pixels) <= self.batch_size:
            self.batch_size = len(pixels)
        else:
            raise RuntimeError(
                f"bad number of images passed: {len(pixels)}; expecting {self.batch_size} or less"
            )
        batch = torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2)
        self.init_latent = self.sd_model.encode_first_stage(batch)
        if mask is not None:
            size = (self.init_latent.shape[3], self.init_latent.shape[2])
            latent_mask = np.around(np.asarray(mask.resize(size), dtype=np.float32) / 255.0)
            latent_mask = torch.from_numpy(latent_mask)[None].expand(self.init_latent.shape[1], -1, -1)
            self.mask = 1.0 - latent_mask
            self.nmask = latent_mask.clone()
            if self.inpainting_fill == 3:
                self.init_latent = self.init_latent * self.mask
        self.image_conditioning = torch.zeros(self.batch_size, 5, 1, 1)

    def sample(self, conditioning, unconditional_conditioning, seeds, subseeds, subseed_strength, prompts):
        x = self.rng.next()
        if self.scripts is not None:
            self.scripts.process_before_every_sampling(
                p=self, x=self.init_latent, noise=x, c=conditioning, uc=unconditional_conditioning
            )
        return self.sampler.sample_img2img(
            self,
            self.init_latent,
            x,
            conditioning,
            unconditional_conditioning,
            image_conditioning=self.image_conditioning,
        )


class Processed:
    def __init__(
        self, p, images_list, seed=-1, info="", all_seeds=None, index_of_first_image=0, infotexts=None
    ):
        self.images = images_list
        self.info = info
        self.seed = seed
        self.all_seeds = all_seeds or []
        self.all_prompts = p.all_prompts
        self.index_of_first_image = index_of_first_image
        self.infotexts = infotexts or [info]
        self.extra_generation_params = p.extra_generation_params


def create_infotext(p, index: int) -> str:
    """``Prompt\\nNegative prompt: ...\\nSteps: ..., Seed: ..., <extra generation params>`` as A1111 writes it."""
    params = {"Steps": p.steps, "Sampler": p.sampler_name, "CFG scale": p.cfg_scale, "Seed": p.seeds[index]}
    params.update(p.extra_generation_params)
    tail = ", ".join(f"{k}: {v}" if "," not in str(v) else f'{k}: "{v}"' for k, v in params.items())
    return f"{p.prompts[index]}\nNegative prompt: {p.negative_prompts[index]}\n{tail}"


def decode(sd_model, samples: torch.Tensor) -> torch.Tensor:
    x = torch.stack([sd_model.decode_first_stage(s[None])[0] for s in samples]).float()
    return torch.clamp((x + 1.0) / 2.0, 0.0, 1.0)


def process_images(p) -> Processed:
    if p.scripts is not None:
        p.scripts.before_process(p)
    return process_images_inner(p)


def process_images_inner(p) -> Processed:
    state = shared.state
    p.setup_prompts()
    p.all_seeds = [int(p.seed) + i for i in range(len(p.all_prompts))]
    p.all_subseeds = list(p.all_seeds)
    if p.scripts is not None:
        p.scripts.process(p)
    infotexts, output_images = [], []
    with torch.no_grad():
        p.init(p.all_prompts, p.all_seeds, p.all_subseeds)
        state.job_count = p.n_iter
        for n in range(p.n_iter):
            p.iteration = n
            if state.skipped:
                state.skipped = False
            if state.interrupted:
                break
            batch = slice(n * p.batch_size, (n + 1) * p.batch_size)
            p.prompts, p.negative_prompts = p.all_prompts[batch], p.all_negative_prompts[batch]
            p.seeds, p.subseeds = p.all_seeds[batch], p.all_subseeds[batch]
            p.rng = ImageRNG((4, p.height // 8, p.width // 8), p.seeds)
            if p.scripts is not None:
                p.scripts.before_process_batch(
                    p, batch_number=n, prompts=p.prompts, seeds=p.seeds, subseeds=p.subseeds
                )
            p.parse_extra_network_prompts()
            if p.scripts is not None:
                p.scripts.process_batch(
                    p, batch_number=n, prompts=p.prompts, seeds=p.seeds, subseeds=p.subseeds
                )
            p.setup_conds()
            samples = p.sample(
                conditioning=p.c,
                unconditional_conditioning=p.uc,
                seeds=p.seeds,
                subseeds=p.subseeds,
                subseed_strength=0,
                prompts=p.prompts,
            )
            already_decoded = getattr(samples, "already_decoded", False)
            x_samples = torch.stack(list(samples)) if already_decoded else decode(p.sd_model, samples)
            state.nextjob()
            if p.scripts is not None:
                batch_params = scripts.PostprocessBatchListArgs(list(x_samples))
                p.scripts.postprocess_batch_list(p, batch_params, batch_number=n)
                x_samples = batch_params.images
            save_samples = p.save_samples()
            for i, x_sample in enumerate(x_samples):
                p.batch_index = i
                array = (255.0 * np.moveaxis(x_sample.cpu().numpy(), 0, 2)).astype(np.uint8)
                image = Image.fromarray(array)
                if p.scripts is not None:
                    pp = scripts.PostprocessImageArgs(image)
                    p.scripts.postprocess_image(p, pp)
                    image = pp.image
                text = create_infotext(p, i)
                if save_samples:
                    images.save_image(image, p.outpath_samples, "", p.seeds[i], p.prompts[i], info=text, p=p)
                infotexts.append(text)
                image.info["parameters"] = text
                output_images.append(image)
        index_of_first_image = 0
        if shared.opts.return_grid and not (len(output_images) < 2 and shared.opts.grid_only_if_multiple):
            grid = Image.new("RGB", output_images[0].size)
            output_images.insert(0, grid)
            infotexts.insert(0, infotexts[0])
            index_of_first_image = 1
    res = Processed(
        p,
        output_images,
        seed=p.all_seeds[0],
        info=infotexts[0] if infotexts else "",
        all_seeds=p.all_seeds,
        index_of_first_image=index_of_first_image,
        infotexts=infotexts,
    )
    if p.scripts is not None:
        p.scripts.postprocess(p, res)
    return res

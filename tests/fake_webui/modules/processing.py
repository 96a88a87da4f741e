"""Mirrors A1111 ``modules/processing.py``: the processing objects and ``process_images``.

The order of script hooks, the per-batch loop (``p.rng``, ``p.sample``, VAE decode, per-image
saving and infotext), the grid put in front of the images, and the way an exception raised while
sampling skips ``postprocess`` follow A1111 1.10.1. Prompt parsing, extra networks, face restore,
hires fix and masks are left out; text encoding and the VAE come from the fake ``sd_model``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image

from . import images, scripts, sd_samplers, shared


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

    def __post_init__(self):
        self.sampler = None
        self.rng = None
        self.iteration = 0
        self.batch_index = 0
        self.c = None
        self.uc = None

    def setup_prompts(self):
        prompts = (
            self.prompt if isinstance(self.prompt, list) else [self.prompt] * (self.batch_size * self.n_iter)
        )
        self.all_prompts = prompts
        self.all_negative_prompts = [self.negative_prompt] * len(prompts)

    def setup_conds(self):
        self.c = self.sd_model.get_learned_conditioning(self.prompts)
        self.uc = self.sd_model.get_learned_conditioning(self.negative_prompts)

    def save_samples(self) -> bool:
        state = shared.state
        return (
            shared.opts.samples_save
            and not self.do_not_save_samples
            and (shared.opts.save_incomplete_images or (not state.interrupted and not state.skipped))
        )

    def init(self, all_prompts, all_seeds, all_subseeds):
        pass


@dataclass(repr=False)
class StableDiffusionProcessingTxt2Img(StableDiffusionProcessing):
    def sample(self, conditioning, unconditional_conditioning, seeds, subseeds, subseed_strength, prompts):
        self.sampler = sd_samplers.create_sampler(self.sampler_name, self.sd_model)
        x = self.rng.next()
        image_conditioning = torch.zeros(x.shape[0], 5, 1, 1)
        return self.sampler.sample(
            self, x, conditioning, unconditional_conditioning, image_conditioning=image_conditioning
        )


@dataclass(repr=False)
class StableDiffusionProcessingImg2Img(StableDiffusionProcessing):
    init_images: list = field(default_factory=list)
    denoising_strength: float = 0.75
    resize_mode: int = 0

    def init(self, all_prompts, all_seeds, all_subseeds):
        self.sampler = sd_samplers.create_sampler(self.sampler_name, self.sd_model)
        image = np.asarray(
            self.init_images[0].convert("RGB").resize((self.width, self.height)), dtype=np.float32
        )
        pixels = torch.from_numpy(image / 127.5 - 1.0).permute(2, 0, 1)[None]
        self.init_latent = self.sd_model.encode_first_stage(pixels).repeat(self.batch_size, 1, 1, 1)
        self.image_conditioning = torch.zeros(self.batch_size, 5, 1, 1)

    def sample(self, conditioning, unconditional_conditioning, seeds, subseeds, subseed_strength, prompts):
        x = self.rng.next()
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
            x_samples = decode(p.sd_model, samples)
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

"""img2img Batch tab → one video: every input image is one frame of a single AnimateDiff generation.

A1111's ``modules.img2img.process_batch`` makes one generation per image. With AnimateDiff enabled
the batch is taken over by :func:`animatediff_i2i_batch` (same signature), reached two ways:

* sd-webui-controlnet's hijack of ``process_batch`` imports it from ``scripts.animatediff_i2ibatch``
  (the original extension's module path);
* without ControlNet, :func:`install` (called when our script loads) wraps
  ``modules.img2img.process_batch``: calls with AnimateDiff enabled go to us, all others to the
  function it wrapped (A1111's, or ControlNet's hijack when that loaded first). Installing twice
  is a no-op; :func:`uninstall` (on script unload) restores the wrapped function.

The images become ``p.init_images`` (EXIF orientation applied), so A1111 encodes one init latent per
frame. Masks: one file is used for every frame; one per image (paired by file stem, else in name
order) replaces ``p.init`` by :func:`init_per_frame_masks`, which runs A1111's own ``init`` once per
frame (binary mask, invert, blur, inpaint-full-res crop, fill modes) and stacks the results.
:class:`BatchFrames` on ``p`` tells the run (``script_flow``) to fit the video to the images and to
skip its per-frame latent blending.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lib_animatediff.coercion import ParamsError
from lib_animatediff.params import AnimateDiffParams

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff")
BATCH_ATTRIBUTE = "animatediff_i2i_batch"  # the BatchFrames of a processing object
WRAPPER_MARK = "animatediff_process_batch"
SCRIPT_TITLE = "animatediff"
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchFrames:
    """The frames of an img2img batch: how many, the input folder (None for uploaded files) and the
    inpaint mask folder (None without masks)."""

    count: int
    folder: str | None
    mask_folder: str | None = None


def batch_of(p: Any) -> BatchFrames | None:
    """The img2img batch ``p`` renders as one video, if any."""
    return getattr(p, BATCH_ATTRIBUTE, None)


def list_input_images(source: Any) -> tuple[list[Path], str | None]:
    """The batch's image files in name order and the folder they came from.

    ``source`` is a folder (searched recursively, as A1111 does) or, A1111 1.9+, a list of uploaded
    files (objects with ``.name`` or paths). Raises ``ParamsError`` naming ``input``.
    """
    if isinstance(source, (str, Path)):
        folder = Path(str(source).strip())
        if not folder.is_dir():
            raise ParamsError("input", str(source), "is not a folder")
        files = sorted(path for path in folder.rglob("*") if path.suffix.lower() in IMAGE_EXTENSIONS)
        found, origin = files, str(folder)
    else:
        found = [Path(getattr(item, "name", item)) for item in source or []]
        origin = None
        missing = [str(path) for path in found if not path.is_file()]
        if missing:
            raise ParamsError("input", missing[0], "uploaded file not found")
    if not found:
        raise ParamsError("input", str(source), "contains no images (" + ", ".join(IMAGE_EXTENSIONS) + ")")
    return found, origin


def list_masks(mask_dir: str | None, images: Sequence[Path]) -> list[Path]:
    """The mask for each frame: ``[]`` without masks, one mask for all, or one per image.

    Per-image masks pair by file stem when every image has one, else in name order. Raises
    ``ParamsError`` naming ``inpaint_mask_dir`` when the count is neither 1 nor the image count.
    """
    if not mask_dir or not str(mask_dir).strip():
        return []
    folder = Path(str(mask_dir).strip())
    if not folder.is_dir():
        raise ParamsError("inpaint_mask_dir", str(mask_dir), "is not a folder")
    masks = sorted(path for path in folder.iterdir() if path.is_file())
    if len(masks) in (0, 1):
        return masks
    if len(masks) != len(images):
        raise ParamsError(
            "inpaint_mask_dir",
            str(mask_dir),
            f"holds {len(masks)} masks; give 1 mask or one per image ({len(images)})",
        )
    by_stem = {path.stem: path for path in masks}
    if all(image.stem in by_stem for image in images):
        return [by_stem[image.stem] for image in images]
    return masks


def read_image(path: Path) -> Any:
    """An image file, fully loaded, turned upright by its EXIF orientation."""
    from PIL import Image, ImageOps

    with Image.open(path) as image:
        image.load()
        return ImageOps.exif_transpose(image)


def read_images(paths: Sequence[Path], field: str) -> list[Any]:
    """Every file of ``paths`` read; an unreadable one raises ``ParamsError`` naming ``field`` and the file."""
    images = []
    for path in paths:
        try:
            images.append(read_image(path))
        except OSError as error:
            raise ParamsError(field, str(path), f"not a readable image ({error})") from None
    return images


def trim_frames(p: Any, count: int) -> None:
    """Keep the first ``count`` init images (and per-frame masks)."""
    p.init_images = list(p.init_images[:count])
    if isinstance(p.image_mask, list):
        p.image_mask = list(p.image_mask[:count])


def init_per_frame_masks(p: Any, host_init: Callable[..., None]) -> Callable[..., None]:
    """A ``p.init`` for one mask per frame: A1111's ``init`` per frame, results stacked in frame order."""

    def init(all_prompts: list, all_seeds: list, all_subseeds: list) -> None:
        frames, masks = list(p.init_images), list(p.image_mask)
        inpaint_full_res, batch_size = getattr(p, "inpaint_full_res", False), p.batch_size
        per_frame: dict[str, list] = {
            name: [] for name in ("init_latent", "mask", "nmask", "image_conditioning")
        }
        overlays: list[Any] = []
        corrections: list[Any] = []
        paste_to: list[Any] = []
        try:
            for index, (image, mask) in enumerate(zip(frames, masks, strict=True)):
                p.init_images, p.image_mask, p.batch_size = [image], mask, 1
                p.inpaint_full_res = inpaint_full_res
                p.overlay_images, p.color_corrections, p.paste_to = None, None, None
                seeds = slice(index, index + 1)
                host_init(all_prompts[seeds], all_seeds[seeds], all_subseeds[seeds])
                for name, values in per_frame.items():
                    values.append(getattr(p, name))
                overlays.extend(p.overlay_images or [])
                corrections.extend(p.color_corrections or [])
                paste_to.append(getattr(p, "paste_to", None))
        finally:
            p.init_images, p.image_mask, p.batch_size = frames, masks, batch_size
        for name, values in per_frame.items():
            setattr(p, name, torch.cat(values) if values[0].dim() == 4 else torch.stack(values))
        p.overlay_images = overlays or None
        p.color_corrections = corrections or None
        p.animatediff_paste_to = paste_to

    return init


def select_frame_crop(p: Any) -> None:
    """Per-frame masks with "Inpaint only masked": the crop A1111 pastes the current frame back into."""
    crops = getattr(p, "animatediff_paste_to", None)
    if crops and crops[p.batch_index] is not None:
        p.paste_to = crops[p.batch_index]


def apply_png_info(p: Any, image: Any, image_path: Path, props: Sequence[str], info_dir: str | None) -> None:
    """A1111's "PNG info" option, read from the first frame (or its namesake in ``info_dir``)."""
    from modules import images
    from modules.infotext_utils import parse_generation_parameters

    try:
        source = read_image(Path(info_dir) / image_path.name) if info_dir else image
        text, _ = images.read_info_from_image(source)
        parsed = {k: v for k, v in parse_generation_parameters(text or "").items() if k in (props or ())}
    except (OSError, ValueError) as error:
        logger.warning("PNG info of %s not read: %s", image_path, error)
        parsed = {}
    if "Prompt" in parsed:
        p.prompt = f"{p.prompt} {parsed['Prompt']}"
    if "Negative prompt" in parsed:
        p.negative_prompt = f"{p.negative_prompt} {parsed['Negative prompt']}"
    p.seed = int(parsed.get("Seed", p.seed))
    p.cfg_scale = float(parsed.get("CFG scale", p.cfg_scale))
    p.sampler_name = parsed.get("Sampler", p.sampler_name)
    p.steps = int(parsed.get("Steps", p.steps))


def set_output_dir(p: Any, output_dir: str, stem: str, frames: int) -> None:
    """A1111's batch output folder: video and frames saved there, named after the first input image."""
    p.outpath_samples = output_dir
    p.override_settings["save_to_dirs"] = False
    p.override_settings["save_images_replace_action"] = "Add number suffix"
    numbered = p.n_iter > 1 or frames > 1
    p.override_settings["samples_filename_pattern"] = f"{stem}-[generation_number]" if numbered else stem


def animatediff_i2i_batch(
    p: Any,
    input: Any,  # A1111's parameter name
    output_dir: str,
    inpaint_mask_dir: str,
    args: Sequence[Any],
    to_scale: bool = False,
    scale_by: float = 1.0,
    use_png_info: bool = False,
    png_info_props: Sequence[str] | None = None,
    png_info_dir: str | None = None,
) -> Any:
    """Render the img2img batch ``input`` as one video (``n_iter`` videos); A1111's ``process_batch`` signature."""
    from modules import processing, scripts, shared

    if enabled_params(p) is None:
        raise ParamsError("enable", False, "the img2img batch becomes a video only with AnimateDiff enabled")
    paths, folder = list_input_images(input)
    mask_paths = list_masks(inpaint_mask_dir, paths)
    frames = read_images(paths, "input")
    masks = read_images(mask_paths, "inpaint_mask_dir")
    processing.fix_seed(p)
    if to_scale:
        p.width, p.height = int(frames[0].width * scale_by), int(frames[0].height * scale_by)
    if use_png_info:
        apply_png_info(p, frames[0], paths[0], png_info_props or (), png_info_dir)
    output_dir = (output_dir or "").strip()
    if output_dir:
        set_output_dir(p, output_dir, paths[0].stem, len(frames))
    p.init_images = frames
    if len(masks) == 1:
        p.image_mask = masks[0]
    elif masks:
        p.image_mask = masks
        p.init = init_per_frame_masks(p, p.init)
    mask_folder = str(inpaint_mask_dir).strip() if masks else None
    setattr(p, BATCH_ATTRIBUTE, BatchFrames(count=len(frames), folder=folder, mask_folder=mask_folder))
    logger.info("img2img batch: %d images, %d mask(s) -> %d video(s).", len(frames), len(masks), p.n_iter)
    shared.state.job_count = p.n_iter
    try:
        runner = getattr(scripts, "scripts_img2img", None)
        processed = runner.run(p, *args) if runner is not None else None
        if processed is None:
            p.override_settings.pop("save_images_replace_action", None)
            processed = processing.process_images(p)
        else:
            logger.warning("An img2img script is selected; AnimateDiff may not work with it.")
    finally:
        delattr(p, BATCH_ATTRIBUTE)
    limit = getattr(shared.opts, "img2img_batch_show_results_limit", -1)
    if processed is not None and 0 <= limit < len(processed.images):
        processed.images = processed.images[:limit]
        processed.infotexts = processed.infotexts[:limit]
    return processed


def enabled_params(p: Any) -> AnimateDiffParams | None:
    """Our script's parsed arguments on ``p`` when AnimateDiff is enabled, else None."""
    from lib_animatediff.a1111 import settings
    from lib_animatediff.a1111.script_args import parse_script_args

    runner = getattr(p, "scripts", None)
    for script in getattr(runner, "alwayson_scripts", None) or []:
        if script.title().lower() != SCRIPT_TITLE:
            continue
        try:
            params = parse_script_args(
                p.script_args[script.args_from : script.args_to],
                is_img2img=True,
                default_format=settings.get("animatediff_default_save_formats"),
            )
        except ValueError:
            return None  # before_process reports the bad value
        return params if params.enable else None
    return None


def install() -> None:
    """Route A1111's img2img batch to :func:`animatediff_i2i_batch` while AnimateDiff is enabled."""
    from modules import img2img

    wrapped = img2img.process_batch
    if getattr(wrapped, WRAPPER_MARK, False):
        return

    def process_batch(p: Any, *args: Any, **kwargs: Any) -> Any:
        if enabled_params(p) is not None:
            return animatediff_i2i_batch(p, *args, **kwargs)
        return wrapped(p, *args, **kwargs)

    setattr(process_batch, WRAPPER_MARK, True)
    setattr(process_batch, "__wrapped__", wrapped)  # noqa: B010 (a plain function has no declared attribute)
    img2img.process_batch = process_batch


def uninstall() -> None:
    """Put back the ``process_batch`` :func:`install` wrapped (when nothing wrapped it since)."""
    from modules import img2img

    current = img2img.process_batch
    if getattr(current, WRAPPER_MARK, False):
        img2img.process_batch = current.__wrapped__

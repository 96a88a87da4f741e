"""Write each generated video with :mod:`lib_animatediff.output` and fill A1111's result with it.

Videos go to ``{outpath_samples}/AnimateDiff/{YYYY-MM-DD}/{seq:05}-{seed}[-{request_id}].{ext}``
(``seed`` is the video's first frame's). A video whose batch was interrupted or skipped is written
only when A1111's "save incomplete images" is on. The UI gallery then shows each video (GIF/WEBP)
or its first frame; the API answers with base64 of each video file (+ the frames with ``Frame``),
as the original does. A cell of an X/Y/Z plot gets the first frame of each video (the plot draws
its grid from images). When no video file was asked for (PNG/TXT only) the result is left as is.
With A1111's ``enable_pnginfo`` off no file carries the infotext (and TXT is not written). FILM
interpolation runs when ``film_net_fp16.pt`` is in one of :func:`film_dirs`, otherwise optical flow
does, and the infotext says so.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from lib_animatediff import interpolate, output, post
from lib_animatediff.a1111 import results, settings, xyz
from lib_animatediff.options import VIDEO_FORMATS

GALLERY_SUFFIXES = (".gif", ".webp")
logger = logging.getLogger(__name__)


def split_videos(res: Any, num_frames: int, video_length: int) -> list[tuple[int, int, list[Any]]]:
    """``(batch index, offset, frames)`` per video in ``res.images`` (grid and trailing extras skipped)."""
    first = res.index_of_first_image
    videos = []
    for batch, offset in enumerate(range(first, len(res.images), num_frames)):
        if offset - first >= len(res.all_seeds):
            break
        videos.append((batch, offset, list(res.images[offset : offset + num_frames])[:video_length]))
    return videos


def film_dirs() -> list[Path]:
    """Where the FILM model is looked for: Deforum's folder (where the original expects it, and the
    first choice to put it in), A1111's models folder, and the motion-module folder."""
    from modules import paths

    from lib_animatediff.a1111.model_cache import model_dir

    models = Path(paths.models_path)
    return [models / "Deforum" / "film_interpolation", models, model_dir()]


def missing_film_model() -> str | None:
    """``None`` when FILM can run, else what to do about it (shown in the log and the UI)."""
    if interpolate.find_film_model(film_dirs()) is not None:
        return None
    return (
        f"FILM needs {interpolate.FILM_MODEL_NAME}: put it into {film_dirs()[0]} (or {film_dirs()[1]}); "
        "until then frames are interpolated with optical flow."
    )


def file_formats(params: Any) -> list[str]:
    """Formats written here: the chosen ones; PNG only when frames go to the AnimateDiff folder
    (otherwise A1111 saves the frames itself); TXT only while A1111's "Save text information about
    generation parameters" (``enable_pnginfo``) is on, since it holds nothing else."""
    custom_png = bool(settings.get("animatediff_save_to_custom"))
    pnginfo = embeds_infotext()
    chosen = [f for f in params.format if f != "Frame" and (f != "PNG" or custom_png)]
    if "TXT" in chosen and not pnginfo:
        logger.info("TXT is not written: A1111's setting enable_pnginfo is off.")
    return [f for f in chosen if f != "TXT" or pnginfo]


def embeds_infotext() -> bool:
    """A1111's ``enable_pnginfo``: whether files carry the generation parameters."""
    from modules import shared

    return bool(getattr(shared.opts, "enable_pnginfo", True))


def write_outputs(p: Any, res: Any, run: Any) -> list[list[Path]]:
    """Write every complete video, then replace ``res.images`` for the gallery or the API."""
    from modules import shared

    params = run.params
    save_incomplete = bool(getattr(shared.opts, "save_incomplete_images", False))
    options = output.OutputOptions(**settings.output_options())
    written: list[list[Path]] = []
    shown: list[Any] = []
    infotexts: list[str] = []
    all_frames: list[Any] = []
    first_frames: list[Any] = []
    video_infotexts: list[str] = []
    for batch, offset, frames in split_videos(res, run.num_frames, params.video_length):
        if batch in run.incomplete_batches and not save_incomplete:
            continue
        seed = res.all_seeds[offset - res.index_of_first_image]
        infotext = res.infotexts[offset] if offset < len(res.infotexts) else res.info
        embedded = infotext if embeds_infotext() else ""
        finished, _ = post.finish(frames, len(frames), params, film_dirs=film_dirs())
        frames = list(finished)
        stem = output.output_stem(p.outpath_samples, int(seed), params.request_id)
        files = post.write(frames, stem, file_formats(params), params, infotext=embedded, options=options)
        written.append(files)
        all_frames += frames
        first_frames.append(frames[0])
        video_infotexts.append(infotext)
        viewable = [str(path) for path in files if path.suffix.lower() in GALLERY_SUFFIXES]
        shown += viewable or frames[:1]
        infotexts += [infotext] * (len(viewable) or 1)
    videos = [path for files in written for path in files if path.suffix.upper()[1:] in VIDEO_FORMATS]
    if not videos:
        return written
    if xyz.in_xyz_plot(p):
        res.images = first_frames
        res.infotexts = video_infotexts
    elif getattr(p, "is_api", False):
        res.images = results.result_images(written, all_frames, params.format)
    else:
        res.images = shown
        res.infotexts = infotexts
    res.index_of_first_image = 0
    return written

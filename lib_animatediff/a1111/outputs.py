"""Write each generated video with :mod:`lib_animatediff.output` and fill A1111's result with it.

Videos go to ``{outpath_samples}/AnimateDiff/{YYYY-MM-DD}/{seq:05}-{seed}[-{request_id}].{ext}``
(``seed`` is the video's first frame's). A video whose batch was interrupted or skipped is written
only when A1111's "save incomplete images" is on. The UI gallery then shows each video (GIF/WEBP)
or its first frame; the API answers with base64 of each video file (+ the frames with ``Frame``),
as the original does. A cell of an X/Y/Z plot gets the first frame of each video (the plot draws
its grid from images). When no video file was asked for (PNG/TXT only) the result is left as is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lib_animatediff import frame_ops, interpolate, output
from lib_animatediff.a1111 import api, settings, xyz

GALLERY_SUFFIXES = (".gif", ".webp")
INTERP_METHODS = {"FILM": "film", "Optical flow": "optical flow"}


def split_videos(res: Any, num_frames: int, video_length: int) -> list[tuple[int, int, list[Any]]]:
    """``(batch index, offset, frames)`` per video in ``res.images`` (grid and trailing extras skipped)."""
    first = res.index_of_first_image
    videos = []
    for batch, offset in enumerate(range(first, len(res.images), num_frames)):
        if offset - first >= len(res.all_seeds):
            break
        videos.append((batch, offset, list(res.images[offset : offset + num_frames])[:video_length]))
    return videos


def finish_frames(frames: list[Any], params: Any) -> list[Any]:
    """Closed loop ``A`` ping-pong (as the original) then frame interpolation."""
    from modules import paths

    frames = frame_ops.apply_closed_loop(
        frames, params.closed_loop, video_length=params.video_length, batch_size=params.batch_size
    )
    if params.interp != "Off":
        film_dir = Path(paths.models_path) / "Deforum" / "film_interpolation"
        frames = interpolate.interpolate(
            frames, params.interp_x, method=INTERP_METHODS[params.interp], film_dirs=[film_dir]
        )
    return frames


def file_formats(params: Any) -> list[str]:
    """Formats written here: the chosen ones; PNG only when frames go to the AnimateDiff folder
    (otherwise A1111 saves the frames itself)."""
    custom_png = bool(settings.get("animatediff_save_to_custom"))
    return [f for f in params.format if f != "Frame" and (f != "PNG" or custom_png)]


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
        frames = finish_frames(frames, params)
        stem = output.output_stem(p.outpath_samples, int(seed), params.request_id)
        files = output.save(
            frames, stem, file_formats(params), fps=params.fps, loop_number=params.loop_number,
            infotext=infotext, options=options,
        )  # fmt: skip
        written.append(files)
        all_frames += frames
        first_frames.append(frames[0])
        video_infotexts.append(infotext)
        viewable = [str(path) for path in files if path.suffix.lower() in GALLERY_SUFFIXES]
        shown += viewable or frames[:1]
        infotexts += [infotext] * (len(viewable) or 1)
    videos = [path for files in written for path in files if path.suffix.upper()[1:] in output.VIDEO_FORMATS]
    if not videos:
        return written
    if xyz.in_xyz_plot(p):
        res.images = first_frames
        res.infotexts = video_infotexts
    elif getattr(p, "is_api", False):
        res.images = api.result_images(written, all_frames, params.format)
    else:
        res.images = shown
        res.infotexts = infotexts
    res.index_of_first_image = 0
    return written

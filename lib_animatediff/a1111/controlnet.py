"""ControlNet video-to-video: AnimateDiff's video feeds sd-webui-controlnet's (≥ 1.1.441) units.

Before A1111 runs ControlNet's ``process`` (which reads the units from ``p.script_args``), every
enabled unit without an input of its own becomes a batch unit over the video's frames: the
``video_path`` folder, or the ``video_source`` video (its first ``video_length`` frames, counted
then decoded one frame at a time, never all held) written into a temporary folder under A1111's data folder that is deleted when the generation is closed.
Batch units get ``mask_path``
as their mask folder when they have none and are flagged ``animatediff_batch``, which makes
ControlNet build one hint row per frame and keep them on the CPU (the window hook slices them,
:mod:`lib_animatediff.a1111.control_hints`).

Frame counts (the original's rule, reported in the log): the shortest batch unit without
``keyframe:`` lines bounds the video — an automatic ``video_length`` (0) becomes that count, a
given one is capped to it — the context becomes at most the video, and every batch unit uses
only its first ``video_length`` frames. Units given by API requests may be dicts and may name
their own ``batch_images`` folder; such folders must lie in the request's allowed roots.

The units are read and checked by :func:`plan_feed` first, the video's length and frames by
:func:`lib_animatediff.resolve.resolve` (which decodes the source once); :meth:`FeedPlan.apply`
changes the units only once the whole request is known to be good.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lib_animatediff import video_source
from lib_animatediff.coercion import ParamsError
from lib_animatediff.resolve import ResolvedRun

logger = logging.getLogger(__name__)
KEYFRAME_PREFIX = "keyframe:"
FRAMES_SUBFOLDER = Path("tmp") / "animatediff-frames"


def _has_value(value: Any) -> bool:
    """Whether a unit field holds an input (None, "" and empty containers do not)."""
    if value is None:
        return False
    if isinstance(value, str | list | tuple | dict):
        return bool(value)
    return True


def _mode(unit: Any) -> str:
    mode = unit.input_mode
    return getattr(mode, "name", str(mode)).upper()


def _set_batch_mode(unit: Any) -> None:
    unit.input_mode = type(unit.input_mode).BATCH


@dataclass
class FirstFrames:
    """ControlNet batch modifier: keep the first ``count`` files of a unit's batch folder."""

    count: int

    def __call__(self, files: list[str], p: Any) -> list[str]:
        return files[: self.count]


@dataclass
class UnitPlan:
    """What happens to one enabled unit: its index among ControlNet's units and its frame folder."""

    index: int
    unit: Any
    feed_video: bool  # gets AnimateDiff's frames
    own_folder: str | None  # its own batch_images folder (first line), if any
    counted: int | None  # frames its own folder bounds the video with (None: keyframes, or fed the video)


@dataclass
class FeedPlan:
    """The checked plan for ControlNet's units; :meth:`apply` carries it out for the resolved run."""

    script: Any
    units: list[Any]
    plans: list[UnitPlan]
    roots: list[Path] | None  # where a request's video source may lie
    backend: str  # how the video source is decoded
    inpaint_masks: str | None = None  # the img2img batch's mask folder, for inpaint units it feeds
    temp_folder: Path | None = field(default=None, init=False)

    def unit_frames(self) -> tuple[tuple[int, int], ...]:
        """``(unit index, frames)`` of the batch units with folders of their own that bound the video."""
        return tuple((plan.index, plan.counted) for plan in self.plans if plan.counted is not None)

    def source_frames_for(self) -> int | None:
        """The index of the first unit that gets AnimateDiff's video, if any."""
        return next((plan.index for plan in self.plans if plan.feed_video), None)

    def apply(self, p: Any, run: ResolvedRun) -> None:
        """Give the units their frames (writing the decoded video to a temporary folder if needed)."""
        params = run.params
        folder, source = params.video_path, params.video_source
        # resolve() refused units that need frames when neither a path nor a source is given
        if any(plan.feed_video for plan in self.plans) and not folder and source:
            folder = str(self._write_source_frames(p, source, params.video_length))
        for plan in self.plans:
            unit = plan.unit
            if plan.feed_video:
                unit.batch_images = folder
                if self.inpaint_masks and "inpaint" in str(getattr(unit, "module", "")):
                    unit.batch_images += f"\nmask:{self.inpaint_masks}"
                logger.info("ControlNet unit %d gets AnimateDiff's %s frames.", plan.index, folder)
            if plan.feed_video or plan.own_folder is not None:
                _set_batch_mode(unit)
            if params.mask_path and not getattr(unit, "batch_mask_dir", None):
                unit.batch_mask_dir = params.mask_path
            unit.animatediff_batch = True
            unit.batch_modifiers = [
                *(getattr(unit, "batch_modifiers", None) or []),
                FirstFrames(params.video_length),
            ]
        args = list(p.script_args)
        args[self.script.args_from : self.script.args_to] = self.units
        p.script_args = args

    def _write_source_frames(self, p: Any, source_name: str, video_length: int) -> Path:
        """Decode the first ``video_length`` frames of the source one at a time into a temporary folder."""
        from modules import paths
        from PIL import Image

        source = video_source.resolve_source(source_name, self.roots)
        parent = Path(paths.data_path) / FRAMES_SUBFOLDER
        parent.mkdir(parents=True, exist_ok=True)
        self.temp_folder = Path(tempfile.mkdtemp(prefix=f"{source.stem}-", dir=parent))
        _remove_when_closed(p, self)
        frames = video_source.iter_video(source, max_frames=video_length, backend=self.backend)
        for number, frame in enumerate(frames):
            Image.fromarray(frame).save(self.temp_folder / f"{number:05d}.png")
        return self.temp_folder

    def remove_frames(self) -> None:
        """Delete the temporary frames folder this plan wrote, if any (idempotent)."""
        if self.temp_folder is not None:
            shutil.rmtree(self.temp_folder, ignore_errors=True)
            self.temp_folder = None


def _remove_when_closed(p: Any, plan: FeedPlan) -> None:
    """Delete ``plan``'s frames when A1111 closes ``p`` (it does, also after errors: ``closing(p)``)."""
    host_close = p.close

    def close(*args: Any, **kwargs: Any) -> Any:
        plan.remove_frames()
        return host_close(*args, **kwargs)

    p.close = close


def controlnet_units(p: Any) -> tuple[Any, list[Any]] | None:
    """sd-webui-controlnet's script and its units of ``p`` (API dicts converted), or None without it."""
    try:
        from scripts import external_code
    except ImportError:
        return None
    script = external_code.find_cn_script(getattr(p, "scripts", None))
    if script is None:
        return None
    units = [
        external_code.to_processing_unit(unit) if isinstance(unit, dict) else unit
        for unit in p.script_args[script.args_from : script.args_to]
    ]
    return script, units


def _batch_folder(unit: Any) -> tuple[str | None, bool]:
    """The first line of a unit's ``batch_images`` and whether later lines give keyframes."""
    batch = getattr(unit, "batch_images", None)
    if not isinstance(batch, str) or not batch.strip():
        return None, False
    lines = batch.split("\n")
    return lines[0].strip(), any(line.strip().startswith(KEYFRAME_PREFIX) for line in lines[1:])


def _has_own_image(unit: Any) -> bool:
    """A single-image unit with its image, or a multi-input unit with its images (ControlNet keeps
    them in ``image``; versions before 1.1.441 in ``batch_input_gallery``)."""
    if _mode(unit) not in ("SIMPLE", "MERGE"):
        return False
    return _has_value(getattr(unit, "image", None)) or _has_value(getattr(unit, "batch_input_gallery", None))


def _plan_unit(index: int, unit: Any, roots: list[Path] | None) -> UnitPlan | None:
    if _has_own_image(unit):
        return None
    folder, keyframes = _batch_folder(unit)
    if folder is None:
        return UnitPlan(index, unit, True, None, None)
    field_name = f"ControlNet unit {index} batch_images"
    try:
        count = len(video_source.list_frame_files(folder, roots))
    except video_source.VideoSourceError as error:
        raise ParamsError(field_name, folder, str(error)) from None
    if count == 0 and not keyframes:
        raise ParamsError(field_name, folder, "contains no image files")
    return UnitPlan(index, unit, False, folder, None if keyframes else count)


def plan_feed(
    p: Any, *, roots: list[Path] | None, backend: str = "ffmpeg", inpaint_masks: str | None = None
) -> FeedPlan | None:
    """Read ``p``'s ControlNet units and check the folders of their own; changes nothing.
    ``inpaint_masks``: an img2img batch's mask folder, given to the inpaint units it feeds.

    None without ControlNet or without enabled units. ``ParamsError`` names the field for an
    unusable folder; :func:`lib_animatediff.resolve.resolve` checks the video the other units need.
    """
    found = controlnet_units(p)
    if found is None:
        return None
    script, units = found
    enabled = [(index, unit) for index, unit in enumerate(units) if getattr(unit, "enabled", False)]
    plans = [plan for index, unit in enabled if (plan := _plan_unit(index, unit, roots))]
    if not plans:
        return None
    return FeedPlan(script, units, plans, roots, backend, inpaint_masks)

"""Frame interpolation ("Interp X"): FILM when its TorchScript model is present, else optical flow.

Frame-count rule (the original via Deforum's ``calculate_frames_to_add``): for ``N >= 2`` input
frames and factor ``X``, each of the ``N - 1`` gaps gets ``k = round((N*X - N) / (N - 1))``
in-between frames (Python ``round``: halves go to the even integer), so the result has
``(N - 1) * (k + 1) + 1`` frames, about ``X * N``; the input frames are kept at positions
``i * (k + 1)``. ``N = 1`` or ``k = 0`` returns the frames unchanged (the original divides by zero
for ``N = 1``); an empty list is a ValueError. FPS rule: the original does **not** change the fps, so the clip plays about X times
longer; callers keep their fps.

Backends: FILM (``film_net_fp16.pt``, the TorchScript export Deforum downloads, called as
``model(img0, img1, dt)`` on RGB NCHW tensors in [0, 1] padded to a multiple of 64, ``dt`` of
shape (1, 1)); in-between frames are produced in Deforum's order, each from the two nearest
frames already known (so most calls use dt = 0.5). The model is loaded only with
``torch.jit.load`` (no pickle). The fallback needs no weights: OpenCV DIS optical flow in both
directions, each neighbour warped to the intermediate time, blended with weights that drop the
pixels failing a forward-backward consistency check (occlusions).
"""

from __future__ import annotations

import bisect
import functools
import itertools
import logging
import os
from collections.abc import Iterable, Sequence
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, overload

import cv2
import numpy as np
from PIL import Image

from lib_animatediff.options import MAX_OUTPUT_FRAMES
from lib_animatediff.output import FrameInput, RgbArray, as_rgb_frames

if TYPE_CHECKING:
    import torch  # imported when FILM runs: optical flow needs no torch

logger = logging.getLogger(__name__)

FILM_MODEL_NAME = "film_net_fp16.pt"
FILM_ALIGN = 64
METHODS = ("auto", "film", "optical flow")
_OCCLUSION_WEIGHT = 1e-3


def frames_between(num_frames: int, interp_x: int) -> int:
    """In-between frames per gap: ``round((N*X - N) / (N - 1))`` (0 when ``N < 2``)."""
    if num_frames < 2:
        return 0
    return max(0, round((num_frames * interp_x - num_frames) / (num_frames - 1)))


def interpolated_count(num_frames: int, interp_x: int) -> int:
    """Number of frames ``interpolate`` returns for ``num_frames`` inputs."""
    if num_frames < 2:
        return num_frames
    return (num_frames - 1) * (frames_between(num_frames, interp_x) + 1) + 1


def find_film_model(folders: Iterable[str | os.PathLike[str]]) -> Path | None:
    """The first ``film_net_fp16.pt`` regular file in ``folders`` (e.g. Deforum's
    ``models/Deforum/film_interpolation`` and our own model folder), or None."""
    for folder in folders:
        candidate = Path(folder) / FILM_MODEL_NAME
        if candidate.is_file():
            return candidate
    return None


def _normalise_method(method: str) -> str:
    lowered = method.lower() if isinstance(method, str) else method
    if lowered not in METHODS:
        raise ValueError(f"method: expected one of {', '.join(METHODS)} (any case), got {method!r}")
    return lowered


@overload
def interpolate(
    frames: Sequence[Image.Image],
    interp_x: int,
    method: str = ...,
    *,
    film_dirs: Iterable[str | os.PathLike[str]] = ...,
    max_frames: int = ...,
    device: str | None = ...,
) -> list[Image.Image]: ...


@overload
def interpolate(
    frames: Sequence[RgbArray],
    interp_x: int,
    method: str = ...,
    *,
    film_dirs: Iterable[str | os.PathLike[str]] = ...,
    max_frames: int = ...,
    device: str | None = ...,
) -> list[RgbArray]: ...


def interpolate(
    frames: Sequence[FrameInput],
    interp_x: int,
    method: str = "auto",
    *,
    film_dirs: Iterable[str | os.PathLike[str]] = (),
    max_frames: int = MAX_OUTPUT_FRAMES,
    device: str | None = None,
) -> Sequence[FrameInput]:
    """Insert in-between frames (rule in the module docstring); PIL in -> PIL out, arrays in -> arrays.

    ``method``: "auto" (FILM if ``film_dirs`` holds the model, else optical flow), "film" (FILM;
    falls back to optical flow with a logged warning when the model is missing), "optical flow".
    ``max_frames`` refuses (ValueError with the computed count) results longer than that.
    """
    method = _normalise_method(method)
    film_dirs = list(film_dirs)
    if isinstance(interp_x, bool) or not isinstance(interp_x, int) or interp_x < 1:
        raise ValueError(f"interp_x: expected an integer >= 1, got {interp_x!r}")
    arrays = as_rgb_frames(frames)
    total = interpolated_count(len(arrays), interp_x)
    if total > max_frames:
        raise ValueError(
            f"interp_x: {interp_x} would make {total} frames from {len(arrays)}, above the limit of {max_frames}"
        )
    between = frames_between(len(arrays), interp_x)
    if between == 0:
        return list(frames)
    model_path = find_film_model(film_dirs) if method != "optical flow" else None
    if method == "film" and model_path is None:
        logger.warning(
            "FILM model %s not found in %s; interpolating with optical flow instead",
            FILM_MODEL_NAME,
            ", ".join(str(d) for d in film_dirs) or "(no folders given)",
        )
    if model_path is not None:
        result = _FilmInterpolator(model_path, device).run(arrays, between)
    else:
        result = _optical_flow_run(arrays, between)
    if isinstance(frames[0], Image.Image):
        return [Image.fromarray(frame) for frame in result]
    return result


def _bisection_plan(between: int) -> list[tuple[int, int, int]]:
    """Order in which the in-between positions 1..k of a gap [0, k+1] are made: repeatedly the one
    closest to the middle of the interval between two known frames (Deforum's order; exact ties go
    to the earlier position). Each entry is
    (position, left known position, right known position)."""
    known = [0, between + 1]
    remaining = list(range(1, between + 1))
    plan = []
    while remaining:

        def centredness(position: int) -> tuple[Fraction, int]:
            right = bisect.bisect_left(known, position)
            left_pos, right_pos = known[right - 1], known[right]
            return abs(Fraction(position - left_pos, right_pos - left_pos) - Fraction(1, 2)), position

        position = min(remaining, key=centredness)
        right = bisect.bisect_left(known, position)
        plan.append((position, known[right - 1], known[right]))
        bisect.insort(known, position)
        remaining.remove(position)
    return plan


@functools.lru_cache(maxsize=1)
def _load_film(path: str, mtime_ns: int, device: str) -> torch.jit.ScriptModule:
    import torch

    model = torch.jit.load(path, map_location=device)
    model.eval()
    return model


class _FilmInterpolator:
    def __init__(self, model_path: Path, device: str | None) -> None:
        import torch

        self.torch = torch
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.dtype = torch.float16 if self.device.startswith("cuda") else torch.float32
        model = _load_film(str(model_path), model_path.stat().st_mtime_ns, self.device)
        self.model = model.to(dtype=self.dtype)

    def _to_tensor(self, frame: RgbArray) -> torch.Tensor:
        height, width = frame.shape[:2]
        pad_h, pad_w = -height % FILM_ALIGN, -width % FILM_ALIGN
        padded = np.pad(frame, ((pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0)))
        tensor = self.torch.from_numpy(np.ascontiguousarray(padded)).permute(2, 0, 1)[None]
        return tensor.to(self.device, self.dtype) / 255.0

    def _to_frame(self, tensor: torch.Tensor, height: int, width: int) -> RgbArray:
        top, left = (tensor.shape[2] - height) // 2, (tensor.shape[3] - width) // 2
        image = tensor[0, :, top : top + height, left : left + width].float().clamp(0, 1) * 255.0
        return image.round().to(self.torch.uint8).permute(1, 2, 0).cpu().numpy()

    def run(self, frames: list[RgbArray], between: int) -> list[RgbArray]:
        height, width = frames[0].shape[:2]
        plan = _bisection_plan(between)
        result = [frames[0]]
        with self.torch.inference_mode():
            for start, end in itertools.pairwise(frames):
                known = {0: self._to_tensor(start), between + 1: self._to_tensor(end)}
                for position, left, right in plan:
                    dt = self.torch.full((1, 1), (position - left) / (right - left), dtype=self.dtype)
                    known[position] = self.model(known[left], known[right], dt.to(self.device)).clamp(0, 1)
                result += [self._to_frame(known[p], height, width) for p in range(1, between + 1)]
                result.append(end)
        return result


def _flow(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Dense flow F with source(p) ~ target(p + F(p)), from DIS on grey images."""
    # the factory name every OpenCV 4 and 5 build has (OpenCV 5's stubs list only the class method)
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)  # type: ignore[attr-defined]
    grey = [cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) for image in (source, target)]
    return dis.calc(grey[0], grey[1], None)


def _sample(image: np.ndarray, grid: np.ndarray, offset: np.ndarray) -> np.ndarray:
    coords = grid + offset
    return cv2.remap(image, coords[..., 0], coords[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _consistency(forward: np.ndarray, backward: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """1 where following ``forward`` then ``backward`` returns near the start, else a small weight."""
    round_trip = forward + _sample(backward, grid, forward)
    error = np.sum(round_trip**2, axis=-1)
    tolerance = 0.01 * (np.sum(forward**2, axis=-1) + np.sum(backward**2, axis=-1)) + 0.5
    return np.where(error <= tolerance, 1.0, _OCCLUSION_WEIGHT).astype(np.float32)


def _flow_pair(start: RgbArray, end: RgbArray, times: Sequence[float]) -> list[RgbArray]:
    height, width = start.shape[:2]
    xs, ys = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    grid = np.stack([xs, ys], axis=-1)
    forward, backward = _flow(start, end), _flow(end, start)
    valid_start = _consistency(forward, backward, grid)
    valid_end = _consistency(backward, forward, grid)
    images = (start.astype(np.float32), end.astype(np.float32))
    out = []
    for t in times:
        # Backward warps: the pixel at p at time t came from p - t*F(p) in start, p - (1-t)*B(p) in end.
        from_start = _sample(images[0], grid, -t * forward)
        from_end = _sample(images[1], grid, -(1 - t) * backward)
        weight_start = (1 - t) * _sample(valid_start, grid, -t * forward)
        weight_end = t * _sample(valid_end, grid, -(1 - t) * backward)
        total = weight_start + weight_end
        blended = (from_start * weight_start[..., None] + from_end * weight_end[..., None]) / total[..., None]
        out.append(np.clip(blended + 0.5, 0, 255).astype(np.uint8))
    return out


def _optical_flow_run(frames: list[RgbArray], between: int) -> list[RgbArray]:
    times = [i / (between + 1) for i in range(1, between + 1)]
    result = [frames[0]]
    for start, end in itertools.pairwise(frames):
        result += _flow_pair(start, end, times)
        result.append(end)
    return result

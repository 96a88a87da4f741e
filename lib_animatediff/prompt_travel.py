"""Prompt travel: per-frame prompts from keyframe lines, and conditioning slerp between keyframes.

Grammar (the original's, with its quirks kept where they affect results):

* The prompt is stripped and split into lines (``\\n`` or ``\\r\\n``); blank lines are ignored.
* A *keyframe line* is ``<frame>: <prompt>`` — digits, a colon, then whitespace (the original demands
  exactly one space; ``"8:smile"`` is ordinary text there and here, so ``16:9`` stays a plain prompt).
* Lines before the first keyframe line are the head, the consecutive keyframe lines the map, the
  lines after them the tail. Each keyframe's prompt is ``"{head}, {text}, {tail}"`` with head and tail
  lines joined by ``", "`` — separators are written even when head or tail is empty, exactly as the
  original does, so the text encoder sees the same tokens. Weights such as ``(x:1.3)`` pass through.
* Errors (:class:`PromptTravelError`, with the 1-based line number): a frame index not below the
  number of frames, a negative index, indices not strictly ascending (the original silently let a
  duplicate overwrite the earlier line), an empty keyframe prompt, and a keyframe line after the tail
  has started (the original silently added it to the tail).
* Frames before the first keyframe get the first keyframe's prompt (the original gave them ``""``,
  which lost LoRA tags that A1111 reads from frame 0; their conditioning is replaced anyway).

Interpolation: frame ``f`` between keyframes ``kp <= f < kn`` uses ``slerp(cond[kp], cond[kn], t)``
with ``t = (f - kp) / (kn - kp)`` over the whole (tokens × dim) tensor, linear when the normalised
dot product exceeds 0.9995; ``cond`` rows are indexed by frame, as in the original. Before the first
and after the last keyframe the nearest keyframe is copied, unless ``closed`` (``R+P``/``A`` with more
frames than the context), which interpolates across the end of the video.
"""

from __future__ import annotations

import bisect
import copy
import re
from dataclasses import dataclass
from typing import TypeVar

import torch

Cond = TypeVar("Cond", torch.Tensor, dict[str, torch.Tensor])  # one tensor, or SDXL's dict of them

SLERP_DOT_THRESHOLD = 0.9995
_KEYFRAME = re.compile(r"(-?\d+):(?=\s|$)\s*(.*?)\s*")


class PromptTravelError(ValueError):
    """Invalid prompt-travel text; ``line`` is 1-based."""

    def __init__(self, line: int, problem: str) -> None:
        super().__init__(f"prompt travel, line {line}: {problem}")
        self.line = line


@dataclass(frozen=True)
class PromptSchedule:
    """The parsed prompt: ``keyframes`` maps frame → full prompt (empty when there is no travel)."""

    original: str
    num_frames: int
    keyframes: dict[int, str]

    @property
    def is_travel(self) -> bool:
        return bool(self.keyframes)

    def frame_prompts(self, count: int | None = None) -> list[str]:
        """One prompt per frame for ``count`` frames (default ``num_frames``; extra frames hold the last)."""
        count = self.num_frames if count is None else count
        if not self.keyframes:
            return [self.original] * count
        keys = sorted(self.keyframes)
        prompts, current = [], 0
        for frame in range(count):
            while current + 1 < len(keys) and keys[current + 1] <= frame:
                current += 1
            prompts.append(self.keyframes[keys[current]])
        return prompts

    def describe(self, *, closed: bool = False) -> str:
        """A readable per-frame schedule for logs and infotext."""
        if not self.keyframes:
            return f"no prompt travel ({self.num_frames} frames)"
        lines = [f"prompt travel over {self.num_frames} frames{' (wraps around)' if closed else ''}:"]
        keys = sorted(self.keyframes)
        for index, key in enumerate(keys):
            lines.append(f"  frame {key}: {self.keyframes[key]}")
            following = keys[index + 1] if index + 1 < len(keys) else None
            end = (following if following is not None else self.num_frames) - 1
            if end > key:
                target = following if following is not None else (keys[0] if closed else None)
                blend = f"slerp {key} -> {target}" if target is not None and target != key else f"hold {key}"
                lines.append(f"  frames {key + 1}-{end}: {blend}")
        if keys[0] > 0:
            blend = f"slerp {keys[-1]} -> {keys[0]}" if closed and len(keys) > 1 else f"hold {keys[0]}"
            lines.insert(1, f"  frames 0-{keys[0] - 1}: {blend}")
        return "\n".join(lines)


def parse(prompt: str, num_frames: int) -> PromptSchedule:
    """Parses prompt-travel text for ``num_frames`` frames; raises :class:`PromptTravelError`.

    A prompt that is not a string (another extension expanded it into a list) raises ``TypeError``;
    the original logged "prompt is not str" and ran without travel, which the host may still do.
    """
    if not isinstance(prompt, str):
        raise TypeError(f"prompt travel needs a string prompt, got {type(prompt).__name__}")
    if num_frames < 1:
        raise ValueError(f"num_frames={num_frames!r}: expected >= 1")
    head: list[str] = []
    tail: list[str] = []
    texts: dict[int, str] = {}
    tail_started_at = 0
    for number, line in enumerate(re.split(r"\r?\n", prompt.strip()), start=1):
        if not line.strip():
            continue
        match = _KEYFRAME.fullmatch(line)
        if match is None:
            if texts:
                tail_started_at = tail_started_at or number
                tail.append(line)
            else:
                head.append(line)
            continue
        frame, text = int(match.group(1)), match.group(2)
        if tail_started_at:
            raise PromptTravelError(number, f"keyframe {frame} after non-keyframe line {tail_started_at}")
        if frame < 0:
            raise PromptTravelError(number, f"frame index {frame} is negative")
        if frame >= num_frames:
            raise PromptTravelError(number, f"frame index {frame} >= number of frames ({num_frames})")
        if texts and frame <= max(texts):
            raise PromptTravelError(number, f"frame index {frame} must be greater than {max(texts)}")
        if not text:
            raise PromptTravelError(number, f"keyframe {frame} has an empty prompt")
        texts[frame] = text
    head_text, tail_text = ", ".join(head), ", ".join(tail)
    keyframes = {frame: f"{head_text}, {text}, {tail_text}" for frame, text in texts.items()}
    return PromptSchedule(original=prompt, num_frames=num_frames, keyframes=keyframes)


def blend_plan(keys: list[int], num_frames: int, *, closed: bool) -> list[tuple[int, int, float]]:
    """For each frame, ``(previous key, next key, t)``; ``t = 0`` means "copy the previous key"."""
    if not keys:
        raise ValueError("no keyframes")
    plan = []
    for frame in range(num_frames):
        position = bisect.bisect_right(keys, frame)
        previous = keys[position - 1] if position else (keys[-1] if closed else keys[0])
        following = keys[position] if position < len(keys) else (keys[0] if closed else keys[-1])
        to_previous = (frame - previous) % num_frames
        to_following = (following - frame) % num_frames
        if previous == following or to_previous + to_following == 0:
            plan.append((previous, previous, 0.0))
        else:
            plan.append((previous, following, to_previous / (to_previous + to_following)))
    return plan


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation over the whole tensor (linear when nearly parallel or zero)."""
    work = torch.promote_types(a.dtype, torch.float32)
    a64, b64 = a.to(work), b.to(work)
    norm_a, norm_b = a64.norm(), b64.norm()
    if norm_a == 0 or norm_b == 0:
        return ((1 - t) * a64 + t * b64).to(a.dtype)
    dot = ((a64 / norm_a) * (b64 / norm_b)).sum().clamp(-1, 1)
    if dot.abs() > SLERP_DOT_THRESHOLD:
        return ((1 - t) * a64 + t * b64).to(a.dtype)
    omega = dot.acos()
    mixed = (((1 - t) * omega).sin() * a64 + (t * omega).sin() * b64) / omega.sin()
    return mixed.to(a.dtype)


def interpolate(cond: Cond, schedule: PromptSchedule, *, closed: bool) -> Cond:
    """Per-frame conditioning (rows = frames) with every frame travelled between its keyframes.

    ``cond`` is one tensor or a dict of tensors (SDXL ``crossattn``/``vector``), each with one row per
    frame; the number of rows sets the wrap distance, as in the original. A dict comes back as a
    copy of its own type, so a host's dict subclass (A1111's ``DictWithShape``, whose ``.shape``
    A1111's CFG denoiser reads) keeps its class and attributes.
    """
    if isinstance(cond, torch.Tensor):
        return _travel(cond, sorted(schedule.keyframes), closed) if schedule.is_travel else cond
    travelled = copy.copy(cond)
    if schedule.is_travel:
        for name, tensor in cond.items():
            travelled[name] = _travel(tensor, sorted(schedule.keyframes), closed)
    return travelled


def _travel(cond: torch.Tensor, keys: list[int], closed: bool) -> torch.Tensor:
    if keys[-1] >= cond.shape[0]:
        raise ValueError(f"keyframe {keys[-1]} has no conditioning row (only {cond.shape[0]} rows)")
    rows = [
        cond[previous] if t == 0.0 else slerp(cond[previous], cond[following], t)
        for previous, following, t in blend_plan(keys, cond.shape[0], closed=closed)
    ]
    return torch.stack(rows)

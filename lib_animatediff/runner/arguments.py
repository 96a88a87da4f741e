"""Parsed command-line arguments turned into what the runner works with (no argparse set-up here)."""

from __future__ import annotations

import argparse
from pathlib import Path

from lib_animatediff.params import AnimateDiffParams
from lib_animatediff.runner.errors import InputError


def animation_params(args: argparse.Namespace, model: str) -> AnimateDiffParams:
    """The AnimateDiff options of ``args`` as validated params (``ParamsError`` names the field);
    ``model`` is the motion module's name for the infotext."""
    return AnimateDiffParams(
        model=model,
        enable=True,
        video_length=args.frames,
        fps=args.fps,
        loop_number=args.loop_number,
        closed_loop=args.closed_loop,
        batch_size=args.context,
        stride=args.stride,
        overlap=args.overlap,
        format=tuple(args.formats),
        interp=args.interp,
        interp_x=args.interp_x,
        freeinit_enable=args.freeinit,
        freeinit_filter=args.freeinit_filter,
        freeinit_ds=args.freeinit_ds,
        freeinit_dt=args.freeinit_dt,
        freeinit_iters=args.freeinit_iters,
        fuse_method=args.fuse_method,
        context_schedule=args.context_schedule,
        noise=args.noise,
    )


def parse_motion_lora(text: str) -> tuple[Path, float]:
    """``PATH:STRENGTH`` (or ``PATH``, strength 1) to ``(path, strength)``; the file must exist."""
    path_text, strength = text, 1.0
    head, sep, tail = text.rpartition(":")
    if sep and head:
        try:
            strength = float(tail)
            path_text = head
        except ValueError:
            pass
    path = Path(path_text)
    if not path.is_file():
        raise InputError(f"--motion-lora: file {str(path)!r} does not exist")
    return path, strength


def require_file(option: str, path: Path) -> None:
    """Raise :class:`InputError` naming ``option`` and ``path`` when ``path`` does not exist."""
    if not path.exists():
        raise InputError(f"{option}: {str(path)!r} does not exist")

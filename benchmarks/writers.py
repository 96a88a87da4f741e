"""Seconds per frame of each output format at 512x512, 64 frames, side by side in one run.

Each format is timed through ``lib_animatediff.output.save`` (temporary file + rename included);
the baseline is a plain Pillow PNG encode of the same frames (GIF, WebP and PNG run on the calling
thread; ffmpeg is a separate process with its own threads). Frames are smooth moving colour fields with a moving disc
and a drifting fine texture (see :func:`synthetic_clip`), which compress like generated video
(random noise would not). Repetitions are interleaved and the
minimum is reported with the spread (max/min) and the output size per frame.

    .venv/bin/python benchmarks/writers.py [--reps 5] [--frames 64] [--size 512] [--detail 8]
"""

from __future__ import annotations

import argparse
import io
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lib_animatediff.output import OutputOptions, save

DETAIL = 8.0  # texture grey levels: 512x512 PNGs of about 360 KiB, like generated frames


def synthetic_clip(count: int, size: int, detail: float = 0.0) -> list[np.ndarray]:
    """A smooth, slowly moving colour field with a moving disc: compresses like generated video.

    ``detail`` > 0 adds a fixed seeded fine texture (noise smoothed over about 3 pixels, standard
    deviation ``detail`` grey levels) that drifts one pixel per frame: the surface detail generated
    frames have. The smooth field alone makes 512x512 PNGs of about 27 KiB, far below the 300-500 KiB
    of Stable Diffusion's, and so an unrealistically cheap PNG baseline.
    """
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) / size
    texture = _fine_texture(size, size + count, detail)
    frames = []
    for index in range(count):
        phase = index / count * 2 * np.pi
        red = 127 + 100 * np.sin(6 * xs + phase)
        green = 127 + 100 * np.sin(5 * ys - phase)
        blue = 127 + 100 * np.sin(4 * (xs + ys) + 2 * phase)
        frame = np.stack([red, green, blue], axis=-1)
        cx, cy = 0.5 + 0.3 * np.cos(phase), 0.5 + 0.3 * np.sin(phase)
        frame[(xs - cx) ** 2 + (ys - cy) ** 2 < 0.01] = (250, 250, 240)
        if detail:
            frame += texture[:, index : index + size]
        frames.append(np.clip(frame, 0, 255).astype(np.uint8))
    return frames


def _fine_texture(height: int, width: int, deviation: float) -> np.ndarray:
    """Seeded noise box-blurred twice over 3x3 pixels, rescaled to ``deviation``; ``(h, w, 3)`` float32."""
    noise = np.random.default_rng(0).normal(size=(height + 4, width + 4, 3)).astype(np.float32)
    for _ in range(2):
        noise = sum(
            noise[dy : noise.shape[0] - 2 + dy, dx : noise.shape[1] - 2 + dx]
            for dy in range(3)
            for dx in range(3)
        )
    return noise * (deviation / noise.std())


def png_baseline(frames: list[np.ndarray]) -> None:
    for frame in frames:
        Image.fromarray(frame).save(io.BytesIO(), format="PNG")


def png_bytes(frames: list[np.ndarray]) -> int:
    total = 0
    for frame in frames:
        buffer = io.BytesIO()
        Image.fromarray(frame).save(buffer, format="PNG")
        total += buffer.tell()
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument(
        "--detail",
        type=float,
        default=DETAIL,
        help=f"fine-texture grey levels (default {DETAIL}; 0: smooth only)",
    )
    args = parser.parse_args()
    try:
        import torch

        torch.set_num_threads(2)
    except ImportError:
        pass
    frames = synthetic_clip(args.frames, args.size, args.detail)
    palette = OutputOptions(gif_palette=True)
    cases: dict[str, tuple[str, OutputOptions]] = {
        "GIF": ("GIF", OutputOptions()),
        "GIF palette": ("GIF", palette),
        "GIF palette, no dither": ("GIF", OutputOptions(gif_palette=True, gif_dither=False)),
        "MP4": ("MP4", OutputOptions()),
        "WEBM": ("WEBM", OutputOptions()),
        "WEBP": ("WEBP", OutputOptions()),
        "PNG frames": ("PNG", OutputOptions()),
    }
    times: dict[str, list[float]] = {name: [] for name in ["PNG encode (baseline)", *cases]}
    sizes: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.reps):
            runs: list[tuple[str, Callable[[], None]]] = [
                ("PNG encode (baseline)", lambda: png_baseline(frames))
            ]
            for name, (fmt, options) in cases.items():
                stem = Path(tmp) / f"{rep}-{name.replace(' ', '_').replace(',', '')}"

                def run(
                    fmt: str = fmt, options: OutputOptions = options, stem: Path = stem, name: str = name
                ) -> None:
                    (path,) = save(frames, stem, [fmt], fps=8, infotext="benchmark", options=options)
                    files = path.iterdir() if path.is_dir() else [path]
                    sizes[name] = sum(file.stat().st_size for file in files)

                runs.append((name, run))
            for name, run in runs:
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
            for path in Path(tmp).iterdir():
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink()
    sizes["PNG encode (baseline)"] = png_bytes(frames)
    baseline = min(times["PNG encode (baseline)"])
    print(
        f"{args.frames} frames of {args.size}x{args.size}, texture detail {args.detail:g}, "
        f"min of {args.reps} interleaved repetitions"
    )
    print(f"{'format':<26}{'ms/frame':>10}{'x PNG encode':>14}{'spread':>8}{'KiB/frame':>11}")
    for name, values in times.items():
        best = min(values)
        print(
            f"{name:<26}{1000 * best / args.frames:>10.2f}{best / baseline:>14.2f}{max(values) / best:>8.2f}"
            f"{sizes[name] / 1024 / args.frames:>11.1f}"
        )
    for name in ("GIF", "MP4", "WEBP"):
        print(
            f"RATIO writer_{name.lower()} {min(times[name]) / baseline:.4f} {max(times[name]) / min(times[name]):.3f}"
        )


if __name__ == "__main__":
    main()

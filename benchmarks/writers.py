"""Seconds per frame of each output format at 512x512, 64 frames, side by side in one run.

Each format is timed through ``lib_animatediff.output.save`` (temporary file + rename included);
the baseline is a plain Pillow PNG encode of the same frames. Repetitions are interleaved and the
minimum is reported. Also prints the GIF size with and without the global-palette option.

    .venv/bin/python benchmarks/writers.py [--reps 5] [--frames 64] [--size 512]
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lib_animatediff.output import OutputOptions, save


def synthetic_clip(count: int, size: int) -> list[np.ndarray]:
    """A smooth, slowly moving colour field with a moving disc: compresses like generated video."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) / size
    frames = []
    for index in range(count):
        phase = index / count * 2 * np.pi
        red = 127 + 100 * np.sin(6 * xs + phase)
        green = 127 + 100 * np.sin(5 * ys - phase)
        blue = 127 + 100 * np.sin(4 * (xs + ys) + 2 * phase)
        frame = np.stack([red, green, blue], axis=-1)
        cx, cy = 0.5 + 0.3 * np.cos(phase), 0.5 + 0.3 * np.sin(phase)
        frame[(xs - cx) ** 2 + (ys - cy) ** 2 < 0.01] = (250, 250, 240)
        frames.append(np.clip(frame, 0, 255).astype(np.uint8))
    return frames


def png_baseline(frames: list[np.ndarray]) -> None:
    for frame in frames:
        Image.fromarray(frame).save(io.BytesIO(), format="PNG")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()
    try:
        import torch

        torch.set_num_threads(2)
    except ImportError:
        pass
    frames = synthetic_clip(args.frames, args.size)
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
    best: dict[str, float] = {name: float("inf") for name in ["PNG encode (baseline)", *cases]}
    sizes: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.reps):
            runs: list[tuple[str, Callable[[], None]]] = [
                ("PNG encode (baseline)", lambda: png_baseline(frames))
            ]
            for name, (fmt, options) in cases.items():
                stem = Path(tmp) / f"{rep}-{name.replace(' ', '_').replace(',', '')}"

                def run(fmt: str = fmt, options: OutputOptions = options, stem: Path = stem) -> None:
                    save(frames, stem, [fmt], fps=8, infotext="benchmark", options=options)

                runs.append((name, run))
            for name, run in runs:
                start = time.perf_counter()
                run()
                best[name] = min(best[name], time.perf_counter() - start)
        for path in Path(tmp).iterdir():
            if path.suffix == ".gif" and path.name.startswith("0-"):
                sizes[path.stem[2:].replace("_", " ")] = path.stat().st_size
    baseline = best["PNG encode (baseline)"]
    print(f"{args.frames} frames of {args.size}x{args.size}, min of {args.reps} interleaved repetitions")
    print(f"{'format':<26}{'s/frame':>10}{'x PNG encode':>14}")
    for name, seconds in best.items():
        print(f"{name:<26}{seconds / args.frames:>10.4f}{seconds / baseline:>14.2f}")
    print()
    print(f"{'GIF variant':<26}{'bytes':>12}")
    for name, size in sizes.items():
        print(f"{name:<26}{size:>12}")


if __name__ == "__main__":
    main()

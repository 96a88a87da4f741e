"""Runs every benchmark script and prints one table: each ratio next to its goal.

The scripts run one after another as subprocesses (2 threads, idle OpenMP threads sleeping); each
measures its ratio side by side in one run as the minimum over interleaved repetitions (at least 5)
and prints it on a ``RATIO <name> <value> [<spread>]`` line, which is collected here. Spread is
max/min of the timed repetitions of the measured side. ``--verbose`` shows the scripts' own tables.

    .venv/bin/python benchmarks/run_all.py [--reps 5] [--only mm,windows,memory,vs_diffusers,writers] [--verbose]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Goal:
    label: str
    text: str
    low: float
    high: float


# script key -> (script, arguments given the repetitions)
SCRIPTS = {
    "mm": ("mm_overhead.py", lambda reps: [f"--repeats={reps}", "--threads=2"]),
    "windows": ("windows.py", lambda reps: [f"--reps={reps}", "--threads=2"]),
    "memory": ("memory.py", lambda reps: [f"--reps={reps}", "--threads=2"]),
    "vs_diffusers": ("vs_diffusers.py", lambda reps: [f"--reps={reps}", "--threads=2"]),
    "writers": ("writers.py", lambda reps: [f"--reps={reps}"]),
}
GOALS = {
    "mm_time_per_flop": Goal("motion-module time/FLOP overhead (mini SD1.5)", "<= 1.05", 0, 1.05),
    "windows_count_error": Goal("window frame evaluations vs reference |mean/ref - 1|", "= 0", 0, 1e-9),
    "windows_overhead": Goal("window step time / 4 disjoint windows (N=64)", "1.25 +- 5%", 1.1875, 1.3125),
    "memory_sampling": Goal("peak(256)/peak(16) frames, sampling only", "(info)", 0, float("inf")),
    "memory": Goal("peak(256)/peak(16) frames, with decode + write", "<= 1.10", 0, 1.10),
    "vs_diffusers": Goal("end to end ours / diffusers AnimateDiffPipeline", "<= 0.85", 0, 0.85),
    "writer_gif": Goal("GIF encode / PNG encode per frame", "<= 0.30", 0, 0.30),
    "writer_mp4": Goal("MP4 encode / PNG encode per frame", "<= 0.30", 0, 0.30),
    "writer_webp": Goal("WEBP encode / PNG encode per frame", "<= 0.30", 0, 0.30),
}


def run_script(key: str, reps: int, verbose: bool) -> tuple[dict[str, tuple[float, float | None]], float]:
    """The RATIO lines of one script (name -> value, spread) and its wall time in seconds."""
    script, arguments = SCRIPTS[key]
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    start = time.perf_counter()
    child = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *arguments(reps)],
        capture_output=True, text=True, env=env, cwd=ROOT,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    if verbose or child.returncode:
        print(child.stdout, end="")
    if child.returncode:
        print(child.stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"benchmarks/{script} failed with exit status {child.returncode}")
    ratios: dict[str, tuple[float, float | None]] = {}
    for line in child.stdout.splitlines():
        if line.startswith("RATIO "):
            name, value, *spread = line.split()[1:]
            ratios[name] = (float(value), float(spread[0]) if spread else None)
    return ratios, seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5, help="interleaved repetitions per script (>= 5)")
    parser.add_argument("--only", default=",".join(SCRIPTS), help="comma-separated scripts to run")
    parser.add_argument("--verbose", action="store_true", help="also print each script's own output")
    args = parser.parse_args()
    if args.reps < 5:
        parser.error("--reps: the scoreboard takes the minimum over at least 5 repetitions")
    chosen = args.only.split(",")
    unknown = [key for key in chosen if key not in SCRIPTS]
    if unknown:
        parser.error(f"--only: unknown {', '.join(unknown)}; expected some of {', '.join(SCRIPTS)}")
    ratios: dict[str, tuple[float, float | None]] = {}
    for key in chosen:
        print(f"running benchmarks/{SCRIPTS[key][0]} ...", flush=True)
        found, seconds = run_script(key, args.reps, args.verbose)
        print(f"  done in {seconds:.0f} s", flush=True)
        ratios |= found
    header = f"{'ratio':<56}{'value':>8}{'spread':>8}  {'goal':<12}{'':>5}"
    print()
    print(header)
    print("-" * len(header))
    for name, goal in GOALS.items():
        if name not in ratios:
            continue
        value, spread = ratios[name]
        verdict = "ok" if goal.low <= value <= goal.high else "MISS"
        spread_text = f"{spread:.2f}" if spread is not None else "-"
        print(f"{goal.label:<56}{value:>8.3f}{spread_text:>8}  {goal.text:<12}{verdict:>5}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

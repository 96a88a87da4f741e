"""``python -m motion_module info FILE``: what a motion-module checkpoint is, or why it is unusable."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from motion_module.errors import MotionModuleError
from motion_module.loading import load_motion_module
from motion_module.model import MotionModule

FAMILY_NAMES = {"sd15": "SD1.5", "sdxl": "SDXL"}


def describe(mm: MotionModule, path: str) -> str:
    """The ``info`` report: one ``name: value`` line per fact."""
    parameters = list(mm.parameters())
    schedule = mm.beta_schedule
    lines = {
        "file": path,
        "variant": mm.variant,
        "family": FAMILY_NAMES[mm.family],
        "pe length": str(mm.pe_length),
        "mid block": "yes" if mm.has_mid_block else "no",
        "cross-frame groupnorm": "yes" if mm.cross_frame_groupnorm else "no",
        "beta schedule": f"{schedule.kind} {schedule.beta_start}-{schedule.beta_end}, {schedule.num_steps} steps",
        "parameters": f"{sum(p.numel() for p in parameters):,}",
        "dtype": str(parameters[0].dtype).removeprefix("torch."),
        "sha256": mm.sha256 or "",
        "short hash": mm.short_hash or "",
    }
    return "\n".join(f"{name}: {value}" for name, value in lines.items())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m motion_module", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    info = commands.add_parser(
        "info", help="print variant, family, PE length, parameter count, dtype and hash"
    )
    info.add_argument("file", help="a motion-module checkpoint (.safetensors, .ckpt, .pt)")
    args = parser.parse_args(argv)
    try:
        mm = load_motion_module(args.file)
    except MotionModuleError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(describe(mm, args.file))
    return 0


if __name__ == "__main__":
    sys.exit(main())

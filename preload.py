"""A1111 preload hook: AnimateDiff's command-line flags (read with ``getattr(cmd_opts, ..., None)``)."""

from __future__ import annotations

import argparse

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def preload(parser: argparse.ArgumentParser) -> None:
    """Add ``--animatediff-model-path`` and ``--animatediff-loglevel``."""
    parser.add_argument(
        "--animatediff-model-path",
        type=str,
        default=None,
        help="folder of AnimateDiff motion modules (overrides the setting; default: <extension>/model)",
    )
    parser.add_argument(
        "--animatediff-loglevel",
        type=str.upper,
        choices=LOG_LEVELS,
        default=None,
        help="log level of the AnimateDiff extension's console messages",
    )

"""Mirrors A1111 ``modules/errors.py``: ``report`` logs an error and carries on."""

from __future__ import annotations

import logging
import traceback

reported: list[str] = []


def report(message: str, *, exc_info: bool = False) -> None:
    """Record the message (and the current traceback) as A1111 prints it to the console."""
    text = message + ("\n" + traceback.format_exc() if exc_info else "")
    reported.append(text)
    logging.getLogger("fake_webui").error(text)

"""The runner's error for bad user input (missing files, unusable models, bad options)."""

from __future__ import annotations


class InputError(ValueError):
    """A file or option the user gave cannot be used; the message names it."""

"""Mirrors A1111 ``modules/images.py``: sequence numbers in an output folder and ``save_image``."""

from __future__ import annotations

import os

saved: list[str] = []


def get_next_sequence_number(path: str, basename: str) -> int:
    """One more than the largest leading number of the file names in ``path`` that start with ``basename``."""
    prefix = f"{basename}-" if basename else ""
    largest = -1
    for name in os.listdir(path):
        if name.startswith(prefix):
            head = os.path.splitext(name[len(prefix) :])[0].split("-")[0]
            if head.isdigit():
                largest = max(largest, int(head))
    return largest + 1


def save_image(image, path, basename, seed=None, prompt=None, extension="png", info=None, p=None, **kwargs):
    """Save ``image`` as ``{seq:05}-{seed}.{extension}`` in ``path`` (A1111's default file name pattern)."""
    os.makedirs(path, exist_ok=True)
    filename = os.path.join(path, f"{get_next_sequence_number(path, basename):05}-{seed}.{extension}")
    image.save(filename)
    saved.append(filename)
    return filename, None


def resize_image(resize_mode, im, width, height, upscaler_name=None):
    """Resize mode 0 ("Just resize") only."""
    return im.resize((width, height))


def read_info_from_image(image):
    """The ``parameters`` text A1111 writes into its PNGs, and the image's other info items."""
    items = dict(image.info or {})
    return items.pop("parameters", None), items

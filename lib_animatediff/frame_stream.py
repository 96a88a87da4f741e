"""Latents decoded a chunk at a time and handed on frame by frame, so that no clip-sized frame
array exists: hand :func:`decoded_frames` to ``output.save``, which streams an iterator.

Host-agnostic: the host supplies ``decode_chunk(latents) -> uint8 (k, H, W, 3)`` for a few frames
(its VAE, device and dtype); the chunk is decoded when its first frame is asked for and released
once its last frame has been consumed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from tqdm.auto import tqdm

from lib_animatediff.output import RgbArray

DecodeChunk = Callable[[torch.Tensor], RgbArray]


def decoded_frames(
    latents: torch.Tensor,
    decode_chunk: DecodeChunk,
    *,
    chunk_size: int,
    progress: bool = False,
    description: str = "decoding",
) -> Iterator[RgbArray]:
    """The frames of ``latents`` (``N`` first), decoded ``chunk_size`` at a time, one by one."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size={chunk_size!r}: expected >= 1")
    count = latents.shape[0]
    for start in tqdm(range(0, count, chunk_size), desc=description, disable=not progress):
        chunk = decode_chunk(latents[start : start + chunk_size])
        if chunk.shape[0] != min(chunk_size, count - start):
            raise ValueError(f"decode_chunk returned {chunk.shape[0]} frames for frames {start}..")
        yield from chunk

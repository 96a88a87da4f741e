"""``save`` of an iterator (streamed): the same files as from a list, frames never kept."""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import GifImagePlugin, Image

from lib_animatediff import writers
from lib_animatediff.output import OutputOptions, save
from tests.test_out_writers import INFOTEXT, decode_video, gif_frames, gif_modes, make_frames

FORMATS = ["GIF", "MP4", "WEBP", "WEBM", "PNG", "TXT"]


def tree_bytes(path: Path) -> dict[str, bytes]:
    if path.is_dir():
        return {child.name: child.read_bytes() for child in sorted(path.iterdir())}
    return {path.name: path.read_bytes()}


def test_streamed_files_equal_saved_ones(tmp_path: Path) -> None:
    frames = make_frames(20, 24, 32)
    saved = save(frames, tmp_path / "a" / "clip", FORMATS, fps=8, loop_number=2, infotext=INFOTEXT)
    streamed = save(iter(frames), tmp_path / "b" / "clip", FORMATS, fps=8, loop_number=2, infotext=INFOTEXT)
    assert [p.name for p in streamed] == [p.name for p in saved]
    for first, second in zip(saved, streamed, strict=True):
        if first.suffix in (".mp4", ".webm"):
            decoded = [decode_video(path)[0] for path in (first, second)]
            assert len(decoded[1]) == 20
            for a, b, source in zip(*decoded, frames, strict=True):
                assert np.abs(a.astype(int) - b).max() <= 2
                assert np.abs(b[:24, :32].astype(int) - source).mean() < 8
        else:  # GIF, WEBP, PNG frames and TXT are encoded deterministically
            assert tree_bytes(first) == tree_bytes(second)


def test_streaming_keeps_no_frame(tmp_path: Path) -> None:
    """Each frame is a fresh array that only the generator hands out: when frame i is asked for,
    frames before i - 1 (the caller's loop still holds i - 1) must be gone from every writer."""
    refs: list[weakref.ref] = []

    def frames() -> Iterator[np.ndarray]:
        for index in range(24):
            assert all(ref() is None for ref in refs[:-1]), f"a frame before {index - 1} is still held"
            frame = make_frames(24, 24, 64)[index]  # the block moves 2 px a frame: all distinct
            refs.append(weakref.ref(frame))
            yield frame

    options = OutputOptions(gif_palette=True)  # a streamed palette holds copies of 16 frames
    paths = save(frames(), tmp_path / "s", FORMATS, fps=8, options=options)
    assert len(refs) == 24 and len(gif_frames(paths[0])) == 24


def test_bad_frame_half_way_leaves_nothing(tmp_path: Path) -> None:
    frames = make_frames(3)
    frames[2] = frames[2][:, :-1]
    with pytest.raises(ValueError, match=r"frames\[2\]"):
        save(iter(frames), tmp_path / "x", FORMATS, fps=8)
    assert list(tmp_path.iterdir()) == []


def test_no_frames_is_an_error_and_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no frame"):
        save(iter([]), tmp_path / "x", ["GIF", "MP4"], fps=8)
    assert list(tmp_path.iterdir()) == []


def test_bad_arguments_rejected_before_any_file(tmp_path: Path) -> None:
    def never() -> Iterator[np.ndarray]:
        raise AssertionError("no frame may be asked for")
        yield

    with pytest.raises(ValueError, match="fps"):
        save(never(), tmp_path / "x", ["GIF"], fps=0)
    (tmp_path / "y.gif").write_bytes(b"")
    with pytest.raises(FileExistsError, match=r"y\.gif"):
        save(never(), tmp_path / "y", ["MP4", "GIF"], fps=8)
    assert [p.name for p in tmp_path.iterdir()] == ["y.gif"]


def test_streamed_global_gif_palette_fitted_to_the_first_frames(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With this strategy Pillow keeps later frames in "P" mode only when their palette is the first one's.
    monkeypatch.setattr(
        GifImagePlugin, "LOADING_STRATEGY", GifImagePlugin.LoadingStrategy.RGB_AFTER_DIFFERENT_PALETTE_ONLY
    )
    frames = make_frames(20, 24, 64)
    (path,) = save(iter(frames), tmp_path / "g", ["GIF"], fps=4, options=OutputOptions(gif_palette=True))
    decoded = gif_frames(path)
    assert len(decoded) == 20
    assert max(np.abs(f.astype(int) - g).mean() for (f, _), g in zip(decoded, frames, strict=True)) < 8
    assert gif_modes(path) == {"P"}


def test_gif_repeats_merged_and_changed_regions_stored_alone(tmp_path: Path) -> None:
    first, moved = make_frames(2, 48, 64)
    other = moved.copy()
    other[30:34, 40:50] = (10, 200, 30)  # differs from ``moved`` in one block only
    (path,) = save([first, first, moved, other], tmp_path / "m", ["GIF"], fps=8)
    decoded = gif_frames(path)
    assert [duration for _, duration in decoded] == [250, 130, 120]  # 130 + 120 ms merged
    for (frame, _), source in zip(decoded, [first, moved, other], strict=True):
        assert np.abs(frame.astype(int) - source).mean() < 8
    with Image.open(path) as image:
        image.seek(2)
        assert image.dispose_extent == (40, 30, 50, 34)  # only the changed block was stored


def test_webp_lossy_stream_decodes_close_to_the_frames(tmp_path: Path) -> None:
    frames = make_frames(12, 48, 64)
    (path,) = save(frames, tmp_path / "w", ["WEBP"], fps=10, loop_number=0, infotext=INFOTEXT)
    with Image.open(path) as image:
        assert image.n_frames == 12 and image.info["loop"] == 0
        assert writers.read_webp_infotext(image) == INFOTEXT
        for index, frame in enumerate(frames):
            image.seek(index)
            assert np.abs(np.asarray(image.convert("RGB")).astype(int) - frame).mean() < 6
            assert image.info["duration"] == 100


def x264_options(path: Path) -> bytes:
    """The option string x264 writes into the stream's SEI message."""
    data = path.read_bytes()
    start = data.index(b"options: ")
    return data[start : data.index(b"\x00", start)]


def test_mp4_empty_preset_means_our_fast_default(tmp_path: Path) -> None:
    frames = make_frames(4, 48, 64)
    options = {}
    for preset in ("", writers.DEFAULT_X264_PRESET, "medium"):
        (path,) = save(
            frames, tmp_path / f"p{preset}", ["MP4"], fps=8, options=OutputOptions(mp4_preset=preset)
        )
        options[preset] = x264_options(path)
    assert options[""] == options[writers.DEFAULT_X264_PRESET] != options["medium"]

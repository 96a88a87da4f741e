"""Every format written by lib_animatediff.output.save is decoded again and checked."""

from __future__ import annotations

import datetime
import logging
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import GifImagePlugin, Image

from lib_animatediff import output, writers
from lib_animatediff.output import OutputOptions, WriteError, output_stem, save

INFOTEXT = 'a cat  in 東京, ünïcode & spaces\nSteps: 20, Seed: 7, AnimateDiff: "model: mm.ckpt, fps: 8"'


def make_frames(count: int = 5, height: int = 24, width: int = 32, seed: int = 0) -> list[np.ndarray]:
    """Distinct frames: a smooth colour gradient with a white block that moves (no frame repeats)."""
    ys, xs = np.mgrid[0:height, 0:width]
    base = np.stack([xs * 200 // width, ys * 200 // height, (xs + ys + 40 * seed) % 200], axis=-1).astype(
        np.uint8
    )
    frames = []
    for index in range(count):
        frame = base.copy()
        frame[2:8, 2 + 2 * index : 8 + 2 * index] = 255
        frames.append(frame)
    return frames


def ffmpeg_metadata(path: Path) -> dict[str, str]:
    result = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(path), "-f", "ffmetadata", "-"],
        capture_output=True,
        check=True,
    )
    text = result.stdout.decode("utf-8").replace("\\\n", "\n")
    tags: dict[str, str] = {}
    key = None
    for line in text.split("\n")[1:]:
        if "=" in line and not line.startswith(" "):
            head, _, value = line.partition("=")
            if head.isidentifier():
                key = head.lower()
                tags[key] = value
                continue
        if key is not None:
            tags[key] += "\n" + line
    return {name: value.rstrip("\n") for name, value in tags.items()}


def decode_video(path: Path) -> tuple[list[np.ndarray], float, tuple[int, int]]:
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    width, height = meta["size"]
    frames = [np.frombuffer(raw, np.uint8).reshape(height, width, 3) for raw in reader]
    return frames, meta["fps"], (width, height)


def gif_frames(path: Path) -> list[tuple[np.ndarray, int]]:
    with Image.open(path) as image:
        out = []
        for index in range(image.n_frames):
            image.seek(index)
            out.append((np.asarray(image.convert("RGB")), image.info["duration"]))
        return out


def gif_modes(path: Path) -> set[str]:
    """The modes Pillow gives the frames (with the loading strategy the caller sets)."""
    with Image.open(path) as image:
        modes = set()
        for index in range(image.n_frames):
            image.seek(index)
            modes.add(image.mode)
        return modes


def test_gif_frames_durations_loop_comment(tmp_path: Path) -> None:
    frames = make_frames(6)
    (path,) = save(frames, tmp_path / "clip", ["GIF"], fps=8, loop_number=3, infotext=INFOTEXT)
    assert path == tmp_path / "clip.gif"
    decoded = gif_frames(path)
    assert len(decoded) == 6
    assert all(frame.shape == (24, 32, 3) for frame, _ in decoded)
    durations = [duration for _, duration in decoded]
    assert all(abs(d - 125) <= 5 for d in durations)  # 10 ms ticks around 1000/8
    assert sum(durations) == 750  # no drift over the clip
    # Fast-octree per-frame palettes keep these few-colour frames close to the source.
    assert max(np.abs(f.astype(int) - g).mean() for (f, _), g in zip(decoded, frames, strict=True)) < 8
    with Image.open(path) as image:
        assert image.info["loop"] == 2  # 3 plays = first play + 2 repeats
        assert image.info["comment"].decode("utf-8") == INFOTEXT


@pytest.mark.parametrize(("loop_number", "stored"), [(0, 0), (1, None), (2, 1), (65535, 65534)])
def test_gif_loop_number_means_plays(tmp_path: Path, loop_number: int, stored: int | None) -> None:
    (path,) = save(make_frames(2), tmp_path / "c", ["GIF"], fps=10, loop_number=loop_number)
    with Image.open(path) as image:
        assert image.info.get("loop") == stored
        assert "comment" not in image.info  # empty infotext embeds nothing


def test_gif_global_palette_and_no_dither(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # With this strategy Pillow keeps later frames in "P" mode only when their palette is the first one's.
    monkeypatch.setattr(
        GifImagePlugin, "LOADING_STRATEGY", GifImagePlugin.LoadingStrategy.RGB_AFTER_DIFFERENT_PALETTE_ONLY
    )
    frames = make_frames(4)
    for dither in (True, False):
        options = OutputOptions(gif_palette=True, gif_dither=dither)
        (path,) = save(frames, tmp_path / f"p{dither}", ["GIF"], fps=4, options=options)
        decoded = gif_frames(path)
        assert len(decoded) == 4 and [d for _, d in decoded] == [250] * 4
        assert max(np.abs(f.astype(int) - g).mean() for (f, _), g in zip(decoded, frames, strict=True)) < 8
        assert gif_modes(path) == {"P"}  # one global palette
    (path,) = save(frames, tmp_path / "local", ["GIF"], fps=4)
    with Image.open(path) as image:
        image.seek(3)
        assert image.mode == "RGB"  # the default path: a palette per frame


def test_gif_fast_fps_clamped_to_20ms_with_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        (path,) = save(make_frames(3), tmp_path / "fast", ["GIF"], fps=60)
    assert [d for _, d in gif_frames(path)] == [20, 20, 20]
    assert "20 ms" in caplog.text


def test_gifsicle_missing_is_a_logged_notice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(writers.shutil, "which", lambda name: None)
    with caplog.at_level(logging.WARNING):
        (path,) = save(
            make_frames(3), tmp_path / "g", ["GIF"], fps=8, options=OutputOptions(gif_gifsicle=True)
        )
    assert "gifsicle not found" in caplog.text
    assert len(gif_frames(path)) == 3


@pytest.mark.skipif(writers.shutil.which("gifsicle") is None, reason="gifsicle binary not installed")
def test_gifsicle_pass_keeps_frames_loop_comment(tmp_path: Path) -> None:
    options = OutputOptions(gif_gifsicle=True)
    (path,) = save(
        make_frames(4), tmp_path / "g", ["GIF"], fps=8, loop_number=2, infotext=INFOTEXT, options=options
    )
    assert len(gif_frames(path)) == 4
    with Image.open(path) as image:
        assert image.info["loop"] == 1 and image.info["comment"].decode() == INFOTEXT


@pytest.mark.parametrize(("height", "width"), [(24, 32), (25, 33)])
def test_mp4_h264_frames_fps_metadata(tmp_path: Path, height: int, width: int) -> None:
    frames = make_frames(5, height, width)
    options = OutputOptions(mp4_crf=0, mp4_preset="ultrafast", mp4_tune="animation")
    (path,) = save(frames, tmp_path / "v", ["MP4"], fps=12, infotext=INFOTEXT, options=options)
    decoded, fps, size = decode_video(path)
    assert len(decoded) == 5 and fps == 12
    assert size == (width + width % 2, height + height % 2)  # odd sizes padded to even
    assert (
        max(np.abs(d[:height, :width].astype(int) - f).mean() for d, f in zip(decoded, frames, strict=True))
        < 6
    )
    if width % 2:
        np.testing.assert_allclose(decoded[0][:height, -1], decoded[0][:height, -2], atol=40)  # edge copy
    assert ffmpeg_metadata(path)["comment"] == INFOTEXT
    assert b"avc1" in path.read_bytes()[:4096] or b"avcC" in path.read_bytes()


def test_webm_vp9_frames_fps_metadata(tmp_path: Path) -> None:
    frames = make_frames(4, 25, 33)
    (path,) = save(frames, tmp_path / "v", ["webm"], fps=6, infotext=INFOTEXT)
    decoded, fps, size = decode_video(path)
    assert len(decoded) == 4 and fps == 6 and size == (34, 26)
    tags = ffmpeg_metadata(path)
    assert tags["title"] == INFOTEXT and tags["comment"] == INFOTEXT
    assert b"V_VP9" in path.read_bytes()


def test_webp_frames_durations_loop_exif(tmp_path: Path) -> None:
    frames = make_frames(4)
    options = OutputOptions(webp_lossless=True)
    (path,) = save(frames, tmp_path / "w", ["WEBP"], fps=3, loop_number=2, infotext=INFOTEXT, options=options)
    with Image.open(path) as image:
        assert image.n_frames == 4 and image.size == (32, 24)
        assert image.info["loop"] == 2
        assert writers.read_webp_infotext(image) == INFOTEXT
        durations = []
        for index in range(4):
            image.seek(index)
            np.testing.assert_array_equal(np.asarray(image.convert("RGB")), frames[index])  # lossless
            durations.append(image.info["duration"])  # known once the frame is loaded
    assert durations == [333, 334, 333, 333] and sum(durations) == 1333


def test_webp_lossy_quality_changes_size(tmp_path: Path) -> None:
    frames = make_frames(3, 48, 64)
    sizes = []
    for quality in (10, 95):
        (path,) = save(
            frames, tmp_path / f"q{quality}", ["WEBP"], fps=8, options=OutputOptions(webp_quality=quality)
        )
        sizes.append(path.stat().st_size)
    assert sizes[0] < sizes[1]


def test_png_frames_folder_and_txt(tmp_path: Path) -> None:
    frames = [Image.fromarray(frame) for frame in make_frames(3)]
    paths = save(frames, tmp_path / "00001-42", ["TXT", "PNG", "Frame"], fps=8, infotext=INFOTEXT)
    assert paths == [tmp_path / "00001-42", tmp_path / "00001-42.txt"]
    names = sorted(p.name for p in paths[0].iterdir())
    assert names == ["00000.png", "00001.png", "00002.png"]
    for name, frame in zip(names, frames, strict=True):
        with Image.open(paths[0] / name) as image:
            assert image.info["parameters"] == INFOTEXT
            np.testing.assert_array_equal(np.asarray(image), np.asarray(frame))
    assert paths[1].read_text(encoding="utf-8") == INFOTEXT + "\n"


def test_all_formats_order_and_frame_only(tmp_path: Path) -> None:
    stem = tmp_path / "s"
    paths = save(make_frames(2), stem, ["TXT", "Frame", "PNG", "WEBM", "WEBP", "MP4", "GIF"], fps=8)
    assert [p.name for p in paths] == ["s.gif", "s.mp4", "s.webp", "s.webm", "s", "s.txt"]
    assert save(make_frames(2), tmp_path / "f", ["Frame"], fps=8) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)  # no temporaries


def test_output_stem_naming_and_sequence(tmp_path: Path) -> None:
    day = datetime.date(2024, 3, 16)
    first = output_stem(tmp_path, 1234, date=day)
    assert first == tmp_path / "AnimateDiff" / "2024-03-16" / "00000-1234"
    save(make_frames(2), first, ["GIF", "PNG"], fps=8)
    second = output_stem(tmp_path, 99, "req-1", date=day)
    assert second.name == "00001-99-req-1"
    second.with_name("00007-5").mkdir()  # a PNG-frame folder counts, as in A1111
    (second.parent / "notes.txt").write_text("x")
    assert output_stem(tmp_path, 5, date=day).name == "00008-5"


@pytest.mark.parametrize(
    ("request_id", "suffix"),
    [("../../x", "-_.._x"), ("a/b", "-a_b"), ("CON", "-CON"), ("\n", "-_"), ("a\x00b", "-a_b"), ("...", "")],
)
def test_output_stem_sanitises_request_id(tmp_path: Path, request_id: str, suffix: str) -> None:
    stem = output_stem(tmp_path, 1, request_id, date=datetime.date(2024, 1, 2))
    assert stem.parent == tmp_path / "AnimateDiff" / "2024-01-02"
    assert stem.name == "00000-1" + suffix
    assert "/" not in stem.name and not stem.name.startswith(".")


def test_output_stem_long_request_id_truncated(tmp_path: Path) -> None:
    assert output_stem(tmp_path, 1, "x" * 300).name == "00000-1-" + "x" * 64


def test_never_overwrites(tmp_path: Path) -> None:
    save(make_frames(2), tmp_path / "a", ["GIF"], fps=8)
    before = (tmp_path / "a.gif").read_bytes()
    with pytest.raises(FileExistsError, match=r"a\.gif"):
        save(make_frames(3), tmp_path / "a", ["TXT", "GIF"], fps=8)
    assert (tmp_path / "a.gif").read_bytes() == before and not (tmp_path / "a.txt").exists()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"formats": "GIF"}, "formats"),
        ({"formats": []}, "formats"),
        ({"formats": ["EXE"]}, "formats"),
        ({"fps": 0}, "fps"),
        ({"fps": -8}, "fps"),
        ({"fps": float("nan")}, "fps"),
        ({"loop_number": -1}, "loop_number"),
        ({"loop_number": 65536}, "loop_number"),
        ({"frames": []}, "frames"),
        ({"frames": [np.zeros((4, 4, 3), np.float32)]}, r"frames\[0\]"),
        ({"frames": [np.zeros((4, 4, 3), np.uint8), np.zeros((4, 6, 3), np.uint8)]}, r"frames\[1\]"),
        ({"infotext": None}, "infotext"),
    ],
)
def test_bad_arguments_rejected_before_writing(tmp_path: Path, kwargs: dict, field: str) -> None:
    call = {"frames": make_frames(2), "stem": tmp_path / "x", "formats": ["GIF"], "fps": 8} | kwargs
    with pytest.raises(ValueError, match=field):
        save(call.pop("frames"), call.pop("stem"), call.pop("formats"), **call)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "kwargs",
    [{"mp4_crf": 52}, {"mp4_preset": "fast; rm"}, {"mp4_tune": "x"}, {"webp_quality": 101}, {"webm_crf": -1}],
)
def test_bad_options(kwargs: dict) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        OutputOptions(**kwargs)


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_FSIZE / SIGXFSZ semantics")
@pytest.mark.parametrize("fmt", ["GIF", "MP4", "WEBM", "WEBP", "PNG", "TXT"])
def test_disk_full_half_way_leaves_nothing(tmp_path: Path, fmt: str) -> None:
    """Each file may grow to 40 KB only (the kernel refuses further writes, as on a full disk):
    every format fails part-way through its file and nothing, not even a temporary, remains."""
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 256, (128, 128, 3), dtype=np.uint8) for _ in range(8)]  # ~49 KB per frame
    limit = 40_000
    old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, old_limit[1]))
    try:
        with pytest.raises(WriteError) as caught:  # from an OSError in Python or ffmpeg's failure
            save(frames, tmp_path / "big", ["GIF", fmt], fps=8, infotext="x" * 50_000)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
        signal.signal(signal.SIGXFSZ, old_handler)
    assert "could not write" in str(caught.value) and "big" in str(caught.value.path)
    assert list(tmp_path.iterdir()) == []


def test_failure_in_a_later_format_removes_earlier_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing_webm(frames: list, path: Path, **kwargs: object) -> None:
        path.write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setitem(output._WRITERS, "WEBM", (".webm", failing_webm))
    with pytest.raises(WriteError, match="No space") as caught:
        save(make_frames(2), tmp_path / "z", ["GIF", "MP4", "PNG", "TXT", "WEBM"], fps=8, infotext="t")
    assert caught.value.path == tmp_path / "z.webm"
    assert isinstance(caught.value.__cause__, OSError)
    assert os.listdir(tmp_path) == []


def test_long_unicode_infotext_round_trips(tmp_path: Path) -> None:
    """Several KB of non-ASCII text: the GIF comment spans many 255-byte sub-blocks."""
    long_text = (INFOTEXT + " ✓ ") * 40
    paths = save(make_frames(2), tmp_path / "long", ["GIF", "MP4", "WEBP", "PNG"], fps=8, infotext=long_text)
    gif, mp4, webp, png = paths
    assert len(long_text.encode()) > 3000
    with Image.open(gif) as image:
        assert image.info["comment"].decode("utf-8") == long_text
    assert ffmpeg_metadata(mp4)["comment"] == long_text
    with Image.open(webp) as image:
        assert writers.read_webp_infotext(image) == long_text
    with Image.open(png / "00001.png") as image:
        assert image.info["parameters"] == long_text

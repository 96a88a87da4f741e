"""Video sources: a video file read back with its real frame count and fps; frame folders; errors."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

from lib_animatediff.video_source import (
    VideoSourceError,
    list_frame_files,
    natural_key,
    read_frame_folder,
    read_video,
)


def write_video(path: Path, count: int, fps: float, size: tuple[int, int] = (32, 24)) -> list[np.ndarray]:
    width, height = size
    frames = []
    writer = imageio_ffmpeg.write_frames(
        str(path), size, fps=fps, codec="libx264", quality=None, macro_block_size=1,
        output_params=["-crf", "0", "-preset", "ultrafast", "-pix_fmt", "yuv444p"], ffmpeg_log_level="error",
    )  # fmt: skip
    writer.send(None)
    for index in range(count):
        frame = np.zeros((height, width, 3), np.uint8)
        frame[:, : (index + 1) * 2] = 200  # a bar that grows: every frame differs
        frames.append(frame)
        writer.send(frame)
    writer.close()
    return frames


def test_video_frames_count_and_fps(tmp_path: Path) -> None:
    written = write_video(tmp_path / "clip.mp4", 7, 12)
    result = read_video(tmp_path / "clip.mp4")
    assert result.count == 7 and result.fps == 12 and result.source == tmp_path / "clip.mp4"
    assert result.frames[0].shape == (24, 32, 3) and result.frames[0].dtype == np.uint8
    for decoded, original in zip(result.frames, written, strict=True):
        assert np.abs(decoded.astype(int) - original).mean() < 3


def test_video_opencv_backend_matches(tmp_path: Path) -> None:
    write_video(tmp_path / "clip.mp4", 5, 10)
    by_ffmpeg = read_video(tmp_path / "clip.mp4")
    by_opencv = read_video(tmp_path / "clip.mp4", backend="opencv", max_frames=4)
    assert by_opencv.count == 4 and by_opencv.fps == 10
    for a, b in zip(by_opencv.frames, by_ffmpeg.frames, strict=False):
        assert np.abs(a.astype(int) - b).mean() < 3  # both RGB
    with pytest.raises(VideoSourceError, match="corrupt"):
        (tmp_path / "corrupt.mp4").write_bytes(b"garbage" * 100)
        read_video(tmp_path / "corrupt.mp4", backend="opencv")


def test_video_frame_limit_and_duplicates_kept(tmp_path: Path) -> None:
    path = tmp_path / "same.mp4"
    writer = imageio_ffmpeg.write_frames(
        str(path), (16, 16), fps=8, macro_block_size=1, ffmpeg_log_level="error"
    )
    writer.send(None)
    for _ in range(6):
        writer.send(
            np.full((16, 16, 3), 90, np.uint8)
        )  # identical frames: the original's mpdecimate would drop them
    writer.close()
    assert read_video(path).count == 6
    assert read_video(path, max_frames=4).count == 4


def test_video_pixel_budget(tmp_path: Path) -> None:
    write_video(tmp_path / "clip.mp4", 5, 8)
    assert read_video(tmp_path / "clip.mp4", max_pixels=32 * 24 * 5).count == 5
    with pytest.raises(VideoSourceError, match="budget"):
        read_video(tmp_path / "clip.mp4", max_pixels=32 * 24 * 4)


@pytest.mark.parametrize(
    "name",
    ["missing.mp4", "http://169.254.169.254/latest/meta-data/", "concat:a.mp4|b.mp4", "-i", "", "x\x00y"],
)
def test_video_missing_or_not_a_local_file(
    tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(VideoSourceError, match="source path"):
        read_video(name)


def test_video_corrupt_and_empty_files(tmp_path: Path) -> None:
    (tmp_path / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypisom" + os.urandom(2000))
    (tmp_path / "empty.mp4").write_bytes(b"")
    for name in ("corrupt.mp4", "empty.mp4"):
        with pytest.raises(VideoSourceError, match=name):
            read_video(tmp_path / name)
    with pytest.raises(VideoSourceError, match="not a file"):
        read_video(tmp_path)


def test_roots_confine_paths(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    write_video(tmp_path / "outside.mp4", 2, 8)
    (root / "link.mp4").symlink_to(tmp_path / "outside.mp4")
    for path in (tmp_path / "outside.mp4", root / "link.mp4", root / ".." / "outside.mp4"):
        with pytest.raises(VideoSourceError, match="outside the allowed folders"):
            read_video(path, roots=[root])
    write_video(root / "inside.mp4", 2, 8)
    assert read_video(root / "inside.mp4", roots=[root]).count == 2


def test_playlist_inside_root_cannot_read_outside(tmp_path: Path) -> None:
    """An HLS playlist is a local file, but it names another file: ffmpeg must refuse to open it."""
    root = tmp_path / "root"
    root.mkdir()
    write_video(tmp_path / "secret.mp4", 2, 8)
    subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(tmp_path / "secret.mp4"), "-c", "copy", "-f", "mpegts", str(tmp_path / "secret.ts")],
        check=True,
    )  # fmt: skip
    (root / "evil.m3u8").write_text(
        f"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\nfile:{tmp_path / 'secret.ts'}\n#EXT-X-ENDLIST\n"
    )
    with pytest.raises(VideoSourceError, match="evil"):
        read_video(root / "evil.m3u8", roots=[root])


def test_natural_sort() -> None:
    names = ["frame10.png", "frame2.png", "Frame1.png", "frame02b.png", "frame100.png"]
    assert sorted(names, key=natural_key) == [
        "Frame1.png",
        "frame2.png",
        "frame02b.png",
        "frame10.png",
        "frame100.png",
    ]


def make_folder(folder: Path, names: list[str], size: tuple[int, int] = (8, 6)) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for index, name in enumerate(names):
        Image.new("RGB", size, (index * 20, 0, 0)).save(folder / name)


def test_folder_natural_order_images_only(tmp_path: Path) -> None:
    make_folder(tmp_path, ["10.png", "2.jpg", "1.PNG", "3.webp"])
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "sub.png").mkdir()  # a folder with an image suffix is skipped
    assert [p.name for p in list_frame_files(tmp_path)] == ["1.PNG", "2.jpg", "3.webp", "10.png"]
    result = read_frame_folder(tmp_path, max_frames=3)
    assert result.count == 3 and result.fps is None
    reds = [int(frame[0, 0, 0]) for frame in result.frames]
    np.testing.assert_allclose(reds, [40, 20, 60], atol=2)  # 1.PNG, 2.jpg, 3.webp (lossy codecs)
    assert read_frame_folder(tmp_path).count == 4


def test_folder_errors(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(VideoSourceError, match="no image files"):
        read_frame_folder(tmp_path / "empty")
    with pytest.raises(VideoSourceError, match="does not exist"):
        read_frame_folder(tmp_path / "nope")
    (tmp_path / "file.png").write_bytes(b"not a png")
    with pytest.raises(VideoSourceError, match="not a directory"):
        read_frame_folder(tmp_path / "file.png")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "0.png").write_bytes(b"not a png")
    with pytest.raises(VideoSourceError, match=r"0\.png"):
        read_frame_folder(tmp_path / "bad")


def test_folder_budget_and_roots(tmp_path: Path) -> None:
    make_folder(tmp_path / "root" / "frames", ["0.png", "1.png", "2.png"])
    with pytest.raises(VideoSourceError, match="budget"):
        read_frame_folder(tmp_path / "root" / "frames", max_pixels=8 * 6 * 2)
    make_folder(tmp_path / "elsewhere", ["9.png"])
    (tmp_path / "root" / "frames" / "3.png").symlink_to(tmp_path / "elsewhere" / "9.png")
    with pytest.raises(VideoSourceError, match="outside"):
        read_frame_folder(tmp_path / "root" / "frames", roots=[tmp_path / "root"])
    with pytest.raises(VideoSourceError, match="outside"):
        read_frame_folder(tmp_path / "elsewhere", roots=[tmp_path / "root"])


@pytest.mark.parametrize(("field", "value"), [("max_frames", 0), ("max_pixels", -1), ("max_frames", True)])
def test_bad_limits(tmp_path: Path, field: str, value: object) -> None:
    make_folder(tmp_path, ["0.png"])
    with pytest.raises(ValueError, match=field):
        read_frame_folder(tmp_path, **{field: value})

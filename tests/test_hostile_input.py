"""Hostile input and faults (issue 13), in the order of the issue's list: paths from the API, the
memory budget and integer bounds, late output failures caught before sampling, NaN/Inf latents,
malformed motion-module files, whole-or-absent outputs, and the chunked temporal attention.

Where a case needs a big number, a small budget setting stands in for a big allocation.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import threading
import tracemalloc

import numpy as np
import pytest
import torch

from lib_animatediff import budget, context, output, video_source, windows
from lib_animatediff.a1111 import routes
from lib_animatediff.a1111.script_args import RequestError
from lib_animatediff.coercion import ParamsError
from lib_animatediff.params import AnimateDiffParams
from lib_animatediff.runner import cli, generate
from lib_animatediff.runner.tiny import tiny_motion_state_dict, tiny_pipeline
from motion_module import MotionModuleError, load_motion_module
from motion_module import model as mm_model
from tests.fake_webui.harness import MODEL_NAME, Extension, load_extension, unet_fingerprint

FRAMES = 6
CONTEXT = 4


@pytest.fixture
def ext(monkeypatch: pytest.MonkeyPatch, tmp_path) -> Extension:
    return load_extension(monkeypatch, tmp_path)


def api_request(**changes) -> dict:
    request = {
        "model": MODEL_NAME, "enable": True, "video_length": FRAMES, "batch_size": CONTEXT, "overlap": 1,
        "closed_loop": "N", "format": ["GIF"], "fuse_method": "flat",
    }  # fmt: skip
    request.update(changes)
    return request


def unet_calls(ext: Extension) -> list[int]:
    calls: list[int] = []
    ext.sd_model.model.diffusion_model.register_forward_pre_hook(lambda module, args: calls.append(1))
    return calls


def outputs_of(ext: Extension) -> list:
    folder = ext.host.root / "outputs"
    return sorted(path for path in folder.rglob("*") if path.is_file()) if folder.exists() else []


def refused(ext: Extension, request: dict, **processing) -> RequestError:
    """Run ``request`` through the API path; assert it is a 422 before any UNet call or output."""
    before = unet_fingerprint(ext.sd_model.model.diffusion_model)
    calls = unet_calls(ext)
    with pytest.raises(RequestError) as caught:
        ext.host.processing.process_images(ext.processing(request, is_api=True, **processing))
    assert vars(caught.value)["status_code"] == 422
    assert calls == [] and outputs_of(ext) == []
    assert unet_fingerprint(ext.sd_model.model.diffusion_model) == before
    return caught.value


# ---- budget: bounded integers, the memory estimate against what is free ------------------------------


@pytest.mark.parametrize(
    "field", ["video_length", "batch_size", "stride", "overlap", "interp_x", "loop_number"]
)
def test_budget_huge_integers_are_refused_by_their_bound_not_an_overflow(field: str) -> None:
    with pytest.raises(ParamsError, match=r"must be >= -?\d+ and <= \d+") as caught:
        AnimateDiffParams(enable=True, **{field: 10**30})
    assert caught.value.field == field


def test_budget_fps_1e308_is_refused_naming_fps_in_a_short_message() -> None:
    with pytest.raises(ParamsError, match=r"fps=1e\+308: must be > 0 and <= 1000") as caught:
        AnimateDiffParams(enable=True, fps=1e308)
    assert caught.value.field == "fps"


def test_budget_estimate_counts_latents_conds_decoded_frames_and_writers() -> None:
    params = AnimateDiffParams(enable=True, video_length=40, batch_size=16, format=("GIF", "MP4"))
    needed = budget.estimate(params, 512, 384)
    latents = torch.empty(40, 4, 384 // 8, 512 // 8)  # what the sampler holds per copy of the clip
    assert needed.latents == budget.LATENT_COPIES * latents.nbytes
    assert needed.conds == 2 * torch.empty(40, 77, 768).nbytes
    assert needed.decoded_frames == 40 * 512 * 384 * (4 * 3 + 3)
    assert needed.writers == 2 * 16 * 512 * 384 * 3
    assert needed.total == needed.latents + needed.conds + needed.decoded_frames + needed.writers
    streamed = budget.estimate(params, 512, 384, streamed=True)
    assert streamed.decoded_frames == budget.STREAMED_DECODE_FRAMES * 512 * 384 * 15


def test_budget_interpolation_and_ping_pong_multiply_the_written_frames() -> None:
    params = AnimateDiffParams(
        enable=True, video_length=8, batch_size=8, closed_loop="A", interp="FILM", interp_x=4
    )
    needed = budget.estimate(params, 64, 64)
    assert needed.output_frames == (8 + 6) * 4 and needed.field == "interp_x"
    with pytest.raises(ParamsError, match="56 written") as caught:
        budget.check(needed, needed.total - 1)
    assert caught.value.field == "interp_x"
    assert budget.check(needed, needed.total) is needed


def test_budget_default_is_the_memory_free_now() -> None:
    with open("/proc/meminfo", encoding="ascii") as meminfo:
        available = next(int(line.split()[1]) * 1024 for line in meminfo if line.startswith("MemAvailable:"))
    assert budget.budget_bytes(0) == pytest.approx(available, rel=0.2)
    assert budget.budget_bytes(3) == 3 * 2**20
    with pytest.raises(ValueError, match="MiB"):
        budget.budget_bytes(-1)


def test_budget_100000_frames_at_512_are_a_422_naming_video_length_before_sampling(ext: Extension) -> None:
    ext.host.shared.opts.data["animatediff_memory_budget_mb"] = 256
    error = refused(ext, api_request(video_length=100_000), width=512, height=512)
    assert error.field == "video_length"
    assert "100000 frames" in error.detail and "more than the 256.0 MiB available" in error.detail
    ext.host.processing.process_images(ext.processing(api_request(), is_api=True))  # small ones still run
    assert [path.suffix for path in outputs_of(ext)] == [".gif"]


def test_budget_runner_refuses_before_loading_models(capsys: pytest.CaptureFixture, tmp_path) -> None:
    argv = ["demo", "--frames", "100000", "--memory-budget-mb", "64", "--outdir", str(tmp_path)]
    assert cli.main(argv) == cli.EXIT_BAD_INPUT
    assert "video_length=100000" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


# ---- late failures: the whole output stage is checked before sampling --------------------------------


def test_late_failures_fps_0_001_with_gif_is_a_422_before_sampling(ext: Extension) -> None:
    error = refused(ext, api_request(fps=0.001))
    assert error.field == "fps" and "655.35 s" in error.detail
    webp = api_request(fps=0.001, format=["WEBP"])  # 1,000,000 ms per frame fits WebP's 24 bits
    output.preflight(AnimateDiffParams.from_api(webp), ext.host.root / "outputs")


def test_late_failures_interp_x_beyond_the_written_frame_limit_is_a_422_before_sampling(
    ext: Extension,
) -> None:
    assert refused(ext, api_request(interp="Optical flow", interp_x=10**6)).field == "interp_x"
    ext.host.shared.opts.data["animatediff_memory_budget_mb"] = 10**6  # the frame limit refuses, not memory
    error = refused(ext, api_request(video_length=200, interp="Optical flow", interp_x=64))
    assert error.field == "interp_x" and "would write 12800 frames" in error.detail


def test_late_failures_an_outdir_under_a_file_is_a_422_before_sampling(ext: Extension) -> None:
    blocker = ext.host.root / "blocker"
    blocker.write_text("a file where the output folder should be")
    p = ext.processing(api_request(), is_api=True)
    p.outpath_samples = str(blocker / "outputs")
    calls = unet_calls(ext)
    with pytest.raises(RequestError) as caught:
        ext.host.processing.process_images(p)
    assert caught.value.field == "outpath_samples" and "is not a folder" in caught.value.detail
    assert calls == []


def test_late_failures_runner_outdir_under_a_file_stops_before_sampling(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path
) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("x")

    def no_sampling(*args, **kwargs):
        raise AssertionError("sampled before the output folder was checked")

    monkeypatch.setattr(generate, "sample_latents", no_sampling)
    assert cli.main(["demo", "--frames", "4", "--context", "4", "--outdir", str(blocker / "out")]) == 2
    assert "--outdir" in capsys.readouterr().err and blocker.read_text() == "x"


def test_late_failures_mp4_infotext_over_128_kib_goes_through_a_metadata_file(tmp_path) -> None:
    infotext = "a long prompt; with = and # and \\ and\nnewlines ✓ " * 4000
    assert len(infotext.encode()) > 200_000  # one ffmpeg argument may hold 128 KiB on Linux
    frames = [np.full((16, 16, 3), value, np.uint8) for value in (0, 128, 255)]
    (mp4,) = output.save(frames, tmp_path / "clip", ["MP4"], fps=8, infotext=infotext)
    assert infotext.replace("\n", "").encode() in mp4.read_bytes().replace(b"\n", b"")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["clip.mp4"]


# ---- NaN/Inf latents: stop at the window, name the step and the frames -------------------------------


def poison_call(unet: torch.nn.Module, n: int) -> None:
    """Make the ``n``-th UNet call return NaN in its first element."""
    calls: list[int] = []

    def hook(module, args, result):
        calls.append(1)
        if len(calls) == n:
            sample = result if isinstance(result, torch.Tensor) else result.sample
            sample.view(-1)[0] = float("nan")
        return result

    unet.register_forward_hook(hook)


def test_nan_after_a_window_stops_a1111_sampling_naming_step_and_window(ext: Extension) -> None:
    before = unet_fingerprint(ext.sd_model.model.diffusion_model)
    poison_call(ext.sd_model.model.diffusion_model, 2)  # step 0, second window
    second = context.windows(0, FRAMES, CONTEXT, 1, 1, "N")[1]
    with pytest.raises(
        windows.NonFiniteError, match=f"step 0 in the window of frames {min(second)}-{max(second)}"
    ):
        ext.host.processing.process_images(ext.processing(api_request(), is_api=True))
    assert outputs_of(ext) == []
    assert unet_fingerprint(ext.sd_model.model.diffusion_model) == before


def test_nan_after_a_window_stops_the_runner_naming_step_and_window(tmp_path) -> None:
    pipeline = tiny_pipeline(seed=2)
    mm = load_motion_module(tiny_motion_state_dict(tuple(pipeline.unet.config.block_out_channels), seed=3))
    params = AnimateDiffParams(enable=True, video_length=6, batch_size=4, overlap=1, closed_loop="N")
    sampling = generate.SamplingSettings(
        prompt="a kite", width=32, height=32, steps=2, sampler="DDIM", seed=4
    )
    calls_per_step = len(context.windows(0, 6, 4, 1, 1, "N"))
    poison_call(pipeline.unet, calls_per_step + 1)  # step 1, first window
    first = context.windows(1, 6, 4, 1, 1, "N")[0]
    with pytest.raises(
        windows.NonFiniteError, match=f"step 1 in the window of frames {min(first)}-{max(first)}"
    ):
        generate.generate(pipeline, mm, params, sampling, tmp_path, progress=False)
    assert list(tmp_path.rglob("*.*")) == []


# ---- paths from the API: every path field confined, links the admin made are fine --------------------


OUTSIDE_PATHS = [
    "/etc/passwd",
    "../../../../etc/passwd",
    "~",
    "concat:a.mp4|b.mp4",
    "http://169.254.169.254/",
]


@pytest.mark.parametrize("field", ["video_source", "video_path", "mask_path"])
@pytest.mark.parametrize("value", OUTSIDE_PATHS)
def test_paths_api_path_fields_outside_the_data_and_models_folders_are_a_422(
    ext: Extension, field: str, value: str
) -> None:
    error = refused(ext, api_request(**{field: value}))
    assert error.field == field and "outside the allowed folders" in error.detail


@pytest.mark.parametrize("value", ["../../x", "a/b", "x" * 300, "\n", "a\x00b", ".."])
def test_paths_request_id_that_could_leave_the_output_folder_is_a_422(ext: Extension, value: str) -> None:
    assert refused(ext, api_request(request_id=value)).field == "request_id"


def test_paths_model_names_escaping_the_folder_fifos_and_devices_are_a_422(ext: Extension) -> None:
    os.mkfifo(ext.model_dir / "fifo.safetensors")
    os.symlink("/dev/zero", ext.model_dir / "zero.safetensors")
    names = [
        "../../../../etc/passwd",
        "/etc/passwd",
        "sub/../../x.ckpt",
        "fifo.safetensors",
        "zero.safetensors",
    ]
    for name in [*names, "a" * 255 + ".safetensors"]:
        error = refused(ext, api_request(model=name))
        assert error.field == "model", name


def test_paths_a_model_the_admin_linked_into_the_folder_from_elsewhere_is_a_normal_model(
    ext: Extension,
) -> None:
    shared = ext.host.root / "other-ui" / "models"
    shared.mkdir(parents=True)
    os.replace(ext.model_dir / MODEL_NAME, shared / MODEL_NAME)
    os.symlink(shared / MODEL_NAME, ext.model_dir / "linked.safetensors")
    os.symlink(shared, ext.model_dir / "linked-folder")
    for name in ("linked.safetensors", f"linked-folder/{MODEL_NAME}"):
        ext.host.processing.process_images(ext.processing(api_request(model=name), is_api=True))
    assert len([path for path in outputs_of(ext) if path.suffix == ".gif"]) == 2


def test_paths_models_route_hashes_regular_files_only_and_caches_by_size_and_mtime(ext: Extension) -> None:
    os.mkfifo(ext.model_dir / "fifo.safetensors")
    os.symlink("/dev/zero", ext.model_dir / "zero.ckpt")
    found: list = []
    worker = threading.Thread(target=lambda: found.append(routes.describe_models(ext.model_dir)), daemon=True)
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive(), "listing the models blocked"
    (described,) = found
    path = ext.model_dir / MODEL_NAME
    assert [entry["name"] for entry in described] == [MODEL_NAME]
    assert described[0]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    calls = len(ext.host.hashes.calls)
    routes.describe_models(ext.model_dir)
    assert len(ext.host.hashes.calls) == calls  # unchanged file: cached
    status = path.stat()
    with open(path, "ab") as file:
        file.write(b"\0")
    os.utime(path, ns=(status.st_atime_ns, status.st_mtime_ns + 1_000_000_000))
    assert routes.describe_models(ext.model_dir)[0]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


# ---- loader: every malformed file is a MotionModuleError naming the file and the reason --------------


def safetensors_bytes(header: object) -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + b"\0" * 16


MALFORMED = {
    "header-is-a-list": (safetensors_bytes([1, 2]), "neither a safetensors file"),
    "entry-without-offsets": (
        safetensors_bytes({"w": {"dtype": "F32", "shape": [2]}}),
        "no valid data_offsets",
    ),
    "entry-not-an-object": (safetensors_bytes({"w": [1]}), "not an object"),
    "bad-shape": (safetensors_bytes({"w": {"dtype": "F32", "shape": "x", "data_offsets": [0, 4]}}), "shape"),
    "offsets-reversed": (
        safetensors_bytes({"w": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}}),
        "end",
    ),
    "bad-json": (struct.pack("<Q", 5) + b"{abc}", "corrupt safetensors header"),
    "garbage": (bytes(range(256)) * 4, "neither a safetensors file nor a PyTorch checkpoint"),
    "html": (b"<!DOCTYPE html><html>Not found</html>", "HTML"),
    "empty": (b"", "empty"),
}


@pytest.mark.parametrize("suffix", [".safetensors", ".ckpt"])
@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_loader_malformed_files_name_the_file_and_the_reason(tmp_path, case: str, suffix: str) -> None:
    content, reason = MALFORMED[case]
    path = tmp_path / f"{case}{suffix}"
    path.write_bytes(content)
    with pytest.raises(MotionModuleError, match=reason) as caught:
        load_motion_module(path)
    assert str(path) in str(caught.value)


def test_loader_truncated_files_name_the_file(mm_file, tmp_path) -> None:
    for fmt in ("safetensors", "ckpt"):
        whole = mm_file("v3", fmt).read_bytes()
        path = tmp_path / f"cut.{fmt}"
        path.write_bytes(whole[: len(whole) // 2])
        with pytest.raises(MotionModuleError, match=r"truncated|corrupt") as caught:
            load_motion_module(path)
        assert str(path) in str(caught.value)


def test_loader_detects_the_format_from_content_not_the_suffix(mm_file, tmp_path) -> None:
    original = mm_file("v3", "ckpt")
    renamed = tmp_path / "renamed.safetensors"
    renamed.write_bytes(original.read_bytes())
    expected = load_motion_module(original).state_dict()
    for key, value in load_motion_module(renamed).state_dict().items():
        assert torch.equal(value, expected[key]), key


def test_loader_a_255_character_name_is_an_error_naming_it(tmp_path) -> None:
    path = tmp_path / ("a" * 255 + ".safetensors")
    with pytest.raises(MotionModuleError, match="cannot be read") as caught:
        load_motion_module(path)
    assert str(path) in str(caught.value)


def test_loader_a_malformed_file_in_the_model_folder_is_a_422_naming_model(ext: Extension) -> None:
    (ext.model_dir / "broken.safetensors").write_bytes(MALFORMED["entry-without-offsets"][0])
    error = refused(ext, api_request(model="broken.safetensors"))
    assert error.field == "model" and "broken.safetensors" in error.detail


def test_loader_ckpt_files_are_never_memory_mapped(mm_file, monkeypatch: pytest.MonkeyPatch) -> None:
    path = mm_file("v3", "ckpt")
    seen: list = []
    real_load = torch.load

    def recording_load(*args, **kwargs):
        seen.append((kwargs.get("mmap"), kwargs.get("weights_only")))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", recording_load)
    load_motion_module(path)
    assert seen == [(False, True)]


# ---- outputs: whole or absent, never overwritten ----------------------------------------------------


ALL_FILE_FORMATS = ["GIF", "MP4", "WEBP", "WEBM", "PNG", "TXT"]


def clip(count: int = 3) -> list[np.ndarray]:
    return [np.full((16, 16, 3), 40 * index, np.uint8) for index in range(count)]


def test_outputs_two_runs_with_the_same_name_never_overwrite_each_other(tmp_path) -> None:
    stem = output.output_stem(tmp_path, 5, "req")
    first = output.save(clip(2), stem, ["GIF", "TXT"], fps=8, infotext="first")
    second = output.save(clip(3), stem, ["GIF", "TXT"], fps=8, infotext="second")  # same stem: a second run
    assert [path.name for path in first] == ["00000-5-req.gif", "00000-5-req.txt"]
    assert [path.name for path in second] == ["00001-5-req.gif", "00001-5-req.txt"]
    assert first[1].read_text() == "first\n" and second[1].read_text() == "second\n"


def test_outputs_a_name_taken_while_writing_moves_to_the_next_number(tmp_path) -> None:
    stem = output.output_stem(tmp_path, 5)
    rival = stem.with_name(stem.name + ".gif")

    def frames_then_rival():
        yield from clip()
        rival.write_bytes(b"the other run's video")  # another run finished first

    written = output.save(frames_then_rival(), stem, ["GIF", "PNG"], fps=8)
    assert [path.name for path in written] == ["00001-5.gif", "00001-5"]
    assert rival.read_bytes() == b"the other run's video"
    assert sorted(path.name for path in stem.parent.iterdir()) == ["00000-5.gif", "00001-5", "00001-5.gif"]


@pytest.mark.parametrize("fault", [KeyboardInterrupt, RuntimeError])
def test_outputs_an_interrupt_or_error_mid_stream_leaves_no_file(
    tmp_path, fault: type[BaseException]
) -> None:
    def interrupted():
        yield from clip(2)
        raise fault("stopped")

    with pytest.raises(fault):
        output.save(interrupted(), tmp_path / "00000-1", ALL_FILE_FORMATS, fps=8, infotext="x")
    assert list(tmp_path.iterdir()) == []  # no final, no hidden temporary, no metadata file


def test_outputs_a_failing_rename_leaves_no_file(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_replace = os.replace
    moves: list = []

    def failing_replace(source, target):
        moves.append(target)
        if len(moves) == 2:
            raise OSError("disk gone")
        return real_replace(source, target)

    monkeypatch.setattr(os, "link", lambda *args: (_ for _ in ()).throw(OSError("no hard links")))
    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk gone"):
        output.save(clip(), tmp_path / "00000-1", ["GIF", "PNG", "TXT"], fps=8, infotext="x")
    assert list(tmp_path.iterdir()) == []


# ---- temporal attention: the SDPA batch is chunked below CUDA's grid limit ---------------------------


def test_sdpa_batch_chunked_below_the_grid_limit_equals_the_unchunked_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    generator = torch.Generator().manual_seed(3)
    query, key, value = (torch.randn(37, 2, 6, 8, generator=generator) for _ in range(3))
    whole = mm_model.chunked_attention(query, key, value)
    sizes: list[int] = []
    sdpa = torch.nn.functional.scaled_dot_product_attention
    monkeypatch.setattr(
        mm_model.F, "scaled_dot_product_attention", lambda q, *a: sizes.append(q.shape[0]) or sdpa(q, *a)
    )
    monkeypatch.setattr(mm_model, "SDPA_MAX_BATCH", 10)
    torch.testing.assert_close(mm_model.chunked_attention(query, key, value), whole, rtol=0, atol=1e-6)
    assert sizes == [10, 10, 10, 7]


# ---- budget: video sources are decoded frame by frame, up to the frames needed ----------------------


def test_budget_video_sources_are_counted_frame_by_frame_without_holding_the_clip(tmp_path) -> None:
    frames = [np.full((256, 256, 3), (7 * index) % 256, np.uint8) for index in range(60)]
    (video,) = output.save(frames, tmp_path / "source", ["MP4"], fps=8)
    assert video_source.count_video_frames(video, max_frames=7) == 7
    tracemalloc.start()
    try:
        assert video_source.count_video_frames(video, max_frames=1000) == 60
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    clip_bytes = 60 * 256 * 256 * 3
    assert peak < clip_bytes / 5, f"counting held {peak} bytes of a {clip_bytes}-byte clip"
    lazy = video_source.iter_video(video, max_frames=3)
    np.testing.assert_allclose(next(lazy).astype(float).mean(), 0, atol=3)
    assert sum(1 for _ in lazy) == 2

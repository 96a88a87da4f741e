"""``python -m lib_animatediff``: the demo end to end, generate from saved files, and bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from lib_animatediff.params import AnimateDiffParams
from lib_animatediff.runner.cli import main
from lib_animatediff.runner.generate import SamplingSettings, generate
from lib_animatediff.runner.tiny import tiny_motion_state_dict, tiny_pipeline
from motion_module import load_motion_module

ROOT = Path(__file__).resolve().parents[1]


def written(outdir: Path, suffix: str) -> list[Path]:
    return sorted(p for p in (outdir / "AnimateDiff").glob(f"*/*{suffix}") if not p.name.startswith("."))


def test_demo_renders_gif_mp4_and_png_frames_that_decode(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(["demo", "--outdir", str(tmp_path), "--steps", "2"]) == 0
    printed = capsys.readouterr().out
    assert "NOISE" in printed and "random" in printed
    (gif,) = written(tmp_path, ".gif")
    (mp4,) = written(tmp_path, ".mp4")
    png_dir = gif.with_suffix("")
    assert str(gif) in printed and str(mp4) in printed
    with Image.open(gif) as image:
        assert image.n_frames == 24 and image.size == (64, 64)
    video = iio.imread(mp4, plugin="pyav") if _has_pyav() else np.stack(list(iio.imiter(mp4)))
    assert video.shape[0] == 24
    frames = [np.asarray(Image.open(p)) for p in sorted(png_dir.glob("*.png"))]
    assert len(frames) == 24 and frames[0].shape == (64, 64, 3)
    assert np.abs(frames[0].astype(int) - frames[-1]).mean() > 1, "frames should differ (windows, travel)"


def _has_pyav() -> bool:
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A tiny diffusers folder (save_pretrained), a motion-module file and a motion-LoRA file."""
    root = tmp_path_factory.mktemp("models")
    pipeline = tiny_pipeline(seed=5)
    folder = root / "tiny-sd15"
    pipeline.unet.save_pretrained(folder / "unet")
    pipeline.vae.save_pretrained(folder / "vae")
    pipeline.text_encoders[0].save_pretrained(folder / "text_encoder")
    pipeline.tokenizers[0].save_pretrained(folder / "tokenizer")
    state = tiny_motion_state_dict(tuple(pipeline.unet.config.block_out_channels), seed=6)
    mm_path = root / "tiny_mm.safetensors"
    save_file(state, str(mm_path))
    generator = torch.Generator().manual_seed(7)
    lora = {}
    for key, value in state.items():
        if ".attention_blocks." in key and key.endswith("to_q.weight"):
            prefix = key.removesuffix("to_q.weight") + "processor.to_q_lora."
            lora[prefix + "down.weight"] = torch.randn(2, value.shape[1], generator=generator)
            lora[prefix + "up.weight"] = torch.randn(value.shape[0], 2, generator=generator)
    lora_path = root / "tiny_lora.safetensors"
    save_file(lora, str(lora_path))
    return folder, mm_path, lora_path


GENERATE = ["--frames", "10", "--context", "8", "--overlap", "2", "--width", "64", "--height", "64"]
GENERATE += ["--steps", "2", "--seed", "11", "--formats", "PNG", "--sampler", "DDIM"]


def png_frames(outdir: Path) -> np.ndarray:
    (folder,) = [p for p in (outdir / "AnimateDiff").glob("*/*") if p.is_dir()]
    return np.stack([np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))])


def test_generate_from_a_saved_diffusers_folder_matches_the_in_memory_models(
    saved_models: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    folder, mm_path, _ = saved_models
    prompt = "a lighthouse\n0: day\n6: night"
    args = ["generate", "--model", str(folder), "--motion-module", str(mm_path), "--prompt", prompt]
    assert main([*args, *GENERATE, "--outdir", str(tmp_path / "cli")]) == 0
    from_files = png_frames(tmp_path / "cli")
    assert from_files.shape == (10, 64, 64, 3)

    pipeline = tiny_pipeline(seed=5)
    mm = load_motion_module(mm_path)
    params = AnimateDiffParams(video_length=10, batch_size=8, overlap=2, format=("PNG",))
    sampling = SamplingSettings(prompt=prompt, width=64, height=64, steps=2, seed=11, sampler="DDIM")
    generate(pipeline, mm, params, sampling, tmp_path / "direct", progress=False)
    np.testing.assert_array_equal(from_files, png_frames(tmp_path / "direct"))


def test_motion_lora_strength_changes_the_video(
    saved_models: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    folder, mm_path, lora_path = saved_models
    args = [
        "generate",
        "--model",
        str(folder),
        "--motion-module",
        str(mm_path),
        "--prompt",
        "a cat",
        *GENERATE,
    ]
    assert main([*args, "--outdir", str(tmp_path / "plain")]) == 0
    assert main([*args, "--outdir", str(tmp_path / "lora"), "--motion-lora", f"{lora_path}:0.8"]) == 0
    assert np.abs(png_frames(tmp_path / "plain").astype(int) - png_frames(tmp_path / "lora")).max() > 0


@pytest.mark.parametrize(
    ("option", "missing"),
    [
        ("--model", "no-model-here"),
        ("--motion-module", "no-mm.safetensors"),
        ("--motion-lora", "no-lora.safetensors:0.5"),
    ],
)
def test_missing_files_exit_2_naming_the_path(
    saved_models: tuple[Path, Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    option: str,
    missing: str,
) -> None:
    folder, mm_path, _ = saved_models
    values = {"--model": str(folder), "--motion-module": str(mm_path)}
    target = str(tmp_path / missing)
    values[option] = target
    args = ["generate", "--prompt", "x", "--outdir", str(tmp_path)]
    for name, value in values.items():
        args += [name, value]
    assert main(args) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and target.rsplit(":", 1)[0] in error
    assert not (tmp_path / "AnimateDiff").exists()


@pytest.mark.parametrize(
    ("extra", "field"),
    [(["--overlap", "16"], "overlap"), (["--fps", "0"], "fps"), (["--formats", "AVI"], "format")],
)
def test_invalid_options_exit_2_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture, extra: list[str], field: str
) -> None:
    assert main(["demo", "--outdir", str(tmp_path), *extra]) == 2
    assert field in capsys.readouterr().err
    assert not (tmp_path / "AnimateDiff").exists()


def test_generate_requires_model_and_motion_module(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["generate", "--prompt", "x"])
    assert exit_info.value.code == 2
    assert "--model" in capsys.readouterr().err


def test_module_help_lists_the_commands_and_options() -> None:
    top = subprocess.run(
        [sys.executable, "-m", "lib_animatediff", "--help"], cwd=ROOT, capture_output=True, text=True
    )
    assert top.returncode == 0 and "generate" in top.stdout and "demo" in top.stdout
    sub = subprocess.run(
        [sys.executable, "-m", "lib_animatediff", "generate", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert sub.returncode == 0
    for option in ("--motion-lora", "--context", "--closed-loop", "--fuse-method", "--freeinit", "--sampler"):
        assert option in sub.stdout

"""Settings values as the extension reads them (no gradio needed): defaults, fallbacks, writer options."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from lib_animatediff.a1111 import settings
from lib_animatediff.writers import OutputOptions

# The original's keys and defaults (reference/original-extension.md §2.3)
ORIGINAL_DEFAULTS = {
    "animatediff_model_path": None,
    "animatediff_default_save_formats": ["GIF", "PNG"],
    "animatediff_save_to_custom": True,
    "animatediff_default_frame_extract_method": "ffmpeg",
    "animatediff_optimize_gif_palette": False,
    "animatediff_optimize_gif_gifsicle": False,
    "animatediff_mp4_crf": 23,
    "animatediff_mp4_preset": "",
    "animatediff_mp4_tune": "",
    "animatediff_webp_quality": 80,
    "animatediff_webp_lossless": False,
}


def test_the_originals_keys_keep_their_defaults():
    assert {key: settings.DEFAULTS[key] for key in ORIGINAL_DEFAULTS} == ORIGINAL_DEFAULTS
    assert all(key.startswith("animatediff_") for key in settings.DEFAULTS)


def test_get_reads_opts_and_falls_back_to_defaults():
    opts = SimpleNamespace(
        data={"animatediff_mp4_crf": 17, "animatediff_model_path": "", "animatediff_mp4_tune": None}
    )
    assert settings.get("animatediff_mp4_crf", opts) == 17
    assert settings.get("animatediff_model_path", opts) is None
    assert settings.get("animatediff_mp4_tune", opts) == ""
    assert settings.get("animatediff_webp_quality", opts) == 80
    with pytest.raises(KeyError):
        settings.get("animatediff_nope", opts)


def test_default_settings_give_the_writers_defaults():
    assert OutputOptions(**settings.output_options(SimpleNamespace(data={}))) == OutputOptions()


def test_output_options_follow_the_settings_with_floats_from_config_json():
    opts = SimpleNamespace(
        data={
            "animatediff_mp4_crf": 18.0,
            "animatediff_webp_quality": 95.0,
            "animatediff_webm_crf": 40.0,
            "animatediff_mp4_preset": "slow",
            "animatediff_mp4_tune": "animation",
            "animatediff_optimize_gif_palette": True,
            "animatediff_gif_dither": False,
            "animatediff_webp_lossless": True,
        }
    )
    options = OutputOptions(**settings.output_options(opts))
    assert options == OutputOptions(
        gif_palette=True,
        gif_dither=False,
        mp4_crf=18,
        mp4_preset="slow",
        mp4_tune="animation",
        webm_crf=40,
        webp_quality=95,
        webp_lossless=True,
    )
    assert isinstance(options.mp4_crf, int) and isinstance(options.webp_quality, int)

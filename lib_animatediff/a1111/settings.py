"""The "AnimateDiff" section of A1111's Settings tab: option keys, defaults, labels and a reader.

Keys and defaults of the original extension are kept (users' ``config.json`` files carry them);
ours follow the same ``animatediff_`` prefix. ``modules.shared`` and gradio are imported only inside
the functions that build or register the options, so :func:`get` and :data:`DEFAULTS` work anywhere.

Accordion defaults are A1111's business (Settings > Defaults writes ``ui-config.json``, which overrides
a component's initial value), so there is no per-control default setting here, except for the save
formats: A1111 does not track CheckboxGroup values in ``ui-config.json``.

The original's ``animatediff_frame_extract_path`` / ``animatediff_frame_extract_remove`` are left out on
purpose: video sources are decoded in memory (``lib_animatediff.video_source``), nothing is extracted to
disk, so there is no folder to name or remove (and no ``rmtree`` of a caller-named path).
"""

from __future__ import annotations

from typing import Any

from lib_animatediff.options import MP4_PRESET_CHOICES, MP4_TUNE_CHOICES, UI_SAVE_FORMATS

SECTION = ("animatediff", "AnimateDiff")

DEFAULTS: dict[str, Any] = {
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
    "animatediff_gif_dither": True,
    "animatediff_webm_crf": 32,
    "animatediff_max_frames": 0,
    "animatediff_max_frames_per_call": 0,
    "animatediff_mm_on_cpu": False,
    "animatediff_memory_budget_mb": 0,
}

_H264_DOCS = "https://trac.ffmpeg.org/wiki/Encode/H.264"


def build_options(option_info: type) -> dict[str, Any]:
    """Return ``{key: option_info(...)}`` for every key of :data:`DEFAULTS`, in display order.

    ``option_info`` is the host's ``OptionInfo`` class (``modules.shared.OptionInfo``).
    """
    import gradio as gr

    def option(key: str, label: str, component: Any = None, args: dict | None = None) -> Any:
        return option_info(DEFAULTS[key], label, component, args, section=SECTION)

    def number_slider(low: int, high: int, step: int = 1) -> dict:
        return {"minimum": low, "maximum": high, "step": step}

    return {
        "animatediff_model_path": option(
            "animatediff_model_path",
            "Path to save AnimateDiff motion modules",
            gr.Textbox,
            {"placeholder": "Leave empty to use default path: extensions/<this extension>/model"},
        ).info("sub-folders are listed too; the --animatediff-model-path flag takes precedence"),
        "animatediff_default_save_formats": option(
            "animatediff_default_save_formats",
            "Default Save Formats",
            gr.CheckboxGroup,
            {"choices": list(UI_SAVE_FORMATS)},
        )
        .info("formats ticked in the AnimateDiff accordion when the page loads")
        .needs_reload_ui(),
        "animatediff_save_to_custom": option(
            "animatediff_save_to_custom",
            "Save PNG frames to outputs/{txt|img}2img-images/AnimateDiff/{date}/{video name}/ "
            "instead of A1111's own image folder",
            gr.Checkbox,
        ).info("when off and PNG is chosen, A1111 saves each frame like an ordinary image"),
        "animatediff_default_frame_extract_method": option(
            "animatediff_default_frame_extract_method",
            "Default frame extraction method",
            gr.Radio,
            {"choices": ["ffmpeg", "opencv"]},
        ).info("decoder for an uploaded video source: ffmpeg (imageio-ffmpeg) or opencv"),
        "animatediff_optimize_gif_palette": option(
            "animatediff_optimize_gif_palette",
            "Calculate the optimal GIF palette, improves quality significantly, removes banding",
            gr.Checkbox,
        ).info("slower GIF writing"),
        "animatediff_optimize_gif_gifsicle": option(
            "animatediff_optimize_gif_gifsicle",
            "Optimize GIFs with gifsicle, reduces file size",
            gr.Checkbox,
        ).info("needs the gifsicle program on PATH; skipped with a warning otherwise"),
        "animatediff_mp4_crf": option(
            "animatediff_mp4_crf", "MP4 Quality (CRF)", gr.Slider, number_slider(0, 51)
        )
        .link("docs", f"{_H264_DOCS}#crf")
        .info("17 for best quality, up to 28 for smaller size"),
        "animatediff_mp4_preset": option(
            "animatediff_mp4_preset",
            "MP4 Encoding Preset",
            gr.Dropdown,
            {"choices": list(MP4_PRESET_CHOICES)},
        )
        .link("docs", f"{_H264_DOCS}#Preset")
        .info("encoding speed: slower presets give smaller files at the same CRF; empty = veryfast"),
        "animatediff_mp4_tune": option(
            "animatediff_mp4_tune",
            "MP4 Tune encoding for content type",
            gr.Dropdown,
            {"choices": list(MP4_TUNE_CHOICES)},
        )
        .link("docs", f"{_H264_DOCS}#Tune")
        .info("optimize for specific content types; empty = none"),
        "animatediff_webp_quality": option(
            "animatediff_webp_quality",
            "WebP Quality (if lossless=True, increases compression and CPU usage)",
            gr.Slider,
            number_slider(1, 100),
        ).info("higher is better quality and a larger file"),
        "animatediff_webp_lossless": option(
            "animatediff_webp_lossless",
            "Save WebP in lossless format (highest quality, largest file size)",
            gr.Checkbox,
        ).info("the quality setting then trades CPU time for file size"),
        "animatediff_gif_dither": option(
            "animatediff_gif_dither",
            "Dither GIFs that use the optimal palette",
            gr.Checkbox,
        ).info(
            "Floyd-Steinberg dithering hides banding but makes files larger; only with the optimal palette"
        ),
        "animatediff_webm_crf": option(
            "animatediff_webm_crf", "WEBM Quality (CRF, VP9)", gr.Slider, number_slider(0, 63)
        ).info("lower is better quality and a larger file; 31 to 35 is a good balance"),
        "animatediff_max_frames": option(
            "animatediff_max_frames",
            "Maximum number of frames per video",
            gr.Slider,
            number_slider(0, 1024, 8),
        ).info(
            "0 = no limit; a longer request is refused before anything is generated (protects shared servers)"
        ),
        "animatediff_max_frames_per_call": option(
            "animatediff_max_frames_per_call",
            "Maximum frames per UNet call",
            gr.Slider,
            number_slider(0, 256, 8),
        ).info(
            "0 = no limit; lower values split cond/uncond and several windows into more, smaller calls "
            "(less VRAM, slower)"
        ),
        "animatediff_mm_on_cpu": option(
            "animatediff_mm_on_cpu",
            "Keep the motion module on CPU between generations",
            gr.Checkbox,
        ).info("always done under --lowvram / --medvram; frees VRAM at the cost of a copy per generation"),
        "animatediff_memory_budget_mb": option(
            "animatediff_memory_budget_mb",
            "Memory budget per video (MiB)",
            gr.Number,
            {"precision": 0, "minimum": 0, "maximum": 1 << 20},  # up to 1 TiB
        ).info(
            "0 = the memory free when a request starts; a request whose frames (latents, conditioning, "
            "decoded frames, writers) would need more is refused before anything is generated"
        ),
    }


def on_ui_settings() -> None:
    """``script_callbacks.on_ui_settings`` callback: add the section to the running host's options."""
    from modules import shared

    for key, info in build_options(shared.OptionInfo).items():
        shared.opts.add_option(key, info)


# OutputOptions field (lib_animatediff.writers) -> (setting key, type the writer expects)
_OUTPUT_OPTIONS = {
    "gif_palette": ("animatediff_optimize_gif_palette", bool),
    "gif_dither": ("animatediff_gif_dither", bool),
    "gif_gifsicle": ("animatediff_optimize_gif_gifsicle", bool),
    "mp4_crf": ("animatediff_mp4_crf", int),
    "mp4_preset": ("animatediff_mp4_preset", str),
    "mp4_tune": ("animatediff_mp4_tune", str),
    "webm_crf": ("animatediff_webm_crf", int),
    "webp_quality": ("animatediff_webp_quality", int),
    "webp_lossless": ("animatediff_webp_lossless", bool),
}


def output_options(opts: Any = None) -> dict[str, Any]:
    """Keyword arguments for ``lib_animatediff.writers.OutputOptions`` from the current settings.

    Slider values come back from A1111's ``config.json`` as floats; they are made ``int`` here.
    """
    return {field: kind(get(key, opts)) for field, (key, kind) in _OUTPUT_OPTIONS.items()}


def memory_budget(opts: Any = None) -> int | None:
    """The memory budget in bytes (``lib_animatediff.budget.budget_bytes`` of the setting)."""
    from lib_animatediff.budget import budget_bytes

    return budget_bytes(float(get("animatediff_memory_budget_mb", opts)))


def get(key: str, opts: Any = None) -> Any:
    """The current value of setting ``key``; its default when unset, ``None`` or an empty string.

    ``opts`` defaults to ``modules.shared.opts``. Raises ``KeyError`` for a key not in :data:`DEFAULTS`.
    """
    default = DEFAULTS[key]
    if opts is None:
        from modules import shared

        opts = shared.opts
    value = opts.data.get(key)
    return default if value is None or value == "" else value

"""The "AnimateDiff" accordion of A1111's txt2img and img2img tabs (Gradio 3.41; imports on Gradio 4).

:class:`AnimateDiffUI` builds the original extension's controls with its labels, order, ranges and
defaults, adds ours (context schedule, fuse method, FreeNoise, FreeInit noise, optical-flow
interpolation) next to the controls they refine, and returns the components in the positional order
:meth:`lib_animatediff.params.AnimateDiffParams.from_ui` reads. Element ids are
``animatediff-{txt2img|img2img}-<field>``; ``javascript/hints.js`` and ``style.css`` key on them.

gradio is imported where components are built, so the model-listing helpers also work where gradio
is absent (the API route, the fake-host tests).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lib_animatediff import options, params
from lib_animatediff.options import MODEL_SUFFIXES, UI_SAVE_FORMATS

DEFAULT_MODEL = params.AnimateDiffParams.model
# (minimum, maximum, step) of the original's sliders
SLIDER_RANGES = {
    "batch_size": (1, 32, 1),
    "freeinit_ds": (0, 1, 0.125),
    "freeinit_dt": (0, 1, 0.125),
    "freeinit_iters": (2, 5, 1),
    "latent_power": (0.1, 10, 0.1),
    "latent_scale": (1, 128, 1),
    "latent_power_last": (0.1, 10, 0.1),
    "latent_scale_last": (1, 128, 1),
}
FREEINIT_SLIDERS = (
    ("freeinit_ds", "d_s", "Stop frequency for spatial dimensions (0.0-1.0)"),
    ("freeinit_dt", "d_t", "Stop frequency for temporal dimension (0.0-1.0)"),
    (
        "freeinit_iters",
        "FreeInit Iterations",
        "Larger value leads to smoother results & longer inference time.",
    ),
)
LATENT_SLIDERS = (
    ("latent_power", "Latent power"),
    ("latent_scale", "Latent scale"),
    ("latent_power_last", "Optional latent power for last frame"),
    ("latent_scale_last", "Optional latent scale for last frame"),
)
# Infotext keys ("AnimateDiff <field>") pasted back into the accordion; ``format`` is never written.
PASTE_FIELDS = (
    "model", "enable", "video_length", "fps", "loop_number", "closed_loop", "batch_size", "stride",
    "overlap", "interp", "interp_x", "freeinit_enable", "freeinit_filter", "freeinit_ds",
    "freeinit_dt", "freeinit_iters", "freeinit_noise", "fuse_method", "context_schedule", "noise",
    "latent_power", "latent_scale", "latent_power_last", "latent_scale_last",
)  # fmt: skip

if TYPE_CHECKING:
    import gradio as gr


def ui_fields(is_img2img: bool) -> tuple[str, ...]:
    """Field names in the order :meth:`AnimateDiffUI.render` returns its components."""
    return params.UI_FIELDS_IMG2IMG if is_img2img else params.UI_FIELDS_TXT2IMG


def list_motion_modules(model_dir: Path, hidden_tags: Sequence[str] = ()) -> list[str]:
    """Motion-module files under ``model_dir`` (recursive) as sorted POSIX paths relative to it.

    Hidden files and folders are skipped, as are names containing any of ``hidden_tags``.
    A missing folder lists nothing.
    """
    names = []
    for root, dirs, files in os.walk(model_dir):
        dirs[:] = [name for name in dirs if not name.startswith(".")]
        for name in files:
            if name.startswith(".") or not name.lower().endswith(MODEL_SUFFIXES):
                continue
            if any(tag in name for tag in hidden_tags):
                continue
            names.append(Path(root, name).relative_to(model_dir).as_posix())
    return sorted(names)


def hidden_tags_for(sd_model: Any) -> tuple[str, ...]:
    """The original's filter: file-name tags of motion modules that do not fit the loaded checkpoint."""
    if sd_model is None:
        return ()
    if getattr(sd_model, "is_sdxl", False):
        return ("sd1",)
    if getattr(sd_model, "is_sd2", False):
        return ("sd1", "xl")
    if getattr(sd_model, "is_sd1", False):
        return ("xl",)
    return ()


def pick_model(names: Sequence[str], wanted: str | None) -> str | None:
    """``wanted`` if listed, else the default motion module (also inside a sub-folder), else the first."""
    for candidate in (wanted, DEFAULT_MODEL):
        if candidate in names:
            return candidate
    in_subfolder = [name for name in names if name.rsplit("/", 1)[-1] == DEFAULT_MODEL]
    return (in_subfolder or list(names) or [None])[0]  # type: ignore[list-item]


def probe_video(path: str) -> tuple[int, int]:
    """``(fps, frame count)`` of a video file, rounded down to integers (OpenCV's container metadata)."""
    import cv2

    capture = cv2.VideoCapture(path)
    try:
        return int(capture.get(cv2.CAP_PROP_FPS)), int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    finally:
        capture.release()


def _js_keyword(gr: Any) -> str:
    """Name of the event-listener argument holding client-side JavaScript: ``_js`` before Gradio 4."""
    return "_js" if int(gr.__version__.split(".")[0]) < 4 else "js"


class AnimateDiffUI:
    """One tab's AnimateDiff accordion; call :meth:`render` inside A1111's ``Script.ui``."""

    def __init__(
        self,
        is_img2img: bool,
        *,
        model_dir: Callable[[], Path],
        default_formats: Sequence[str] = ("GIF", "PNG"),
        loaded_model: Callable[[], Any] | None = None,
        on_unload: Callable[[], None] | None = None,
        on_remove: Callable[[], None] | None = None,
        film_problem: Callable[[], str | None] | None = None,
    ) -> None:
        self.is_img2img = is_img2img
        self.tab = "img2img" if is_img2img else "txt2img"
        self.model_dir = model_dir
        self.default_formats = [name for name in UI_SAVE_FORMATS if name in set(default_formats)]
        self.loaded_model = loaded_model
        self.on_unload = on_unload
        self.on_remove = on_remove
        self.film_problem = film_problem
        self.components: dict[str, gr.components.Component] = {}
        self.infotext_fields: list[tuple[gr.components.Component, str]] = []
        self.paste_field_names: list[str] = []

    def elem_id(self, name: str) -> str:
        """``animatediff-<tab>-<name>`` with underscores turned into dashes."""
        return f"animatediff-{self.tab}-{name.replace('_', '-')}"

    def model_names(self) -> list[str]:
        """Motion modules in the model folder that fit the loaded checkpoint (all when none is loaded)."""
        loaded = self.loaded_model() if self.loaded_model else None
        return list_motion_modules(Path(self.model_dir()), hidden_tags_for(loaded))

    def refresh_models(self, current: str | None) -> dict:
        """🔄: re-list the model folder, keeping the current choice when it is still there."""
        import gradio as gr

        names = self.model_names()
        return gr.update(choices=names, value=pick_model(names, current))

    def render(self) -> list[gr.components.Component]:
        """Build the accordion in the current Blocks; components in :func:`ui_fields` order."""
        import gradio as gr

        c = self.components
        defaults = params.AnimateDiffParams()
        with gr.Accordion("AnimateDiff", open=False, elem_id=self.elem_id("accordion")):
            with gr.Row():
                with gr.Row(elem_id=self.elem_id("model-row")):
                    names = self.model_names()
                    c["model"] = gr.Dropdown(
                        choices=names,
                        value=pick_model(names, defaults.model),
                        label="Motion module",
                        type="value",
                        elem_id=self.elem_id("model"),
                    )
                    refresh = gr.Button("\U0001f504", elem_id=self.elem_id("refresh"), elem_classes=["tool"])
                    refresh.click(self.refresh_models, inputs=[c["model"]], outputs=[c["model"]])
                c["format"] = gr.CheckboxGroup(
                    choices=list(UI_SAVE_FORMATS),
                    value=self.default_formats,
                    label="Save format",
                    type="value",
                    elem_id=self.elem_id("format"),
                )
            with gr.Row():
                c["enable"] = gr.Checkbox(
                    value=defaults.enable, label="Enable AnimateDiff", elem_id=self.elem_id("enable")
                )
                c["video_length"] = self._number("video_length", "Number of frames", minimum=0)
                c["fps"] = self._number("fps", "FPS")
                c["loop_number"] = self._number("loop_number", "Display loop number", minimum=0)
            with gr.Row():
                c["closed_loop"] = self._radio("closed_loop", "Closed loop", options.CLOSED_LOOP_MODES)
                low, high, step = SLIDER_RANGES["batch_size"]
                c["batch_size"] = gr.Slider(
                    minimum=low,
                    maximum=high,
                    step=step,
                    value=defaults.batch_size,
                    label="Context batch size",
                    elem_id=self.elem_id("batch_size"),
                )
                c["stride"] = self._number("stride", "Stride", minimum=1)
                c["overlap"] = self._number("overlap", "Overlap", minimum=-1)
            with gr.Row():
                c["context_schedule"] = self._radio(
                    "context_schedule", "Context schedule", options.CONTEXT_SCHEDULES
                )
                c["fuse_method"] = self._radio("fuse_method", "Context fuse method", options.FUSE_METHODS)
                c["noise"] = self._radio("noise", "Noise", options.NOISE_TYPES)
            with gr.Row():
                c["interp"] = self._radio("interp", "Frame Interpolation", options.INTERP_METHODS)
                c["interp_x"] = self._number("interp_x", "Interp X", minimum=1)
            film_notice = gr.Markdown(visible=False, elem_id=self.elem_id("film_notice"))
            c["interp"].change(self.interp_changed, inputs=[c["interp"]], outputs=[film_notice])
            self._render_freeinit()
            c["video_source"] = gr.Video(label="Video source", elem_id=self.elem_id("video_source"))
            c["video_source"].change(
                self._source_changed,
                inputs=[c["video_source"]],
                outputs=[c["fps"], c["video_length"]],
            )
            with gr.Row():
                c["video_path"] = gr.Textbox(label="Video path", elem_id=self.elem_id("video_path"))
                c["mask_path"] = gr.Textbox(
                    label="Mask path", visible=False, elem_id=self.elem_id("mask_path")
                )
            if self.is_img2img:
                self._render_latents()
            self._render_memory_buttons()
        c["enable"].change(
            fn=None,
            inputs=[c["enable"]],
            **{_js_keyword(gr): f"(on) => {{ window.animatediffShowEnabled?.('{self.tab}', on); }}"},
        )
        keys = [name for name in PASTE_FIELDS if name in c]
        self.infotext_fields = [(c[name], f"{params.INFOTEXT_PREFIX} {name}") for name in keys]
        self.paste_field_names = [f"{params.INFOTEXT_PREFIX} {name}" for name in keys]
        return [c[name] for name in ui_fields(self.is_img2img)]

    # ---- parts ------------------------------------------------------------------------------------
    def _number(self, field: str, label: str, minimum: int | None = None) -> gr.Number:
        import gradio as gr

        return gr.Number(
            value=getattr(params.AnimateDiffParams, field),
            label=label,
            precision=0,
            minimum=minimum,
            elem_id=self.elem_id(field),
        )

    def _radio(self, field: str, label: str, choices: Sequence[str]) -> gr.Radio:
        import gradio as gr

        return gr.Radio(
            choices=list(choices),
            value=getattr(params.AnimateDiffParams, field),
            label=label,
            elem_id=self.elem_id(field),
        )

    def _render_freeinit(self) -> None:
        import gradio as gr

        c = self.components
        defaults = params.AnimateDiffParams()
        with gr.Accordion("FreeInit Params", open=False, elem_id=self.elem_id("freeinit")):
            gr.Markdown("Adjust to control the smoothness.")
            c["freeinit_enable"] = gr.Checkbox(
                value=defaults.freeinit_enable,
                label="Enable FreeInit",
                elem_id=self.elem_id("freeinit_enable"),
            )
            c["freeinit_filter"] = gr.Dropdown(
                choices=list(options.FREEINIT_FILTERS),
                value=defaults.freeinit_filter,
                label="Filter Type",
                info="Default as Butterworth. To fix large inconsistencies, consider using Gaussian.",
                interactive=True,
                elem_id=self.elem_id("freeinit_filter"),
            )
            for field, label, info in FREEINIT_SLIDERS:
                low, high, step = SLIDER_RANGES[field]
                c[field] = gr.Slider(
                    minimum=low,
                    maximum=high,
                    step=step,
                    value=getattr(defaults, field),
                    label=label,
                    info=info,
                    elem_id=self.elem_id(field),
                )
            c["freeinit_noise"] = self._radio("freeinit_noise", "FreeInit noise", options.FREEINIT_NOISE)

    def _render_latents(self) -> None:
        import gradio as gr

        c = self.components
        with gr.Accordion("I2V Traditional", open=False, elem_id=self.elem_id("i2v")):
            with gr.Row():
                for field, label in LATENT_SLIDERS:
                    low, high, step = SLIDER_RANGES[field]
                    c[field] = gr.Slider(
                        minimum=low,
                        maximum=high,
                        step=step,
                        value=getattr(params.AnimateDiffParams, field),
                        label=label,
                        elem_id=self.elem_id(field),
                    )
            c["last_frame"] = gr.Image(
                label="Optional last frame. Leave it blank if you do not need one.",
                type="pil",
                elem_id=self.elem_id("last_frame"),
            )

    def _render_memory_buttons(self) -> None:
        import gradio as gr

        buttons = (
            (self.on_unload, "Move motion module to CPU (default if lowvram)", "unload"),
            (self.on_remove, "Remove motion module from any memory", "remove"),
        )
        if not any(action for action, _, _ in buttons):
            return
        with gr.Row():
            for action, label, name in buttons:
                if action is not None:
                    gr.Button(label, elem_id=self.elem_id(name)).click(fn=action)

    def interp_changed(self, method: str) -> dict:
        """Choosing FILM while its model file is missing shows where to put it."""
        import gradio as gr

        problem = self.film_problem() if method == "FILM" and self.film_problem else None
        return gr.update(value=problem or "", visible=bool(problem))

    @staticmethod
    def _source_changed(video: str | None) -> tuple[Any, Any]:
        """A new video sets FPS and Number of frames from the file; clearing it leaves both as they are."""
        import gradio as gr

        if not video:
            return gr.update(), gr.update()
        fps, frames = (
            gr.update(value=number) if number > 0 else gr.update() for number in probe_video(video)
        )
        return fps, frames

"""The accordion built in a ``gr.Blocks`` (gradio 3.41.2, A1111 1.10's): the original's labels, defaults,
ranges and positional order, checked against ``AnimateDiffParams.from_ui``; model listing; settings.

Needs ``.venv-ui`` (``bash dev/setup_ui.sh``); from the main venv it runs through ``test_ui_venv.py``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import pytest

gr = pytest.importorskip(
    "gradio", reason="gradio lives in .venv-ui; tests/test_ui_venv.py runs this file there"
)

from lib_animatediff.a1111 import script_args, settings  # noqa: E402
from lib_animatediff.a1111.ui import (  # noqa: E402
    AnimateDiffUI,
    hidden_tags_for,
    list_motion_modules,
    pick_model,
    ui_fields,
)
from lib_animatediff.params import AnimateDiffParams, parse_infotext  # noqa: E402

# The original's accordion (reference/original-extension.md §2.1): field -> (label, component type).
ORIGINAL_CONTROLS = {
    "model": ("Motion module", gr.Dropdown),
    "format": ("Save format", gr.CheckboxGroup),
    "enable": ("Enable AnimateDiff", gr.Checkbox),
    "video_length": ("Number of frames", gr.Number),
    "fps": ("FPS", gr.Number),
    "loop_number": ("Display loop number", gr.Number),
    "closed_loop": ("Closed loop", gr.Radio),
    "batch_size": ("Context batch size", gr.Slider),
    "stride": ("Stride", gr.Number),
    "overlap": ("Overlap", gr.Number),
    "interp": ("Frame Interpolation", gr.Radio),
    "interp_x": ("Interp X", gr.Number),
    "freeinit_enable": ("Enable FreeInit", gr.Checkbox),
    "freeinit_filter": ("Filter Type", gr.Dropdown),
    "freeinit_ds": ("d_s", gr.Slider),
    "freeinit_dt": ("d_t", gr.Slider),
    "freeinit_iters": ("FreeInit Iterations", gr.Slider),
    "video_source": ("Video source", gr.Video),
    "video_path": ("Video path", gr.Textbox),
    "mask_path": ("Mask path", gr.Textbox),
    "latent_power": ("Latent power", gr.Slider),
    "latent_scale": ("Latent scale", gr.Slider),
    "latent_power_last": ("Optional latent power for last frame", gr.Slider),
    "latent_scale_last": ("Optional latent scale for last frame", gr.Slider),
    "last_frame": ("Optional last frame. Leave it blank if you do not need one.", gr.Image),
}
# (minimum, maximum, step) of the original's sliders
ORIGINAL_SLIDERS = {
    "batch_size": (1, 32, 1),
    "freeinit_ds": (0, 1, 0.125),
    "freeinit_dt": (0, 1, 0.125),
    "freeinit_iters": (2, 5, 1),
    "latent_power": (0.1, 10, 0.1),
    "latent_scale": (1, 128, 1),
    "latent_power_last": (0.1, 10, 0.1),
    "latent_scale_last": (1, 128, 1),
}
ORIGINAL_NUMBER_MINIMUMS = {"video_length": 0, "loop_number": 0, "stride": 1, "overlap": -1}


def _model_dir(root: Path) -> Path:
    model_dir = root / "model"
    for name in ("mm_sd_v15_v2.ckpt", "sdxl/mm_sdxl_v10_beta.safetensors", "v3/mm_sd15_v3.safetensors"):
        (model_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (model_dir / name).write_bytes(b"")
    (model_dir / ".gitkeep").write_bytes(b"")
    (model_dir / "README.md").write_text("not a model")
    return model_dir


def _build(model_dir: Path, is_img2img: bool, **kwargs) -> tuple[AnimateDiffUI, list]:
    with gr.Blocks():
        ui = AnimateDiffUI(is_img2img, model_dir=lambda: model_dir, **kwargs)
        return ui, ui.render()


@pytest.fixture(params=[False, True], ids=["txt2img", "img2img"])
def built(request, tmp_path):
    ui, components = _build(_model_dir(tmp_path), request.param)
    return ui, components


def test_components_come_in_from_ui_order(built):
    ui, components = built
    fields = ui_fields(ui.is_img2img)
    assert len(components) == (29 if ui.is_img2img else 24)
    assert [c.elem_id for c in components] == [f"animatediff-{ui.tab}-{f.replace('_', '-')}" for f in fields]
    assert components == [ui.components[field] for field in fields]


def test_initial_values_are_the_parameter_defaults(built):
    ui, components = built
    received = AnimateDiffParams.from_ui([c.value for c in components], is_img2img=ui.is_img2img)
    assert received == dataclasses.replace(AnimateDiffParams(), model="v3/mm_sd15_v3.safetensors")


def test_original_labels_types_and_ranges(built):
    ui, _ = built
    for field, (label, kind) in ORIGINAL_CONTROLS.items():
        if field not in ui.components:
            assert field in (
                "latent_power",
                "latent_scale",
                "latent_power_last",
                "latent_scale_last",
                "last_frame",
            )
            assert not ui.is_img2img
            continue
        component = ui.components[field]
        assert (component.label, type(component)) == (label, kind), field
    for field, (low, high, step) in ORIGINAL_SLIDERS.items():
        if field in ui.components:
            slider = ui.components[field]
            assert (slider.minimum, slider.maximum, slider.step) == (low, high, step), field
    for field, minimum in ORIGINAL_NUMBER_MINIMUMS.items():
        assert ui.components[field].minimum == minimum, field
        assert ui.components[field].precision == 0, field
    assert _choices(ui.components["closed_loop"]) == ["N", "R-P", "R+P", "A"]
    assert _choices(ui.components["format"]) == ["GIF", "MP4", "WEBP", "WEBM", "PNG", "TXT"]
    assert _choices(ui.components["freeinit_filter"]) == ["butterworth", "gaussian", "box", "ideal"]
    assert _choices(ui.components["interp"]) == ["Off", "FILM", "Optical flow"]
    assert ui.components["mask_path"].visible is False


def _choices(component) -> list:
    """Choice values; gradio 3.41 keeps Dropdown choices as given and turns others into (label, value)."""
    return [choice[1] if isinstance(choice, tuple) else choice for choice in component.choices]


def test_every_value_the_controls_offer_is_accepted(built):
    """Each choice and each slider end, one at a time, parses; the UI cannot send what params reject."""
    ui, components = built
    defaults = [c.value for c in components]
    for index, component in enumerate(components):
        if isinstance(component, gr.CheckboxGroup):
            options = [[choice] for choice in _choices(component) if choice != "TXT"]
        elif isinstance(component, gr.Radio | gr.Dropdown):
            options = _choices(component)
        elif isinstance(component, gr.Slider):
            options = [component.minimum, component.maximum]
        else:
            continue
        for option in options:
            values = [*defaults[:index], option, *defaults[index + 1 :]]
            AnimateDiffParams.from_ui(values, is_img2img=ui.is_img2img)


def test_default_formats_setting_reaches_the_controls(tmp_path):
    """Save format is the one control A1111's ui-config.json cannot give a default (CheckboxGroup)."""
    _, components = _build(_model_dir(tmp_path), False, default_formats=["WEBP", "MP4", "Frame"])
    received = AnimateDiffParams.from_ui([c.value for c in components], is_img2img=False)
    assert received.format == ("MP4", "WEBP")


def test_element_ids_are_unique_across_both_tabs(tmp_path):
    model_dir = _model_dir(tmp_path)
    with gr.Blocks() as demo:
        for is_img2img in (False, True):
            AnimateDiffUI(is_img2img, model_dir=lambda: model_dir, on_unload=print, on_remove=print).render()
    ids = [c["props"].get("elem_id") for c in demo.get_config_file()["components"]]
    ours = [elem_id for elem_id in ids if elem_id and elem_id.startswith("animatediff-")]
    assert len(ours) == len(set(ours))
    assert {"animatediff-txt2img-unload", "animatediff-img2img-remove"} <= set(ours)
    assert "animatediff-txt2img-latent-power" not in ours and "animatediff-img2img-latent-power" in ours


def test_accordion_starts_closed(tmp_path):
    with gr.Blocks() as demo:
        AnimateDiffUI(False, model_dir=lambda: tmp_path).render()
    accordions = [c for c in demo.get_config_file()["components"] if c["type"] == "accordion"]
    labels = {c["props"]["label"]: c["props"]["open"] for c in accordions}
    assert labels == {"AnimateDiff": False, "FreeInit Params": False}


def test_infotext_keys_written_by_params_paste_back(tmp_path):
    ui, _ = _build(_model_dir(tmp_path), True)
    pasted = dict((key, component) for component, key in ui.infotext_fields)
    assert ui.paste_field_names == list(pasted)
    for key, component in pasted.items():
        assert key.startswith("AnimateDiff ")
        assert component is ui.components[key.removeprefix("AnimateDiff ")]
    params = AnimateDiffParams(freeinit_enable=True, request_id="r1")
    written = parse_infotext(params.to_infotext(mm_hash="0123abcd", version="v1", is_img2img=True))
    not_in_ui = {"mm_hash", "version", "request_id"}
    assert {f"AnimateDiff {key}" for key in written if key not in not_in_ui} <= set(pasted)


def test_list_motion_modules_is_recursive_and_skips_non_models(tmp_path):
    model_dir = _model_dir(tmp_path)
    (model_dir / ".cache").mkdir()
    (model_dir / ".cache" / "hidden.ckpt").write_bytes(b"")
    assert list_motion_modules(model_dir) == [
        "mm_sd_v15_v2.ckpt",
        "sdxl/mm_sdxl_v10_beta.safetensors",
        "v3/mm_sd15_v3.safetensors",
    ]
    assert list_motion_modules(tmp_path / "missing") == []


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        (SimpleNamespace(is_sdxl=True, is_sd2=False, is_sd1=False), ["mm_sd_v15_v2.ckpt", "sdxl/mm_sdxl_v10_beta.safetensors"]),
        (SimpleNamespace(is_sdxl=False, is_sd2=False, is_sd1=True), ["mm_sd_v15_v2.ckpt", "v3/mm_sd15_v3.safetensors"]),
        (SimpleNamespace(is_sdxl=False, is_sd2=True, is_sd1=False), ["mm_sd_v15_v2.ckpt"]),
        (None, ["mm_sd_v15_v2.ckpt", "sdxl/mm_sdxl_v10_beta.safetensors", "v3/mm_sd15_v3.safetensors"]),
    ],
    ids=["sdxl", "sd1", "sd2", "no-model"],
)  # fmt: skip
def test_models_are_filtered_by_the_loaded_checkpoint(tmp_path, model, expected):
    model_dir = _model_dir(tmp_path)
    assert list_motion_modules(model_dir, hidden_tags_for(model)) == expected
    ui, _ = _build(model_dir, False, loaded_model=lambda: model)
    assert _choices(ui.components["model"]) == expected


def test_pick_model_prefers_current_then_default_then_first():
    names = ["a.ckpt", "b/mm_sd15_v3.safetensors"]
    assert pick_model(names, "a.ckpt") == "a.ckpt"
    assert pick_model(names, "gone.ckpt") == "b/mm_sd15_v3.safetensors"
    assert pick_model(["a.ckpt", "c.ckpt"], None) == "a.ckpt"
    assert pick_model([], "a.ckpt") is None


def test_refresh_lists_new_files_and_keeps_the_choice(tmp_path):
    model_dir = _model_dir(tmp_path)
    ui, _ = _build(model_dir, False)
    (model_dir / "new" / "mm_new.safetensors").parent.mkdir()
    (model_dir / "new" / "mm_new.safetensors").write_bytes(b"")
    update = ui.refresh_models("mm_sd_v15_v2.ckpt")
    assert update["value"] == "mm_sd_v15_v2.ckpt"
    assert "new/mm_new.safetensors" in update["choices"]
    (model_dir / "mm_sd_v15_v2.ckpt").unlink()
    assert ui.refresh_models("mm_sd_v15_v2.ckpt")["value"] == "v3/mm_sd15_v3.safetensors"


def test_a_video_source_sets_fps_and_frames_and_clearing_keeps_them(tmp_path):
    cv2 = pytest.importorskip("cv2", reason="OpenCV comes with dev/setup_ui.sh")
    numpy = pytest.importorskip("numpy")
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 12, (32, 24))
    for index in range(20):
        writer.write(numpy.full((24, 32, 3), index * 10, dtype=numpy.uint8))
    writer.release()
    fps, frames = AnimateDiffUI._source_changed(str(path))
    assert (fps["value"], frames["value"]) == (12, 20)
    fps, frames = AnimateDiffUI._source_changed(None)
    assert "value" not in fps and "value" not in frames


class RecordingOptionInfo:
    """Records what the extension passes to A1111 1.10's ``modules.options.OptionInfo`` (same
    constructor parameters and chainable ``info``/``link``/``needs_reload_ui`` methods)."""

    def __init__(
        self, default=None, label="", component=None, component_args=None, onchange=None, section=None
    ):
        self.default, self.label, self.component = default, label, component
        self.component_args, self.section = component_args or {}, section
        self.comment_before = self.comment_after = ""

    def link(self, label, url):
        self.comment_before += f"[{label}: {url}]"
        return self

    def info(self, info):
        self.comment_after += f"({info})"
        return self

    def needs_reload_ui(self):
        self.comment_after += " (requires Reload UI)"
        return self


def test_settings_section_keys_defaults_and_help():
    options = settings.build_options(RecordingOptionInfo)
    assert list(options) == list(settings.DEFAULTS)
    original_keys = {
        "animatediff_model_path", "animatediff_default_save_formats", "animatediff_save_to_custom",
        "animatediff_default_frame_extract_method", "animatediff_optimize_gif_palette",
        "animatediff_optimize_gif_gifsicle", "animatediff_mp4_crf", "animatediff_mp4_preset",
        "animatediff_mp4_tune", "animatediff_webp_quality", "animatediff_webp_lossless",
    }  # fmt: skip
    assert original_keys <= set(options)
    for key, option in options.items():
        assert option.section == ("animatediff", "AnimateDiff"), key
        assert option.default == settings.DEFAULTS[key], key
        assert option.comment_after.startswith("("), f"{key} has no .info() help"
        args = option.component_args
        if "choices" in args:
            chosen = option.default if isinstance(option.default, list) else [option.default]
            assert set(chosen) <= set(args["choices"]), key
        if "minimum" in args:
            assert args["minimum"] <= option.default <= args["maximum"], key
    assert options["animatediff_mp4_crf"].component_args == {"minimum": 0, "maximum": 51, "step": 1}
    assert options["animatediff_default_save_formats"].default == ["GIF", "PNG"]
    assert options["animatediff_save_to_custom"].default is True
    assert options["animatediff_webp_quality"].default == 80


def test_every_default_save_format_choice_parses():
    options = settings.build_options(RecordingOptionInfo)
    for name in options["animatediff_default_save_formats"].component_args["choices"]:
        if name != "TXT":
            AnimateDiffParams(format=[name])


@pytest.mark.parametrize("is_img2img", [False, True])
def test_default_values_the_api_collects_mean_animatediff_off(tmp_path, is_img2img):
    """A1111's API builds every request's script arguments from ``elem.value`` of the components
    ``ui()`` returns (``init_default_script_args``); with an empty model folder, too, they parse as
    AnimateDiff off without an error."""
    for model_dir in (_model_dir(tmp_path), tmp_path / "empty"):
        _, components = _build(model_dir, is_img2img)
        values = [component.value for component in components]
        assert not script_args.parse_script_args(values, is_img2img=is_img2img).enable


def test_choosing_film_without_its_model_says_where_to_put_it(tmp_path):
    message = "FILM needs film_net_fp16.pt: put it into /models/Deforum/film_interpolation"
    ui, _ = _build(_model_dir(tmp_path), False, film_problem=lambda: message)
    assert ui.interp_changed("FILM") == gr.update(value=message, visible=True)
    assert ui.interp_changed("Optical flow")["visible"] is False
    ui, _ = _build(_model_dir(tmp_path), False, film_problem=lambda: None)
    assert ui.interp_changed("FILM")["visible"] is False

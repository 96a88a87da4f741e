"""AnimateDiffParams: UI list / API dict / infotext round trips and every validation error."""

from __future__ import annotations

import dataclasses
import math

import pytest
from PIL import Image

from lib_animatediff.params import (
    UI_FIELDS_IMG2IMG,
    UI_FIELDS_TXT2IMG,
    AnimateDiffParams,
    ParamsError,
    parse_infotext,
)
from lib_animatediff.windows import WindowPlan

ORIGINAL_ORDER = [
    "model",
    "enable",
    "video_length",
    "fps",
    "loop_number",
    "closed_loop",
    "batch_size",
    "stride",
    "overlap",
    "format",
    "interp",
    "interp_x",
    "video_source",
    "video_path",
    "mask_path",
    "freeinit_enable",
    "freeinit_filter",
    "freeinit_ds",
    "freeinit_dt",
    "freeinit_iters",
    "latent_power",
    "latent_scale",
    "last_frame",
    "latent_power_last",
    "latent_scale_last",
    "request_id",
]

CUSTOM = AnimateDiffParams(
    model="sub/mm_sd_v15_v2.ckpt",
    enable=True,
    video_length=40,
    fps=12,
    loop_number=2,
    closed_loop="R+P",
    batch_size=24,
    stride=2,
    overlap=6,
    format=("MP4", "TXT"),
    interp="FILM",
    interp_x=3,
    video_source="clip.mp4",
    video_path="frames",
    mask_path="masks",
    freeinit_enable=True,
    freeinit_filter="gaussian",
    freeinit_ds=0.5,
    freeinit_dt=0.125,
    freeinit_iters=4,
    latent_power=1.5,
    latent_scale=20,
    latent_power_last=0.7,
    latent_scale_last=64,
    request_id="job-7.a_b",
    fuse_method="gauss",
    context_schedule="static",
    noise="freenoise",
    freeinit_noise="fresh",
)


def test_field_order_and_original_defaults():
    names = [f.name for f in dataclasses.fields(AnimateDiffParams)]
    assert names == [*ORIGINAL_ORDER, "fuse_method", "context_schedule", "noise", "freeinit_noise"]
    p = AnimateDiffParams()
    assert (p.model, p.enable, p.video_length, p.fps, p.loop_number, p.closed_loop) == (
        "mm_sd15_v3.safetensors", False, 0, 8, 0, "R-P",
    )  # fmt: skip
    assert (p.batch_size, p.stride, p.overlap, p.format, p.interp, p.interp_x) == (
        16,
        1,
        -1,
        ("GIF", "PNG"),
        "Off",
        10,
    )
    assert (p.freeinit_filter, p.freeinit_ds, p.freeinit_dt, p.freeinit_iters) == (
        "butterworth",
        0.25,
        0.25,
        3,
    )
    assert (p.latent_power, p.latent_scale, p.last_frame, p.latent_power_last, p.latent_scale_last) == (
        1, 32, None, 1, 32,
    )  # fmt: skip
    assert (p.fuse_method, p.context_schedule, p.noise, p.freeinit_noise) == (
        "pyramid",
        "uniform",
        "default",
        "reuse",
    )
    assert WindowPlan.from_params(p).overlap == 4 and p.frame_count == 16


def test_ui_layouts():
    assert (
        *ORIGINAL_ORDER[:20],
        "fuse_method",
        "context_schedule",
        "noise",
        "freeinit_noise",
    ) == UI_FIELDS_TXT2IMG
    assert (
        *ORIGINAL_ORDER[:25],
        "fuse_method",
        "context_schedule",
        "noise",
        "freeinit_noise",
    ) == UI_FIELDS_IMG2IMG


@pytest.mark.parametrize("is_img2img", [False, True])
def test_ui_round_trip(is_img2img):
    expected = dataclasses.replace(CUSTOM, request_id="")
    if not is_img2img:
        expected = dataclasses.replace(
            expected, latent_power=1, latent_scale=32, latent_power_last=1, latent_scale_last=32
        )
    ui = expected.to_ui(is_img2img=is_img2img)
    assert len(ui) == (29 if is_img2img else 24)
    assert AnimateDiffParams.from_ui(ui, is_img2img=is_img2img) == expected


def test_original_ui_lengths_take_default_extras_and_gradio_types():
    ui = AnimateDiffParams().to_ui(is_img2img=True)[:25]
    ui[2], ui[6], ui[9] = 24.0, 16.0, ["GIF"]  # gradio sliders/numbers may send floats
    p = AnimateDiffParams.from_ui(ui, is_img2img=True)
    assert p.video_length == 24 and isinstance(p.video_length, int) and p.batch_size == 16
    assert p.fuse_method == "pyramid" and p.format == ("GIF",)
    with pytest.raises(ParamsError, match="txt2img expects 20 or 24"):
        AnimateDiffParams.from_ui(ui, is_img2img=False)


def test_api_round_trip_and_defaults():
    assert AnimateDiffParams.from_api(CUSTOM.to_api()) == CUSTOM
    assert AnimateDiffParams.from_api({}) == AnimateDiffParams()
    assert AnimateDiffParams.from_api({"enable": True}, default_format=["MP4"]).format == ("MP4",)
    assert AnimateDiffParams.from_api({"is_i2i_batch": False, "video_default": False}) == AnimateDiffParams()
    listed = [getattr(CUSTOM, name) for name in ORIGINAL_ORDER]
    assert AnimateDiffParams.from_api(listed) == dataclasses.replace(
        CUSTOM, fuse_method="pyramid", context_schedule="uniform", noise="default", freeinit_noise="reuse"
    )


def test_api_coerces_json_types():
    p = AnimateDiffParams.from_api(
        {
            "enable": "true",
            "video_length": "16",
            "fps": "8",
            "batch_size": 16.0,
            "format": ["gif", "Frame", "png"],
        }
    )
    assert (p.enable, p.video_length, p.fps, p.batch_size) == (True, 16, 8, 16)
    assert p.format == ("GIF", "Frame", "PNG")
    assert AnimateDiffParams.from_api({"fps": 0.5}).fps == 0.5
    assert AnimateDiffParams.from_api({"video_source": ""}).video_source is None


def test_last_frame_is_opaque():
    image = Image.new("RGB", (4, 4))
    assert AnimateDiffParams.from_api({"last_frame": image}).last_frame is image
    assert AnimateDiffParams.from_api({"last_frame": "aGVsbG8="}).last_frame == "aGVsbG8="
    assert AnimateDiffParams.from_api({"last_frame": ""}).last_frame is None
    with pytest.raises(ParamsError, match="last_frame"):
        AnimateDiffParams.from_api({"last_frame": 5})


def test_unknown_keys_list_the_accepted_ones():
    with pytest.raises(ParamsError, match="unknown key") as info:
        AnimateDiffParams.from_api({"enable": True, "frames": 16, "Model": "x"})
    message = str(info.value)
    assert "Model, frames" in message and "video_length" in message and "freeinit_noise" in message


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("video_length", -1),
        ("video_length", 16.5),
        ("video_length", True),
        ("video_length", math.nan),
        ("video_length", "ten"),
        ("batch_size", 0),
        ("batch_size", -1),
        ("overlap", -2),
        ("overlap", 16),
        ("overlap", 17),
        ("stride", 0),
        ("stride", -1),
        ("closed_loop", "X"),
        ("closed_loop", "n"),
        ("closed_loop", None),
        ("closed_loop", ""),
        ("fps", 0),
        ("fps", -8),
        ("fps", 1e6),
        ("fps", math.nan),
        ("fps", True),
        ("loop_number", -1),
        ("loop_number", 65536),
        ("format", []),
        ("format", "GIF"),
        ("format", ["EXE"]),
        ("format", ["TXT", "Frame"]),
        ("format", [1]),
        ("interp", "film!"),
        ("interp_x", 0),
        ("interp_x", -1),
        ("freeinit_iters", 0),
        ("freeinit_iters", 100),
        ("freeinit_ds", -0.1),
        ("freeinit_dt", 1.5),
        ("freeinit_filter", "foo"),
        ("latent_power", 0),
        ("latent_power", -1),
        ("latent_power", math.inf),
        ("latent_scale", 0),
        ("latent_power_last", "x"),
        ("latent_scale_last", -3),
        ("request_id", "../../x"),
        ("request_id", "a/b"),
        ("request_id", "x" * 300),
        ("request_id", "\n"),
        ("request_id", "a\x00b"),
        ("request_id", ".."),
        ("model", 123),
        ("model", "mm\x00.ckpt"),
        ("enable", "yes"),
        ("video_path", 5),
        ("fuse_method", "mean"),
        ("context_schedule", "looped"),
        ("noise", "shuffle"),
        ("freeinit_noise", "new"),
    ],
)
def test_every_bad_value_names_field_and_value(field, value):
    with pytest.raises(ParamsError) as info:
        AnimateDiffParams.from_api({field: value})
    assert info.value.field == field
    assert f"AnimateDiff {field}=" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_enabled_without_a_model_is_an_error_but_disabled_is_fine():
    assert AnimateDiffParams.from_ui(
        [None, *AnimateDiffParams().to_ui(is_img2img=False)[1:]], is_img2img=False
    )
    with pytest.raises(ParamsError, match="model"):
        AnimateDiffParams(model="", enable=True)


def test_request_id_allowed_characters():
    assert AnimateDiffParams(request_id="CON").request_id == "CON"  # only ever a "-suffix"
    assert AnimateDiffParams(request_id="a.b-c_9").request_id == "a.b-c_9"


def test_host_checks():
    p = AnimateDiffParams(video_length=64, batch_size=24, interp="FILM", interp_x=10)
    assert p.validate(max_frames=64, pe_length=24, max_output_frames=640) is p
    with pytest.raises(ParamsError, match=r"video_length=64.*maximum of 63"):
        p.validate(max_frames=63)
    with pytest.raises(ParamsError, match=r"batch_size=24.*at most 16 frames"):
        p.validate(pe_length=16)
    with pytest.raises(ParamsError, match=r"interp_x=10.*640 frames"):
        p.validate(max_output_frames=639)
    with pytest.raises(ParamsError, match="batch_size"):
        AnimateDiffParams(batch_size=33).validate(max_frames=32)


def test_infotext_round_trip_keeps_the_original_form():
    text = CUSTOM.to_infotext(mm_hash="0123456789abcdef", version="v2.0.1-a", is_img2img=True)
    assert text.startswith(
        "model: sub/mm_sd_v15_v2.ckpt, video_length: 40, fps: 12, loop_number: 2, closed_loop: R+P, "
        "batch_size: 24, stride: 2, overlap: 6, interp: FILM, interp_x: 3, freeinit_enable: True, "
        "request_id: job-7.a_b, mm_hash: 01234567, latent_power: 1.5, latent_scale: 20, "
        "latent_power_last: 0.7, latent_scale_last: 64, "
    )
    assert text.endswith("version: v2.0.1-a")
    fields = parse_infotext(f'AnimateDiff: "{text}"')
    assert fields["mm_hash"] == "01234567" and fields["fuse_method"] == "gauss"
    carried = {
        "format": AnimateDiffParams().format,
        "video_source": None,
        "video_path": "",
        "mask_path": "",
    }
    assert AnimateDiffParams.from_infotext(text) == dataclasses.replace(CUSTOM, **carried)


def test_infotext_of_defaults_and_txt2img_omit_optional_parts():
    text = AnimateDiffParams().to_infotext()
    assert "request_id" not in text and "mm_hash" not in text and "latent_power" not in text
    assert "freeinit_filter" not in text and "version" not in text
    parsed = AnimateDiffParams.from_infotext(text)
    assert parsed == AnimateDiffParams(enable=True)


def test_bad_infotext_is_an_error():
    with pytest.raises(ParamsError, match="infotext"):
        AnimateDiffParams.from_infotext("model mm.ckpt, fps: 8")
    with pytest.raises(ParamsError, match="fps"):
        AnimateDiffParams.from_infotext("fps: fast")

"""The API side of the A1111 glue: script arguments and HTTP errors (script_args), result images
(results), extra routes (routes)."""

from __future__ import annotations

import base64

import pytest

from lib_animatediff import version
from lib_animatediff.a1111 import results, routes, script_args
from lib_animatediff.params import AnimateDiffParams, ParamsError


def test_a_dict_in_the_first_slot_is_read_as_api_fields() -> None:
    defaults = AnimateDiffParams().to_ui(is_img2img=False)
    request = {
        "enable": True,
        "video_length": 24,
        "closed_loop": "A",
        "format": ["gif", "MP4"],
        "request_id": "r1",
    }
    params = script_args.parse_script_args([request, *defaults[1:]], is_img2img=False)
    assert (params.enable, params.video_length, params.closed_loop) == (True, 24, "A")
    assert params.format == ("GIF", "MP4") and params.request_id == "r1"


def test_a_missing_format_takes_the_settings_default() -> None:
    params = script_args.parse_script_args([{"enable": True}], is_img2img=True, default_format=["MP4"])
    assert params.format == ("MP4",)


def test_the_positional_list_is_read_in_the_accordion_order() -> None:
    values = AnimateDiffParams(enable=True, video_length=12, fps=12, batch_size=8).to_ui(is_img2img=True)
    params = script_args.parse_script_args(values, is_img2img=True)
    assert (params.enable, params.video_length, params.fps, params.batch_size) == (True, 12, 12, 8)


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({"enable": True, "video_length": -1}, "video_length"),
        ({"enable": True, "format": "GIF"}, "format"),
        ({"enable": True, "closed_loop": "X"}, "closed_loop"),
        ({"enable": True, "request_id": "../../x"}, "request_id"),
        ({"enable": True, "bogus": 1}, "args"),
    ],
)
def test_a_bad_value_becomes_an_http_422_naming_the_field(request_fields: dict, field: str) -> None:
    with pytest.raises(ParamsError) as caught:
        script_args.parse_script_args([request_fields], is_img2img=False)
    error = script_args.RequestError.from_error(caught.value)
    assert error.field == field and field in error.detail
    # what A1111's API middleware reads off the exception (modules/api/api.py handle_exception)
    assert vars(error)["status_code"] == 422
    assert vars(error)["detail"] == str(error)


def test_result_images_are_the_video_files_in_the_original_order_then_frames(tmp_path) -> None:
    files = []
    for suffix in ("webm", "gif", "png", "mp4"):
        path = tmp_path / f"00000-1.{suffix}"
        path.write_bytes(suffix.encode() * 3)
        files.append(path)
    images = results.result_images([files], ["frame0", "frame1"], ["GIF", "MP4", "WEBM", "PNG", "Frame"])
    decoded = [base64.b64decode(item) for item in images[:3]]
    assert decoded == [b"gifgifgif", b"mp4mp4mp4", b"webmwebmwebm"]
    assert images[3:] == ["frame0", "frame1"]
    assert results.result_images([files], ["frame0"], ["GIF", "MP4", "WEBM"]) == images[:3]


def test_routes_are_namespaced_and_report_the_version() -> None:
    added = {}

    class App:
        def add_api_route(self, path, endpoint, methods):
            added[path] = (endpoint, methods)

    routes.register_routes(None, App())
    assert set(added) == {"/animatediff/v1/version", "/animatediff/v1/models"}
    endpoint, methods = added["/animatediff/v1/version"]
    assert methods == ["GET"]
    text = version.PYPROJECT.read_text()
    assert f'version = "{endpoint()["version"]}"' in text


@pytest.mark.parametrize("is_img2img", [False, True])
def test_arguments_a1111_fills_from_defaults_for_other_requests_mean_off(is_img2img: bool) -> None:
    """A request that does not name AnimateDiff gets the accordion's default values (A1111's
    ``init_default_script_args``), which may be anything, ``False`` or ``None`` in the model slot
    included: they switch AnimateDiff off and are never an error."""
    defaults = AnimateDiffParams().to_ui(is_img2img=is_img2img)
    for model in (False, None, "", 123):
        values = [model, *defaults[1:]]
        values[AnimateDiffParams.FIELDS.index("video_length")] = None
        values[AnimateDiffParams.FIELDS.index("format")] = False
        params = script_args.parse_script_args(values, is_img2img=is_img2img, default_format=["GIF"])
        assert params == AnimateDiffParams() and not params.enable
    assert not script_args.parse_script_args([], is_img2img=is_img2img).enable
    assert not script_args.parse_script_args([None] * 3, is_img2img=is_img2img).enable


@pytest.mark.parametrize("request_fields", [{"enable": False, "video_length": -1}, {"model": 5}, {}])
def test_an_api_dict_that_does_not_enable_animatediff_is_not_read(request_fields: dict) -> None:
    assert script_args.parse_script_args([request_fields], is_img2img=False) == AnimateDiffParams()


def test_an_enable_value_that_is_no_boolean_is_an_error() -> None:
    with pytest.raises(ParamsError) as caught:
        script_args.parse_script_args([{"enable": "maybe"}], is_img2img=False)
    assert caught.value.field == "enable"


def test_enabled_positional_values_are_read_and_checked() -> None:
    values = AnimateDiffParams(enable=True).to_ui(is_img2img=False)
    values[AnimateDiffParams.FIELDS.index("video_length")] = -1
    with pytest.raises(ParamsError) as caught:
        script_args.parse_script_args(values, is_img2img=False)
    assert caught.value.field == "video_length"
    values[AnimateDiffParams.FIELDS.index("video_length")] = 8
    values[AnimateDiffParams.FIELDS.index("enable")] = "True"
    assert script_args.parse_script_args(values, is_img2img=False).video_length == 8

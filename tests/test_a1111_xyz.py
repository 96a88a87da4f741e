"""``[AnimateDiff]`` axes of A1111's X/Y/Z plot in the fake host (tests/fake_webui/scripts/xyz_grid.py):
registered once from ``on_before_ui``, values kept on each cell's ``p``, applied over the UI values
and validated; the plot's grid gets the first frame of each video."""

from __future__ import annotations

from copy import copy
from pathlib import Path

import pytest
from PIL import Image

from lib_animatediff.a1111 import script_args, xyz
from lib_animatediff.coercion import ParamsError
from lib_animatediff.params import AnimateDiffParams
from tests.fake_webui.harness import MODEL_NAME, Extension, load_extension
from tests.fake_webui.host import install_xyz_grid

pytestmark = pytest.mark.fakehost

CONTEXT = 4
IMG2IMG_ONLY = {"Latent power", "Latent scale", "Latent power last", "Latent scale last"}


@pytest.fixture
def ext(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Extension:
    return load_extension(monkeypatch, tmp_path)


@pytest.fixture
def plot(ext: Extension):
    """The fake X/Y/Z plot module with the extension's axes registered (A1111 calls on_before_ui)."""
    module = install_xyz_grid(ext.host)
    ext.host.script_callbacks.before_ui_callback()
    return module


def axis(plot, label: str):
    (option,) = [o for o in plot.axis_options if o.label == f"{xyz.LABEL_PREFIX} {label}"]
    return option


def ui_params(**changes) -> AnimateDiffParams:
    values = dict(
        model=MODEL_NAME,
        enable=True,
        video_length=CONTEXT,
        batch_size=CONTEXT,
        closed_loop="N",
        format=("GIF",),
    )
    values.update(changes)
    return AnimateDiffParams(**values)


def cell_params(p) -> AnimateDiffParams:
    """The params ``before_process`` reads for this cell: the accordion's values and the axis values."""
    return script_args.parse_script_args(p.script_args, is_img2img=False, overrides=xyz.overrides_of(p))


def gif_lengths(ext: Extension) -> list[int]:
    lengths = []
    for gif in sorted((ext.host.root / "outputs" / "AnimateDiff").rglob("*.gif")):
        with Image.open(gif) as image:
            lengths.append(image.n_frames)
    return lengths


def test_the_axes_are_registered_once_with_the_originals_labels(ext: Extension, plot) -> None:
    ext.host.script_callbacks.before_ui_callback()  # a second UI build (Reload UI) adds nothing
    ours = [o for o in plot.axis_options if o.label.startswith(xyz.LABEL_PREFIX)]
    assert [o.label for o in ours] == [f"{xyz.LABEL_PREFIX} {a.label}" for a in xyz.AXES]
    assert {
        o.label.removeprefix(f"{xyz.LABEL_PREFIX} ") for o in ours if hasattr(o, "is_img2img")
    } == IMG2IMG_ONLY
    assert plot.axis_options[0].label == "Nothing"
    txt2img, img2img = plot.Script(), plot.Script()
    txt2img.ui(False), img2img.ui(True)
    assert len(img2img.current_axis_options) - len(txt2img.current_axis_options) == len(IMG2IMG_ONLY)
    assert axis(plot, "Motion Module").choices() == [MODEL_NAME]
    assert axis(plot, "Enabled").type("True") is True
    with pytest.raises(ValueError, match="enable"):
        axis(plot, "Enabled").type("maybe")


def test_without_the_xyz_script_nothing_is_registered(ext: Extension) -> None:
    ext.host.script_callbacks.before_ui_callback()
    assert ext.host.scripts.scripts_data == []


def test_apply_stores_the_value_on_that_p_only(ext: Extension, plot) -> None:
    p = ext.processing(ui_params())
    axis(plot, "Closed loop").apply(p, "A", ["A"])  # an earlier axis (X) of the same cell
    first, second = copy(p), copy(p)  # the plot's cells are shallow copies
    axis(plot, "Video length").apply(first, 5, [5, 6])
    axis(plot, "Video length").apply(second, 6, [5, 6])
    assert getattr(p, xyz.XYZ_ATTRIBUTE) == {"closed_loop": "A"}
    assert getattr(first, xyz.XYZ_ATTRIBUTE) == {"closed_loop": "A", "video_length": 5}
    assert getattr(second, xyz.XYZ_ATTRIBUTE) == {"closed_loop": "A", "video_length": 6}
    assert cell_params(first) == ui_params(closed_loop="A", video_length=5)
    assert cell_params(ext.processing(ui_params())) == ui_params()


def test_an_axis_value_is_validated_with_the_other_values(ext: Extension, plot) -> None:
    p = ext.processing(ui_params())
    axis(plot, "Overlap").apply(p, CONTEXT, [CONTEXT])
    with pytest.raises(ParamsError) as caught:
        cell_params(p)
    assert caught.value.field == "overlap"


def test_an_enabled_axis_turns_on_a_disabled_accordion_with_its_values(ext: Extension, plot) -> None:
    p = ext.processing(ui_params(enable=False))
    assert not cell_params(p).enable
    axis(plot, "Enabled").apply(p, True, [False, True])
    assert cell_params(p) == ui_params()


def test_a_plot_over_video_length_overrides_the_ui_and_grids_first_frames(ext: Extension, plot) -> None:
    script = plot.Script()
    script.ui(False)
    p = ext.processing(ui_params(), selected_script=script)
    res = script.run(p, script.current_axis_options.index(axis(plot, "Video length")), "5, 6")
    assert gif_lengths(ext) == [5, 6]
    grid, *cells = res.images
    assert all(isinstance(cell, Image.Image) and cell.size == (64, 64) for cell in cells) and len(cells) == 2
    assert grid.size == (128, 64)
    assert not hasattr(p, xyz.XYZ_ATTRIBUTE)


def test_a_plot_over_a_host_axis_still_gets_images(ext: Extension, plot) -> None:
    script = plot.Script()
    script.ui(False)
    p = ext.processing(ui_params(), selected_script=script)
    steps = next(o for o in plot.axis_options if o.label == "Steps")
    res = script.run(p, script.current_axis_options.index(steps), "1")
    assert gif_lengths(ext) == [CONTEXT]
    assert isinstance(res.images[1], Image.Image)

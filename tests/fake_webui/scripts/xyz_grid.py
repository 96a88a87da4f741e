"""Mirrors A1111 ``scripts/xyz_grid.py`` (the built-in "X/Y/Z plot" script, loaded under the module
name ``xyz_grid.py``): ``AxisOption``/``AxisOptionImg2Img``/``AxisOptionTxt2Img`` with A1111's
constructor signature, the ``axis_options`` list (three of A1111's own entries), and a one-axis
``Script.run``: values split on commas and parsed with the option's ``type``, each cell a shallow
``copy`` of ``p`` with the option applied, and the grid built from each cell's ``images[0]``, as
A1111's ``draw_xyz_grid`` does."""

from __future__ import annotations

from copy import copy

from modules import processing, scripts
from PIL import Image


def apply_field(field):
    def fun(p, x, xs):
        setattr(p, field, x)

    return fun


def do_nothing(p, x, xs):
    pass


def format_value_add_label(p, opt, x):
    return f"{opt.label}: {x}"


class AxisOption:
    def __init__(
        self, label, type, apply, format_value=format_value_add_label, confirm=None, cost=0.0, choices=None,
        prepare=None,
    ):  # fmt: skip
        self.label = label
        self.type = type
        self.apply = apply
        self.format_value = format_value
        self.confirm = confirm
        self.cost = cost
        self.prepare = prepare
        self.choices = choices


class AxisOptionImg2Img(AxisOption):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.is_img2img = True


class AxisOptionTxt2Img(AxisOption):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.is_img2img = False


axis_options = [
    AxisOption("Nothing", str, do_nothing),
    AxisOption("Seed", int, apply_field("seed")),
    AxisOption("Steps", int, apply_field("steps")),
]


class Script(scripts.Script):
    def title(self):
        return "X/Y/Z plot"

    def ui(self, is_img2img):
        self.current_axis_options = [
            x for x in axis_options if type(x) is AxisOption or x.is_img2img == is_img2img
        ]
        return []

    def run(self, p, x_type, x_values):
        x_opt = self.current_axis_options[x_type]
        xs = [x_opt.type(value.strip()) for value in x_values.split(",")]
        cells = []
        for x in xs:
            pc = copy(p)
            x_opt.apply(pc, x, xs)
            processed = processing.process_images(pc)
            cells.append(processed.images[0] if processed.images else None)
        width, height = cells[0].size
        grid = Image.new("RGB", (width * len(cells), height))
        for index, cell in enumerate(cells):
            grid.paste(cell, (index * width, 0))
        return processing.Processed(pc, [grid, *cells], p.seed, "", index_of_first_image=1)

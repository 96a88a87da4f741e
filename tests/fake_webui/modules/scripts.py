"""Mirrors A1111 ``modules/scripts.py``: ``Script``, ``AlwaysVisible``, the argument objects,
``scripts_data`` (what ``load_scripts`` found) and the parts of ``ScriptRunner`` that run
always-visible scripts' hooks (each hook's exception is reported and swallowed, as in A1111)."""

from __future__ import annotations

from collections import namedtuple

from . import errors, paths

AlwaysVisible = object()


class PostprocessImageArgs:
    def __init__(self, image):
        self.image = image


class PostprocessBatchListArgs:
    def __init__(self, images):
        self.images = images


class Script:
    """Base class of A1111 scripts; A1111 sets ``args_from``/``args_to``, ``is_txt2img``/``is_img2img``."""

    filename = None
    args_from = None
    args_to = None
    alwayson = False
    is_txt2img = False
    is_img2img = False
    infotext_fields = None
    paste_field_names = None

    def title(self):
        raise NotImplementedError()

    def ui(self, is_img2img):
        pass

    def show(self, is_img2img):
        return True

    def process_before_every_sampling(self, p, *args, **kwargs):
        pass


current_basedir = paths.script_path

scripts_data = []
ScriptClassData = namedtuple("ScriptClassData", ["script_class", "path", "basedir", "module"])


def basedir():
    return current_basedir


class ScriptRunner:
    """Runs the hooks of always-visible scripts with their slice of ``p.script_args``."""

    def __init__(self, scripts: list[Script], selectable_scripts: list[Script] | None = None):
        self.scripts = scripts
        self.alwayson_scripts = scripts
        self.selectable_scripts = selectable_scripts or []

    def _call(self, name: str, p, *args, **kwargs) -> None:
        for script in self.scripts:
            hook = getattr(script, name, None)
            if hook is None:
                continue
            try:
                hook(p, *args, *p.script_args[script.args_from : script.args_to], **kwargs)
            except Exception:
                errors.report(f"Error running {name}: {script.filename}", exc_info=True)

    def before_process(self, p):
        self._call("before_process", p)

    def process(self, p):
        self._call("process", p)

    def before_process_batch(self, p, **kwargs):
        self._call("before_process_batch", p, **kwargs)

    def process_before_every_sampling(self, p, **kwargs):
        self._call("process_before_every_sampling", p, **kwargs)

    def process_batch(self, p, **kwargs):
        self._call("process_batch", p, **kwargs)

    def postprocess_batch_list(self, p, pp, **kwargs):
        self._call("postprocess_batch_list", p, pp, **kwargs)

    def postprocess_image(self, p, pp):
        self._call("postprocess_image", p, pp)

    def postprocess(self, p, processed):
        self._call("postprocess", p, processed)

"""Motion-module names confined to the model folder, recursive listing, and the load cache."""

from __future__ import annotations

import hashlib
import os
import sys
import types

import pytest

from lib_animatediff.a1111 import model_cache
from lib_animatediff.params import ParamsError
from tests.fake_webui.harness import MODEL_NAME, load_script_module, write_tiny_motion_module
from tests.fake_webui.host import install


@pytest.fixture
def root(tmp_path):
    folder = tmp_path / "models"
    (folder / "sub").mkdir(parents=True)
    for name in ("a.safetensors", "sub/b.ckpt", "notes.txt", ".hidden.ckpt"):
        (folder / name).write_bytes(b"x")
    (tmp_path / "outside.ckpt").write_bytes(b"x")
    os.symlink(tmp_path / "outside.ckpt", folder / "link.ckpt")
    return folder


def test_listing_is_recursive_sorted_and_skips_hidden_and_other_files(root) -> None:
    assert model_cache.list_models(root) == ["a.safetensors", "link.ckpt", "sub/b.ckpt"]


@pytest.mark.parametrize(
    "name",
    ["../outside.ckpt", "/etc/passwd", "sub/../../outside.ckpt", "..\\x.ckpt", "a.safetensors\x00.txt", "",
     "sub", "notes.txt", "missing.ckpt"],
)  # fmt: skip
def test_names_that_leave_the_folder_or_are_not_model_files_are_refused(root, name: str) -> None:
    with pytest.raises(ParamsError) as caught:
        model_cache.resolve_model(name, root)
    assert caught.value.field == "model"


def test_names_inside_the_folder_resolve(root) -> None:
    assert model_cache.resolve_model("sub/b.ckpt", root) == (root / "sub" / "b.ckpt").resolve()


def test_the_cache_loads_once_and_reloads_when_the_file_changes(monkeypatch, tmp_path) -> None:
    host = install(monkeypatch, tmp_path)
    folder = tmp_path / "mm"
    path = write_tiny_motion_module(folder)
    host.shared.cmd_opts.animatediff_model_path = str(folder)
    cache = model_cache.MotionModuleCache()
    first = cache.get(MODEL_NAME, device=host.devices.cpu, dtype=host.devices.dtype)
    assert cache.get(MODEL_NAME, device=host.devices.cpu, dtype=host.devices.dtype) is first
    assert first.variant == "v3" and first.short_hash
    write_tiny_motion_module(folder, seed=8)
    os.utime(path, (path.stat().st_atime, path.stat().st_mtime + 5))
    second = cache.get(MODEL_NAME, device=host.devices.cpu, dtype=host.devices.dtype)
    assert second is not first and second.sha256 != first.sha256
    cache.remove()
    assert cache.loaded is None


def test_a_foreign_motion_module_package_is_named_in_the_error(monkeypatch, tmp_path) -> None:
    install(monkeypatch, tmp_path)
    foreign = types.ModuleType("motion_module")
    foreign.__file__ = "/webui/extensions/sd-webui-animatediff/motion_module.py"
    monkeypatch.setitem(sys.modules, "motion_module", foreign)
    with pytest.raises(ImportError, match=r"sd-webui-animatediff/motion_module\.py"):
        load_script_module(monkeypatch)


def test_the_models_route_lists_each_file_with_its_variant_and_hash(monkeypatch, tmp_path) -> None:
    from lib_animatediff.a1111 import routes as api_routes

    host = install(monkeypatch, tmp_path)
    folder = tmp_path / "mm"
    path = write_tiny_motion_module(folder, name="sub/tiny.safetensors")
    (folder / "broken.ckpt").write_bytes(b"<html>not a checkpoint</html>")
    host.shared.cmd_opts.animatediff_model_path = str(folder)
    routes = {}

    class App:
        def add_api_route(self, route, endpoint, methods):
            routes[route] = endpoint

    api_routes.register_routes(None, App())
    answer = routes["/animatediff/v1/models"]()
    assert answer["model_dir"] == str(folder)
    listed = {entry["name"]: entry for entry in answer["models"]}
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert listed["sub/tiny.safetensors"] == {
        "name": "sub/tiny.safetensors", "variant": "v3", "sha256": digest, "hash": digest[:8],
    }  # fmt: skip
    assert listed["broken.ckpt"]["variant"] is None

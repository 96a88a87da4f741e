"""The host-patch journal (:mod:`motion_module.journal`) and a whole A1111 run through it: after
success, an error raised mid-sampling and an interrupt, the processing object, the model's noise
schedule and ``apply_model``, and the UNet (bytes and module tree) are exactly as before."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from PIL import Image
from torch import nn

from motion_module.journal import Journal
from tests.fake_webui.harness import Extension, load_extension
from tests.fixtures.lora_checkpoints import make_adapter_lora
from tests.fixtures.mm_checkpoints import write_checkpoint
from tests.fixtures.tiny_models import diffusers_unet_from_ldm, tiny_ldm_unet
from tests.test_a1111_flow import gifs, on_unet_call, state_of, video_params

ABSENT = object()
# what the run sets on p; in img2img also sampler and init_latent, which A1111's p.init made
# (txt2img creates its sampler anew in every p.sample, so there it is A1111's own to change)
SET_BEFORE_INIT = ("sample", "batch_size", "prompt", "do_not_save_samples", "enable_hr", "animatediff_run")
SET_BY_INIT = ("sampler", "init_latent")


class Host:
    """A class attribute that an instance attribute may shadow."""

    method = "class value"


def test_set_attr_puts_back_the_previous_value_or_the_absence() -> None:
    host, kept = Host(), object()
    host.own = kept
    journal = Journal()
    journal.set_attr(host, "own", 1)
    journal.set_attr(host, "method", "instance value")
    journal.set_attr(host, "new", 2)
    journal.set_attr(host, "own", 3)  # twice: the value before the first edit comes back
    assert (host.own, host.method, host.new) == (3, "instance value", 2)
    journal.undo()
    assert host.own is kept
    assert vars(host) == {"own": kept}  # no instance copy of the class attribute left behind
    assert host.method == "class value"


def test_a_module_buffer_comes_back_as_the_same_registered_buffer() -> None:
    module = nn.Module()
    module.register_buffer("table", torch.arange(3.0))
    original = module.table
    with Journal() as journal:
        journal.set_attr(module, "table", torch.zeros(3))
        journal.set_attr(module, "extra", nn.Linear(1, 1))
        assert "extra" in dict(module.named_children())
    assert module.table is original and module._buffers["table"] is original
    assert not hasattr(module, "extra") and list(module.children()) == []


def test_undo_runs_newest_first_once() -> None:
    calls: list[str] = []
    journal = Journal()
    for label in ("a", "b", "c"):
        journal.record(lambda label=label: calls.append(label), label)
    journal.undo()
    journal.undo()
    assert calls == ["c", "b", "a"]
    assert len(journal) == 0


@pytest.mark.parametrize("failure", [RuntimeError, KeyboardInterrupt])
def test_a_failing_step_does_not_stop_the_others_and_the_first_failure_is_raised(
    failure: type[BaseException],
) -> None:
    calls: list[str] = []
    host = Host()
    journal = Journal()
    journal.set_attr(host, "new", 1)

    def fail(message: str) -> None:
        calls.append(message)
        raise failure(message)

    journal.record(lambda: fail("older"), "older failing step")
    journal.record(lambda: calls.append("middle"), "middle step")
    journal.record(lambda: fail("newest"), "newest failing step")
    with pytest.raises(failure, match="newest"):
        journal.undo()
    assert calls == ["newest", "middle", "older"]
    assert not hasattr(host, "new")
    journal.undo()  # nothing left to run or raise
    assert calls == ["newest", "middle", "older"]


def test_a_scope_is_undone_on_its_own_or_in_its_place_with_its_parent() -> None:
    calls: list[str] = []
    parent = Journal()
    parent.record(lambda: calls.append("parent first"), "first")
    child = parent.scope("child")
    child.record(lambda: calls.append("child"), "child step")
    parent.record(lambda: calls.append("parent last"), "last")
    parent.undo()
    assert calls == ["parent last", "child", "parent first"]
    calls.clear()
    closed = parent.scope("closed early")
    closed.record(lambda: calls.append("closed"), "step")
    closed.undo()
    parent.undo()
    assert calls == ["closed"]


# ---- a whole run in the fake A1111 -----------------------------------------------------------------


@pytest.fixture
def ext(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Extension:
    """The fake host with a v3 domain adapter in the LoRA folder (it merges into the UNet)."""
    ext = load_extension(monkeypatch, tmp_path)
    twin = diffusers_unet_from_ldm(tiny_ldm_unet("sd15", seed=0), "sd15")
    folder = Path(ext.host.shared.cmd_opts.lora_dir)
    folder.mkdir(parents=True)
    write_checkpoint(folder / "v3_adapter.safetensors", make_adapter_lora(twin, seed=5))
    return ext


def own(obj: object, names: tuple[str, ...]) -> dict[str, object]:
    return {name: vars(obj).get(name, ABSENT) for name in names}


def watch_processing(monkeypatch: pytest.MonkeyPatch, p: object, *, img2img: bool) -> SimpleNamespace:
    """Records ``p``'s own attributes before AnimateDiff sees it and right after A1111's ``p.init``,
    and the per-batch RNGs and the sampler/init latent each sampling call ran with."""
    seen = SimpleNamespace(before_init={}, after_init={}, rngs=[], sampled_with=[])
    runner = type(p.scripts)
    host_before_process, host_init = runner.before_process, type(p).init

    def before_process(self, p, *args, **kwargs):
        seen.before_init = own(p, SET_BEFORE_INIT)
        return host_before_process(self, p, *args, **kwargs)

    def init(self, *args, **kwargs):
        result = host_init(self, *args, **kwargs)
        seen.after_init = own(self, SET_BY_INIT) if img2img else {}
        return result

    host_sample = type(p).sample

    def sample(self, *args, **kwargs):
        seen.rngs.append(self.rng)
        seen.sampled_with.append((self.sampler, vars(self).get("init_latent", ABSENT)))
        return host_sample(self, *args, **kwargs)

    monkeypatch.setattr(runner, "before_process", before_process)
    monkeypatch.setattr(type(p), "init", init)
    monkeypatch.setattr(type(p), "sample", sample)
    return seen


def assert_host_as_before(ext: Extension, p: object, seen: SimpleNamespace, model_before: tuple) -> None:
    for name, value in {**seen.before_init, **seen.after_init}.items():
        assert vars(p).get(name, ABSENT) is value, name
    assert seen.rngs and all("next" not in vars(rng) for rng in seen.rngs)
    after = state_of(ext)
    assert after[0] == model_before[0]  # UNet state dict bytes, module tree, forward attributes
    assert torch.equal(after[1], model_before[1]) and torch.equal(after[2], model_before[2])
    assert after[3] is model_before[3] is False  # no apply_model left on the instance
    assert ext.sd_model._buffers["alphas_cumprod"] is ext.sd_model.alphas_cumprod


@pytest.mark.parametrize("img2img", [False, True], ids=["txt2img", "img2img"])
@pytest.mark.parametrize("outcome", ["success", "error", "interrupt"])
def test_a_run_leaves_the_host_exactly_as_it_was(
    ext: Extension, monkeypatch: pytest.MonkeyPatch, img2img: bool, outcome: str
) -> None:
    model_before = state_of(ext)
    schedule = ext.sd_model.alphas_cumprod
    options = {"init_images": [Image.new("RGB", (64, 64), (200, 40, 40))]} if img2img else {}
    params = video_params(video_length=4, batch_size=4, freeinit_enable=True, freeinit_iters=2)
    p = ext.processing(
        params, img2img=img2img, prompt="a tiny cat<lora:v3_adapter:0.5>", n_iter=2, steps=2, **options
    )
    seen = watch_processing(monkeypatch, p, img2img=img2img)
    # 4 UNet calls per video (2 steps, 2 FreeInit passes): call 5 is in the second video, call 3
    # in the first video's second FreeInit pass
    if outcome == "error":
        on_unet_call(ext, 5, lambda: (_ for _ in ()).throw(RuntimeError("boom mid-sampling")))
        with pytest.raises(RuntimeError, match="boom mid-sampling"):
            ext.host.processing.process_images(p)
    else:
        if outcome == "interrupt":
            on_unet_call(ext, 3, ext.host.shared.state.interrupt)
        ext.host.processing.process_images(p)
    assert_host_as_before(ext, p, seen, model_before)
    assert ext.sd_model.alphas_cumprod is schedule
    # the run did patch the host while sampling: another sampler (img2img) and blended latents
    if img2img:
        sampler, latent = seen.sampled_with[0]
        assert sampler is not seen.after_init["sampler"]
        assert latent is not seen.after_init["init_latent"]
    assert len(gifs(ext)) == (2 if outcome == "success" else 0)


def test_a_failure_while_setting_p_up_leaves_it_unchanged(
    ext: Extension, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A set-up step failing after others patched ``p`` (here: a settings read) undoes them; the
    generation is then refused at its first sampling call."""
    from lib_animatediff.a1111 import script_flow
    from lib_animatediff.a1111.script_args import RequestError

    host_get = script_flow.settings.get

    def failing_get(name: str, *args):
        if name == "animatediff_save_to_custom":
            raise ValueError("animatediff_save_to_custom: unreadable")
        return host_get(name, *args)

    monkeypatch.setattr(script_flow.settings, "get", failing_get)
    params = video_params(video_length=4, batch_size=4, format=("GIF", "PNG"))
    p = ext.processing(params, prompt="0: a cat\n2: a dog", n_iter=1)
    seen = watch_processing(monkeypatch, p, img2img=False)
    with pytest.raises(RequestError, match="unreadable"):
        ext.host.processing.process_images(p)
    changed = {name for name, value in seen.before_init.items() if vars(p).get(name, ABSENT) is not value}
    assert changed == {"sample"}  # only the refusal, which is no run's patch

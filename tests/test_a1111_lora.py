"""``<lora:name:m>`` in the prompt in the fake A1111 host: motion LoRAs (original and A1111-network
files) merged into the motion module, the v3 adapter merged into the ldm UNet, multipliers read as
A1111's Lora reads them, everything restored afterwards; other LoRAs and unknown names left to A1111."""

from __future__ import annotations

import copy
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from lib_animatediff.a1111 import lora as a1111_lora
from lib_animatediff.a1111.script_args import RequestError
from lib_animatediff.params import AnimateDiffParams
from motion_module import load_motion_module
from motion_module.journal import Journal
from tests.fake_webui import lora_networks
from tests.fake_webui.harness import MODEL_NAME, Extension, load_extension, unet_fingerprint
from tests.fake_webui.host import FakeHost, install
from tests.fake_webui.modules.extra_networks import ExtraNetworkParams, parse_prompts
from tests.fixtures.lora_checkpoints import make_adapter_lora, merge_by_hand, to_network_naming
from tests.fixtures.mm_checkpoints import (
    make_motion_lora,
    make_motion_module,
    make_state_dict,
    write_checkpoint,
)
from tests.fixtures.tiny_models import block_channels, diffusers_unet_from_ldm, tiny_ldm_unet

pytestmark = pytest.mark.fakehost

V2 = "tiny_v2.safetensors"
CHANNELS = block_channels("sd15")
PROMPT = "a tiny cat"  # tags are appended without a space: the fake text encoder hashes the exact prompt


@pytest.fixture
def ext(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Extension:
    ext = load_extension(monkeypatch, tmp_path)
    write_checkpoint(ext.model_dir / V2, make_state_dict("v2", channels=CHANNELS, seed=3))
    lora_dir(ext).mkdir(parents=True)
    return ext


@pytest.fixture
def host(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeHost:
    """The fake host alone (``cmd_opts.lora_dir`` created), for tests that generate nothing."""
    host = install(monkeypatch, tmp_path)
    lora_dir(host).mkdir(parents=True)
    return host


@pytest.fixture(scope="module")
def models() -> SimpleNamespace:
    """A v2 and a v3 motion module, the tiny ldm UNet (the harness's), its diffusers twin's weights and
    a v3 adapter for it; tests leave them unchanged."""
    unet = tiny_ldm_unet("sd15", seed=0)
    twin = diffusers_unet_from_ldm(unet, "sd15")
    return SimpleNamespace(
        v2=make_motion_module("v2", channels=CHANNELS, seed=3),
        v3=make_motion_module("v3", channels=CHANNELS, seed=7),
        unet=unet,
        twin_state=twin.state_dict(),
        adapter=make_adapter_lora(twin, seed=5),
    )


def lora_dir(place: Extension | FakeHost) -> Path:
    host = place.host if isinstance(place, Extension) else place
    return Path(host.shared.cmd_opts.lora_dir)


def motion_lora(seed: int) -> dict[str, torch.Tensor]:
    return make_motion_lora("v2", channels=CHANNELS, seed=seed)


def video_params(model: str) -> AnimateDiffParams:
    return AnimateDiffParams(
        model=model, enable=True, video_length=4, batch_size=4, closed_loop="N", format=("GIF",)
    )


def generate(ext: Extension, prompt: str, model: str = V2, steps: int = 1) -> torch.Tensor:
    """The latents A1111 decodes (all frames) for one video."""
    latents: list[torch.Tensor] = []
    decode = ext.sd_model.decode_first_stage
    ext.sd_model.decode_first_stage = lambda z: latents.append(z.clone()) or decode(z)
    try:
        p = ext.processing(video_params(model), prompt=prompt, steps=steps)
        ext.host.processing.process_images(p)
    finally:
        del ext.sd_model.decode_first_stage
    return torch.cat(latents)


def write_merged_module(ext: Extension, loras: list[tuple[dict, float]]) -> str:
    name = "tiny_v2_merged.safetensors"
    state = make_state_dict("v2", channels=CHANNELS, seed=3)
    write_checkpoint(ext.model_dir / name, merge_by_hand(state, loras))
    return name


def cached_module_state(ext: Extension) -> dict[str, torch.Tensor]:
    return ext.script_module.model_cache.cache.loaded.state_dict()


def assert_module_is_the_file(ext: Extension, name: str) -> None:
    pristine = load_motion_module(ext.model_dir / name).state_dict()
    state = cached_module_state(ext)
    assert all(torch.equal(state[key], pristine[key]) for key in pristine)


def assert_close_and_lora_matters(ours: torch.Tensor, reference: torch.Tensor, plain: torch.Tensor) -> None:
    error = (ours - reference).abs().max()
    assert error < 1e-5 * ours.abs().max()
    assert (ours - plain).abs().max() > 1000 * max(error, 1e-7)


def test_motion_lora_in_the_prompt_equals_a_hand_merged_module(ext: Extension) -> None:
    write_checkpoint(lora_dir(ext) / "zoom.safetensors", motion_lora(1))
    unet_before = unet_fingerprint(ext.sd_model.model.diffusion_model)
    ours = generate(ext, f"{PROMPT}<lora:zoom:0.8>")
    assert_module_is_the_file(ext, V2)
    assert unet_fingerprint(ext.sd_model.model.diffusion_model) == unet_before
    plain = generate(ext, PROMPT)
    reference = generate(ext, PROMPT, model=write_merged_module(ext, [(motion_lora(1), 0.8)]))
    assert_close_and_lora_matters(ours, reference, plain)


def test_two_loras_stack_with_their_unet_multipliers_from_files_in_both_formats(ext: Extension) -> None:
    write_checkpoint(lora_dir(ext) / "zoom.ckpt", motion_lora(1), "ckpt")
    (lora_dir(ext) / "sub").mkdir()
    write_checkpoint(lora_dir(ext) / "sub" / "pan.safetensors", to_network_naming(motion_lora(2), alpha=2.0))
    # zoom in the original format, pan in A1111-network format (alpha 2); both against one hand merge.
    # A1111: <name:te:unet>; the text-encoder multiplier does not touch the motion module
    ours = generate(ext, f"{PROMPT}<lora:zoom:0.8><lora:pan:1:-0.5>")
    assert_module_is_the_file(ext, V2)
    plain = generate(ext, PROMPT)
    reference = generate(
        ext, PROMPT, model=write_merged_module(ext, [(motion_lora(1), 0.8), (motion_lora(2), -0.5)])
    )
    assert_close_and_lora_matters(ours, reference, plain)


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        (["n"], 1.0),
        (["n", "0.8"], 0.8),
        (["n", "1", "-0.5"], -0.5),
        (["n", "0.3", "unet=0.6"], 0.6),
        (["n", "te=0.2"], 0.2),
        (["n", "0.4", "te=0.9"], 0.9),
        (["n", "0.4", "0.1", "te=0.9"], 0.1),
    ],
)
def test_the_unet_multiplier_is_read_as_a1111_reads_it(items: list, expected: float) -> None:
    assert a1111_lora.unet_multiplier(ExtraNetworkParams(items=items)) == expected


def processing_with(prompt: str, **kwargs) -> SimpleNamespace:
    _, data = parse_prompts([prompt])
    return SimpleNamespace(extra_network_data=data, **kwargs)


def test_names_are_found_through_a1111s_networks_list_but_never_outside_the_lora_folder(
    host: FakeHost, models: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    outside = write_checkpoint(host.root / "secret.safetensors", motion_lora(1))
    write_checkpoint(lora_dir(host) / "zoom.safetensors", motion_lora(1))
    opened: list[Path] = []
    monkeypatch.setattr(a1111_lora, "open_checkpoint", lambda path: opened.append(path) or 1 / 0)
    mm, unet = models.v2, models.unet
    for name in ("../secret", str(outside), "missing", "..", "sub/../../secret"):
        assert a1111_lora.plan_loras(processing_with(f"<lora:{name}:1>"), mm, unet) == []
    networks = lora_networks.install(monkeypatch)
    networks.list_available_networks()
    networks.available_network_aliases["evil"] = lora_networks.NetworkOnDisk("evil", str(outside))
    assert a1111_lora.find_lora_file("zoom") == lora_dir(host) / "zoom.safetensors"
    assert a1111_lora.plan_loras(processing_with("<lora:evil:1>"), mm, unet) == []
    assert opened == []


def test_an_alias_shared_by_two_files_only_finds_by_file_name(
    host: FakeHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    from safetensors.torch import save_file

    for stem in ("first", "second"):
        save_file(motion_lora(1), str(lora_dir(host) / f"{stem}.safetensors"), {"ss_output_name": "Zoom"})
    save_file(motion_lora(1), str(lora_dir(host) / "third.safetensors"), {"ss_output_name": "Pan"})
    networks = lora_networks.install(monkeypatch)
    networks.list_available_networks()
    assert a1111_lora.find_lora_file("Pan") == lora_dir(host) / "third.safetensors"
    assert a1111_lora.find_lora_file("Zoom") is None
    assert a1111_lora.find_lora_file("second") == lora_dir(host) / "second.safetensors"


def test_ordinary_and_unknown_loras_are_left_to_a1111(host: FakeHost, models: SimpleNamespace) -> None:
    kohya = {
        "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight": torch.ones(
            2, 32
        ),
        "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_up.weight": torch.ones(
            32, 2
        ),
    }
    write_checkpoint(lora_dir(host) / "style.safetensors", kohya)
    (lora_dir(host) / "embedding.pt").write_bytes(b"\x80\x02not a weights pickle")
    mm, unet = models.v2, models.unet
    prompt = "<lora:style:1> <lora:embedding:1> <lora:nothere:0.5> <hypernet:zoom:1>"
    assert a1111_lora.plan_loras(processing_with(prompt), mm, unet) == []


def test_disabled_extra_networks_apply_nothing(host: FakeHost, models: SimpleNamespace) -> None:
    write_checkpoint(lora_dir(host) / "zoom.safetensors", motion_lora(1))
    mm, unet = models.v2, models.unet
    enabled = processing_with("<lora:zoom:1>")
    assert [plan.name for plan in a1111_lora.plan_loras(enabled, mm, unet)] == ["zoom"]
    disabled = processing_with("<lora:zoom:1>", disable_extra_networks=True)
    assert a1111_lora.plan_loras(disabled, mm, unet) == []


def write_adapter(place: Extension | FakeHost, adapter: dict[str, torch.Tensor]) -> None:
    write_checkpoint(lora_dir(place) / "v3_adapter.ckpt", adapter, "ckpt", wrap_state_dict=True)


def test_v3_adapter_is_merged_into_the_ldm_unet_as_diffusers_merges_it(
    ext: Extension, models: SimpleNamespace
) -> None:
    unet = ext.sd_model.model.diffusion_model  # the same seeded UNet as models.unet
    adapter = models.adapter
    write_adapter(ext, adapter)
    parameters = dict(unet.named_parameters())
    during: dict[str, torch.Tensor] = {}

    def snapshot_first_call(module: torch.nn.Module, args: tuple) -> None:
        if not during:
            during.update({key: value.detach().clone() for key, value in parameters.items()})

    hook = unet.register_forward_pre_hook(snapshot_first_call)
    before = unet_fingerprint(unet)
    generate(ext, f"{PROMPT}<lora:v3_adapter:0.7>", model=MODEL_NAME)
    hook.remove()
    assert unet_fingerprint(unet) == before
    merged = copy.deepcopy(models.unet)
    merged.load_state_dict(during)
    expected = merge_by_hand(models.twin_state, [(adapter, 0.7)])
    got = diffusers_unet_from_ldm(merged, "sd15").state_dict()
    assert all(torch.allclose(got[key], expected[key], atol=1e-6) for key in expected)
    changed = [key for key in expected if not torch.equal(got[key], models.twin_state[key])]
    assert len(changed) == len(adapter) // 2


@pytest.mark.parametrize("failure", ["error", "interrupt"])
def test_module_and_unet_are_bit_identical_after_an_error_or_an_interrupt(
    ext: Extension, models: SimpleNamespace, failure: str
) -> None:
    write_checkpoint(lora_dir(ext) / "zoom.safetensors", motion_lora(1))
    write_adapter(ext, models.adapter)
    unet = ext.sd_model.model.diffusion_model
    before = unet_fingerprint(unet)
    calls: list[int] = []

    def on_call(module, args) -> None:
        calls.append(1)
        if len(calls) == 2 and failure == "error":
            raise RuntimeError("boom in window")
        if len(calls) == 2 and failure == "interrupt":
            ext.host.shared.state.interrupt()

    unet.register_forward_pre_hook(on_call)
    prompt = f"{PROMPT}<lora:zoom:0.8><lora:v3_adapter:0.5>"
    if failure == "error":
        with pytest.raises(RuntimeError, match="boom in window"):
            generate(ext, prompt, steps=2)
    else:
        generate(ext, prompt, steps=2)  # interrupted: A1111 ends the run without an exception
    assert len(calls) >= 2
    assert unet_fingerprint(unet) == before
    assert_module_is_the_file(ext, V2)


def test_a_lora_that_does_not_fit_is_refused_before_anything_is_merged(
    ext: Extension, models: SimpleNamespace
) -> None:
    write_adapter(ext, models.adapter)
    write_checkpoint(lora_dir(ext) / "zoom_v2.safetensors", to_network_naming(motion_lora(1)))
    unet = ext.sd_model.model.diffusion_model
    before = unet_fingerprint(unet)
    calls: list[int] = []
    unet.register_forward_pre_hook(lambda module, args: calls.append(1))
    with pytest.raises(RequestError) as caught:
        generate(ext, f"{PROMPT}<lora:v3_adapter:1><lora:zoom_v2:1>", model=MODEL_NAME)
    assert caught.value.field == "lora"
    assert "zoom_v2" in str(caught.value) and "'v3' motion module, e.g. mid_block_" in str(caught.value)
    assert calls == []
    assert unet_fingerprint(unet) == before
    assert_module_is_the_file(ext, MODEL_NAME)


def test_a_non_finite_multiplier_is_refused(host: FakeHost, models: SimpleNamespace) -> None:
    write_checkpoint(lora_dir(host) / "zoom.safetensors", motion_lora(1))
    mm, unet = models.v2, models.unet
    with pytest.raises(RequestError, match=r"lora='zoom'.*not a finite number"):
        a1111_lora.plan_loras(processing_with("<lora:zoom:inf>"), mm, unet)


def test_unet_layers_a1111s_lora_patched_get_our_merge_under_its_networks(
    host: FakeHost, models: SimpleNamespace
) -> None:
    """A1111's Lora (``networks.network_apply_weights``): a layer with ``network_weights_backup`` has
    its networks on top of that backup; when the wanted networks differ from
    ``network_current_names`` it restores the backup and applies them again."""
    adapter = models.adapter
    write_adapter(host, adapter)
    unet, mm = copy.deepcopy(models.unet), models.v3
    layer = unet.input_blocks[1][1].transformer_blocks[0].attn1.to_q
    unpatched = layer.weight.detach().clone()
    style = torch.randn(unpatched.shape, generator=torch.Generator().manual_seed(0))
    layer.network_layer_name = "diffusion_model_input_blocks_1_1_transformer_blocks_0_attn1_to_q"
    layer.network_weights_backup = unpatched.clone()
    layer.network_current_names = (("style", 1.0, 1.0, None),)
    with torch.no_grad():
        layer.weight.add_(style)

    def a1111_applies(wanted: tuple) -> None:
        if layer.network_current_names != wanted:
            with torch.no_grad():
                layer.weight.copy_(layer.network_weights_backup)
                if wanted:
                    layer.weight.add_(style)
            layer.network_current_names = wanted

    stem = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor.to_q_lora"
    delta = 0.5 * adapter[f"{stem}.up.weight"].double() @ adapter[f"{stem}.down.weight"].double()
    with Journal() as journal:
        a1111_lora.apply_loras(journal, processing_with("<lora:v3_adapter:0.5>"), mm, unet)
        a1111_applies((("style", 1.0, 1.0, None),))
        assert torch.allclose(layer.weight.double(), unpatched.double() + delta + style.double(), atol=1e-6)
    assert torch.equal(layer.network_weights_backup, unpatched)
    a1111_applies((("style", 1.0, 1.0, None),))
    assert torch.equal(layer.weight.detach(), (unpatched + style))

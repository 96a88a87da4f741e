"""load_motion_module: files and state dicts, dtypes and devices, hashes, and every bad-input path."""

from __future__ import annotations

import hashlib
import pickle
import weakref
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from motion_module import MotionModuleError, detect_variant, load_motion_module
from motion_module.checkpoint_io import TensorSource, from_state_dict, read_state_dict
from motion_module.loading import build_from, inspect_checkpoint
from tests.fixtures.mm_checkpoints import make_state_dict, write_checkpoint

SMALL = (32, 32, 32, 32)


def small(variant: str = "v3", **kwargs: object) -> dict[str, torch.Tensor]:
    return make_state_dict(variant, channels=SMALL, **kwargs)


def assert_same_weights(mm: torch.nn.Module, state: dict[str, torch.Tensor], dtype: torch.dtype) -> None:
    loaded = mm.state_dict()
    assert set(loaded) == set(state)
    assert all(loaded[key].dtype == dtype and torch.equal(loaded[key], state[key].to(dtype)) for key in state)


@pytest.mark.parametrize(("fmt", "wrap"), [("safetensors", False), ("ckpt", False), ("ckpt", True)])
def test_file_loads_with_hash(tmp_path: Path, fmt: str, wrap: bool) -> None:
    state = small("v2")
    path = write_checkpoint(tmp_path / f"mm.{fmt}", state, fmt, wrap_state_dict=wrap)
    mm = load_motion_module(path)
    assert mm.variant == "v2" and not mm.training
    assert_same_weights(mm, state, torch.float32)
    assert mm.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert mm.short_hash == mm.sha256[:8]


def test_state_dict_wrapper_and_non_tensor_entries_are_accepted() -> None:
    state = small("v1")
    mm = load_motion_module({"state_dict": {**state, "global_step": 10, "animatediff_config": {"a": 1}}})
    assert mm.variant == "v1" and mm.sha256 is None and mm.short_hash is None
    assert_same_weights(mm, state, torch.float32)


def test_animatelcm_gets_the_computed_64_frame_encoding() -> None:
    mm = load_motion_module(small("animatelcm"), dtype=torch.float16)
    pe = (
        mm.down_blocks[0]
        .motion_modules[0]
        .temporal_transformer.transformer_blocks[0]
        .attention_blocks[0]
        .pos_encoder.pe
    )
    reference = make_state_dict("v2", channels=SMALL)
    stored = reference[
        "down_blocks.0.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.0.pos_encoder.pe"
    ]
    assert pe.shape == (1, 64, 32) and pe.dtype == torch.float16
    assert torch.allclose(pe[:, :32].float(), stored, atol=1e-3)


@pytest.mark.parametrize(
    ("stored", "requested", "expected"),
    [
        (torch.float16, None, torch.float16),
        (torch.float16, torch.float32, torch.float32),
        (torch.float32, torch.bfloat16, torch.bfloat16),
    ],
)
def test_dtype(
    tmp_path: Path, stored: torch.dtype, requested: torch.dtype | None, expected: torch.dtype
) -> None:
    state = small("v3", dtype=stored)
    mm = load_motion_module(
        write_checkpoint(tmp_path / "mm.safetensors", state), dtype=requested, device="cpu"
    )
    assert_same_weights(mm, state, expected)
    assert all(buffer.dtype == expected for buffer in mm.buffers())


def test_tensors_are_converted_one_at_a_time() -> None:
    """Loading an fp16 source as fp32 never keeps more than one unconverted tensor alive."""
    state = small("v3", dtype=torch.float16)
    inner = from_state_dict(state)
    alive: list[weakref.ref] = []
    peak = 0

    def read(key: str) -> torch.Tensor:
        nonlocal peak
        tensor = inner.read(key).clone()
        alive.append(weakref.ref(tensor))
        peak = max(peak, sum(ref() is not None for ref in alive))
        return tensor

    mm = build_from(TensorSource("src", inner.meta, read), torch.device("cpu"), torch.float32)
    assert peak == 1
    assert_same_weights(mm, state, torch.float32)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"dtype": torch.int8}, "dtype=torch.int8"), ({"device": "nonsense"}, "device='nonsense'")],
)
def test_bad_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(MotionModuleError, match=message):
        load_motion_module(small(), **kwargs)


class WritesMarker:
    """Unpickling this calls ``open(marker, "w")``: the marker file appears if the pickle runs."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("container", ["zip", "raw"])
def test_code_running_pickle_is_refused_and_not_executed(tmp_path: Path, container: str) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    payload = {"down_blocks.0.x": WritesMarker(marker)}
    if container == "zip":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(MotionModuleError, match=r"evil\.ckpt: refused to load: the pickle is unsafe"):
        load_motion_module(path)
    assert not marker.exists()


@pytest.fixture(scope="module")
def corrupt_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, str]]:
    """name -> (file, expected message)."""
    tmp_path = tmp_path_factory.mktemp("corrupt")
    good = write_checkpoint(tmp_path / "good.safetensors", small())
    data = good.read_bytes()
    cases = {
        "empty": (b"", r"file is empty \(0 bytes\)"),
        "truncated safetensors": (data[: len(data) // 2], "truncated safetensors file: needs"),
        "truncated header": (data[:200], r"truncated safetensors file \(header"),
        "lfs pointer": (
            b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 1\n",
            "Git LFS pointer",
        ),
        "html": (b"\n<!DOCTYPE html><html><body>404</body></html>", "HTML/XML page"),
        "garbage": (b"\x00" * 64, "neither a safetensors file nor a PyTorch checkpoint"),
    }
    files = {}
    for name, (content, message) in cases.items():
        path = tmp_path / f"{name.replace(' ', '_')}.ckpt"
        path.write_bytes(content)
        files[name] = (path, message)
    zipped = write_checkpoint(tmp_path / "zip.ckpt", small(), "ckpt").read_bytes()
    (tmp_path / "cut.ckpt").write_bytes(zipped[: len(zipped) // 2])
    files["truncated ckpt"] = (tmp_path / "cut.ckpt", "corrupt or truncated PyTorch checkpoint")
    torch.save([torch.zeros(2)], tmp_path / "list.ckpt")
    files["not a dict"] = (tmp_path / "list.ckpt", "holds a list, not a state dict")
    files["missing"] = (tmp_path / "absent.safetensors", "file not found")
    files["directory"] = (tmp_path, "not a file")
    return files


@pytest.mark.parametrize(
    "case",
    [
        "empty",
        "truncated safetensors",
        "truncated header",
        "lfs pointer",
        "html",
        "garbage",
        "truncated ckpt",
        "not a dict",
        "missing",
        "directory",
    ],
)
def test_bad_files_get_their_own_clear_error(corrupt_files: dict, case: str) -> None:
    path, message = corrupt_files[case]
    with pytest.raises(MotionModuleError, match=message) as caught:
        load_motion_module(path)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights_are_rejected(tmp_path: Path, bad: float) -> None:
    state = small()
    key = "up_blocks.1.motion_modules.2.temporal_transformer.proj_in.weight"
    state[key][3, 4] = bad
    path = write_checkpoint(tmp_path / "nan.safetensors", state)
    with pytest.raises(MotionModuleError, match=f"nan.safetensors: tensor {key} contains NaN or Inf"):
        load_motion_module(path)


def test_float8_file_is_rejected(tmp_path: Path) -> None:
    state = small()
    key = "down_blocks.0.motion_modules.0.temporal_transformer.proj_in.weight"
    state[key] = state[key].to(torch.float8_e4m3fn)
    path = tmp_path / "fp8.safetensors"
    save_file(state, str(path))
    with pytest.raises(MotionModuleError, match=f"tensor {key} is stored as torch.float8_e4m3fn"):
        load_motion_module(path)


def test_integer_tensors_are_rejected() -> None:
    state = small()
    state["down_blocks.0.motion_modules.0.temporal_transformer.norm.bias"] = torch.zeros(
        32, dtype=torch.int64
    )
    with pytest.raises(MotionModuleError, match=r"has dtype torch\.int64, expected floating-point"):
        load_motion_module(state)


def test_transposed_tensor_in_a_file_names_file_and_key(tmp_path: Path) -> None:
    key = "mid_block.motion_modules.0.temporal_transformer.transformer_blocks.0.ff.net.0.proj.weight"
    state = small("v2")
    state[key] = state[key].T.contiguous()
    path = write_checkpoint(tmp_path / "t.ckpt", state, "ckpt")
    with pytest.raises(
        MotionModuleError, match=r"t\.ckpt: tensor .*ff\.net\.0\.proj\.weight .*\(transposed\?\)"
    ):
        load_motion_module(path)


def test_read_state_dict_reads_small_files(tmp_path: Path) -> None:
    state = {"a": torch.arange(4.0), "b": torch.ones(2, 2, dtype=torch.float16)}
    for fmt in ("safetensors", "ckpt"):
        loaded = read_state_dict(write_checkpoint(tmp_path / f"s.{fmt}", state, fmt))
        assert set(loaded) == set(state) and all(torch.equal(loaded[k], state[k]) for k in state)


@pytest.mark.parametrize(
    ("variant", "fmt"), [("v1", "ckpt"), ("animatelcm", "safetensors"), ("lightning", "safetensors")]
)
def test_detect_variant_reads_only_keys_and_shapes(tmp_path: Path, variant: str, fmt: str) -> None:
    path = write_checkpoint(tmp_path / f"m.{fmt}", small(variant), fmt)
    assert detect_variant(path) == {"lightning": "v2"}.get(variant, variant)
    layout = inspect_checkpoint(path)
    assert layout.down_channels == SMALL and layout.naming == "original"


def test_detect_variant_rejects_what_is_not_a_motion_module(tmp_path: Path) -> None:
    path = write_checkpoint(
        tmp_path / "unet.safetensors", {"model.diffusion_model.out.0.weight": torch.ones(4)}
    )
    with pytest.raises(MotionModuleError, match=r"unet\.safetensors: unexpected keys"):
        detect_variant(path)


def test_safetensors_whose_header_length_looks_like_a_pickle_still_loads(tmp_path: Path) -> None:
    """The first byte of a safetensors file is the header length's low byte; 0x80 must not mean pickle."""
    state = small("v3")
    path = tmp_path / "tricky.safetensors"
    for pad in range(0, 512, 8):
        save_file(state, str(path), metadata={"pad": "x" * pad})
        if path.read_bytes()[0] == 0x80:
            break
    assert path.read_bytes()[0] == 0x80
    assert load_motion_module(path).variant == "v3"


def test_channels_that_do_not_fit_32_groups_are_rejected_with_the_file_name(tmp_path: Path) -> None:
    path = write_checkpoint(tmp_path / "odd.safetensors", make_state_dict("v3", channels=(48, 48, 48, 48)))
    with pytest.raises(MotionModuleError, match=r"odd\.safetensors: channels=48 must be a multiple"):
        load_motion_module(path)


def test_values_that_overflow_the_requested_dtype_are_rejected() -> None:
    state = small()
    key = "up_blocks.0.motion_modules.0.temporal_transformer.proj_out.bias"
    state[key][0] = 1e6
    assert load_motion_module(state).state_dict()[key][0] == 1e6
    with pytest.raises(
        MotionModuleError, match=rf"tensor {key} contains NaN or Inf values \(as torch\.float16\)"
    ):
        load_motion_module(state, dtype=torch.float16)


def test_opposite_infinities_are_caught() -> None:
    state = small()
    key = "down_blocks.1.motion_modules.1.temporal_transformer.norm.weight"
    state[key][0], state[key][1] = float("inf"), float("-inf")
    with pytest.raises(MotionModuleError, match="NaN or Inf"):
        load_motion_module(state)

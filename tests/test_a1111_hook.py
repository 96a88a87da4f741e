"""The window hook's plumbing: batch rows of A1111's conditioning containers, and clean removal."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace

import pytest
import torch

from lib_animatediff.a1111.denoiser_hook import FrameWindowHook, take_rows
from lib_animatediff.params import AnimateDiffParams
from lib_animatediff.windows import WindowPlan
from motion_module.journal import Journal


def test_take_rows_slices_per_image_tensors_inside_a1111s_condition_dicts() -> None:
    rows = torch.tensor([1, 3])
    cond = {
        "c_crossattn": [torch.arange(4.0).view(4, 1)],
        "c_concat": [torch.zeros(1, 5, 1, 1)],  # broadcast: one row for all images
        "vector": torch.arange(8.0).view(4, 2),  # SDXL
    }
    picked = take_rows(cond, rows, 4)
    assert picked["c_crossattn"][0].flatten().tolist() == [1.0, 3.0]
    assert picked["c_concat"][0] is cond["c_concat"][0]
    assert picked["vector"].tolist() == [[2.0, 3.0], [6.0, 7.0]]
    assert take_rows("text", rows, 4) == "text"


class Model:
    alphas_cumprod = torch.linspace(0.999, 0.01, 1000)

    def apply_model(self, x, t, cond):
        return x * 2


def hook_for(model: Model, frames: int = 4) -> FrameWindowHook:
    params = AnimateDiffParams(enable=True, video_length=frames, batch_size=frames)
    state = SimpleNamespace(interrupted=False, skipped=False, sampling_step=0)
    handle = SimpleNamespace(set_frames=lambda n: None)
    return FrameWindowHook(
        model, handle, WindowPlan.from_params(params), frames, state=state, interrupted=KeyboardInterrupt
    )


@contextmanager
def installed(hook: FrameWindowHook) -> Iterator[FrameWindowHook]:
    """The hook installed through a journal that is undone on leaving the block."""
    with Journal() as journal:
        yield hook.install(journal)


def test_the_hook_runs_windows_and_leaves_the_class_method_in_place() -> None:
    model = Model()
    with installed(hook_for(model)):
        assert model.apply_model(torch.ones(8, 1), torch.zeros(8), {}).tolist() == [[2.0]] * 8
    assert "apply_model" not in vars(model)


def test_another_extensions_instance_wrapper_is_put_back() -> None:
    model = Model()

    def wrapper(x, t, cond):
        return x + 1

    model.apply_model = wrapper
    with installed(hook_for(model)):
        assert model.apply_model(torch.ones(4, 1), torch.zeros(4), {}).tolist() == [[2.0]] * 4
    assert model.apply_model is wrapper


def test_a_batch_that_is_not_whole_videos_is_an_error_naming_the_sizes() -> None:
    model = Model()
    with (
        installed(hook_for(model)),
        pytest.raises(RuntimeError, match="batch of 6 images, not whole videos of 4"),
    ):
        model.apply_model(torch.ones(6, 1), torch.zeros(6), {})


def test_and_composition_is_refused_with_a_message() -> None:
    model = Model()
    hook = hook_for(model)
    # AND in the prompt: A1111 gives two conditionings per frame (8 cond rows for 4 frames)
    cfg = SimpleNamespace(denoiser=SimpleNamespace(step=0), text_cond=torch.zeros(8, 2, 3))
    with installed(hook), pytest.raises(RuntimeError, match="AND in the prompt"):
        hook.on_cfg_denoiser(cfg)
        model.apply_model(torch.ones(12, 1), torch.zeros(12), {})

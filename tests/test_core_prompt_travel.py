"""Prompt travel: grammar, errors with line numbers, per-frame schedule, slerp and wrap rules."""

from __future__ import annotations

import math

import pytest
import torch

from lib_animatediff.prompt_travel import PromptTravelError, blend_plan, interpolate, parse, slerp


def test_head_keyframes_tail_are_joined_like_the_original():
    schedule = parse("masterpiece\nbest quality\n0: (cat:1.3), [a|b]\n8: dog <lora:x:0.5>\nwinter", 16)
    assert schedule.is_travel
    assert schedule.keyframes == {
        0: "masterpiece, best quality, (cat:1.3), [a|b], winter",
        8: "masterpiece, best quality, dog <lora:x:0.5>, winter",
    }


def test_empty_head_and_tail_keep_the_original_separators():
    assert parse("0: cat\n4: dog", 8).keyframes == {0: ", cat, ", 4: ", dog, "}


def test_per_frame_prompts_hold_until_the_next_key_and_cover_the_batch():
    schedule = parse("2: a\n5: b", 8)
    prompts = schedule.frame_prompts()
    assert prompts == [", a, "] * 5 + [", b, "] * 3  # frames before the first key take its prompt
    assert schedule.frame_prompts(10)[-1] == ", b, "


def test_plain_prompt_is_no_travel():
    schedule = parse("a photo of a cat, (detailed:1.2)\n16:9 aspect", 16)
    assert not schedule.is_travel
    assert schedule.frame_prompts(3) == ["a photo of a cat, (detailed:1.2)\n16:9 aspect"] * 3
    assert "no prompt travel" in schedule.describe()


def test_no_space_after_colon_is_text_and_crlf_and_blank_lines_are_normalised():
    schedule = parse("head\r\n\r\n0: a\r\n\r\n8:b\r\n", 16)
    assert schedule.keyframes == {0: "head, a, 8:b"}


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        ("0: a\n16: b", 2, "16 >= number of frames"),
        ("x\n0: a\n99999999999999999999: b", 3, ">= number of frames"),
        ("8: a\n0: b", 2, "greater than 8"),
        ("0: a\n0: b", 2, "greater than 0"),
        ("0: a\n4:", 2, "empty prompt"),
        ("0: a\n4:   ", 2, "empty prompt"),
        ("-1: x", 1, "negative"),
        ("0: a\ntail\n8: b", 3, "after non-keyframe line 2"),
    ],
)
def test_errors_name_the_line(text, line, problem):
    with pytest.raises(PromptTravelError, match=problem) as info:
        parse(text, 16)
    assert info.value.line == line
    assert f"line {line}:" in str(info.value)


def test_non_string_prompt_is_rejected():
    with pytest.raises(TypeError, match="string prompt"):
        parse(["a", "b"], 16)


def test_many_keyframes_parse_quickly():
    text = "\n".join(f"{i}: p{i}" for i in range(0, 10000, 2))
    schedule = parse(text, 10000)
    assert len(schedule.keyframes) == 5000
    assert len(blend_plan(sorted(schedule.keyframes), 10000, closed=True)) == 10000


def test_blend_plan_without_and_with_wrap():
    keys, n = [2, 6], 10
    open_plan = blend_plan(keys, n, closed=False)
    assert open_plan[0] == (2, 2, 0.0) and open_plan[9] == (6, 6, 0.0)
    assert open_plan[4] == (2, 6, 0.5) and open_plan[3] == (2, 6, 0.25)
    closed_plan = blend_plan(keys, n, closed=True)
    # frame 8: 2 past key 6, 4 before key 2 (+10) -> t = 2/6; frame 0: 4 past 6 (wrapping), 2 before 2
    assert closed_plan[8] == (6, 2, pytest.approx(2 / 6))
    assert closed_plan[0] == (6, 2, pytest.approx(4 / 6))
    assert blend_plan([3], 8, closed=True) == [(3, 3, 0.0)] * 8


def test_slerp_matches_the_closed_form_and_falls_back_to_lerp():
    a = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    b = torch.tensor([[0.0, 2.0]], dtype=torch.float64)
    mid = slerp(a, b, 0.5)
    omega = math.pi / 2
    expected = (math.sin(0.5 * omega) * a + math.sin(0.5 * omega) * b) / math.sin(omega)
    torch.testing.assert_close(mid, expected)
    near = torch.tensor([[1.0, 1e-4]], dtype=torch.float64)
    torch.testing.assert_close(slerp(a, near, 0.3), 0.7 * a + 0.3 * near)
    assert torch.equal(slerp(torch.zeros(1, 2), torch.ones(1, 2), 0.25), torch.full((1, 2), 0.25))


def test_interpolate_tensor_and_dict_conditioning():
    generator = torch.Generator().manual_seed(0)
    cond = torch.randn(8, 4, 6, generator=generator)
    schedule = parse("0: a\n4: b", 8)
    out = interpolate(cond, schedule, closed=False)
    assert torch.equal(out[0], cond[0]) and torch.equal(out[4], cond[4]) and torch.equal(out[7], cond[4])
    torch.testing.assert_close(out[2], slerp(cond[0], cond[4], 0.5))
    wrapped = interpolate(cond, schedule, closed=True)
    torch.testing.assert_close(wrapped[6], slerp(cond[4], cond[0], 0.5))
    sdxl = {"crossattn": cond, "vector": torch.randn(8, 5, generator=generator)}
    out_dict = interpolate(sdxl, schedule, closed=False)
    assert set(out_dict) == {"crossattn", "vector"}
    torch.testing.assert_close(out_dict["vector"][1], slerp(sdxl["vector"][0], sdxl["vector"][4], 0.25))
    assert interpolate(cond, parse("plain", 8), closed=True) is cond


def test_describe_lists_keys_and_blends():
    text = parse("0: a\n8: b", 16).describe(closed=True)
    assert "frame 0: , a, " in text and "frames 9-15: slerp 8 -> 0" in text
    assert "frames 0-3: hold 4" in parse("4: a\n8: b", 16).describe()

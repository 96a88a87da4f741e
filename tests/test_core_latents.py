"""img2img latent blending against hand-worked numbers (reference 2.13 / original 10.1)."""

from __future__ import annotations

import pytest
import torch

from lib_animatediff.latents import blend, blend_weights
from lib_animatediff.params import AnimateDiffParams


def test_default_alphas_hand_worked():
    alpha, beta = blend_weights(34, AnimateDiffParams(video_length=34), with_last=False)
    assert beta is None
    assert alpha[0].item() == 1.0 and alpha[1].item() == 0.96875 and alpha[15].item() == 0.53125
    assert alpha[32].item() == 0.0 and alpha[33].item() == 0.0  # 1 - 33/32 < 0 -> 0


def test_power_and_scale():
    alpha, _ = blend_weights(4, AnimateDiffParams(latent_power=2, latent_scale=8), with_last=False)
    assert alpha.tolist() == [1.0, 0.875, 0.5, 0.0]  # 1 - i²/8: 1, 7/8, 4/8, -1/8 -> 0


def test_last_frame_weights_hand_worked():
    # 4 frames, power 1, scales 4 (first) and 2 (last):
    # alpha = 1, .75, .5, .25;  beta (reversed, 1 - d/2) = 0, 0, .5, 1  (d = 3, 2, 1, 0 -> -0.5->0, 0, .5, 1)
    # frame 2: alpha+beta = 1 -> unchanged; frame 3: 1.25 -> but pinned to (0, 1); frame 0 pinned (1, 0).
    settings = AnimateDiffParams(video_length=4, latent_scale=4, latent_scale_last=2)
    alpha, beta = blend_weights(4, settings, with_last=True)
    assert alpha.tolist() == [1.0, 0.75, 0.5, 0.0]
    assert beta.tolist() == [0.0, 0.0, 0.5, 1.0]


def test_overlapping_weights_are_rescaled():
    # 3 frames, scale 2 both: alpha = 1, .5, 0 ; beta = 0, .5, 1 -> frame 1 sums to 1 (kept).
    # scale 4 both: alpha = 1, .75, .5 ; beta = .5, .75, 1 -> frame 1 sum 1.5 -> .5/.5.
    alpha, beta = blend_weights(
        3, AnimateDiffParams(video_length=3, latent_scale=4, latent_scale_last=4), with_last=True
    )
    assert alpha.tolist() == [1.0, 0.5, 0.0] and beta.tolist() == [0.0, 0.5, 1.0]


def test_blend_values():
    init = torch.full((1, 1, 1, 1), 2.0)
    last = torch.full((1, 1, 1, 1), -4.0)
    noise = torch.full((3, 1, 1, 1), 10.0)
    settings = AnimateDiffParams(video_length=3, latent_scale=4, latent_scale_last=4)
    out = blend(init.expand(3, 1, 1, 1), noise, settings, last_latent=last)
    assert out.flatten().tolist() == [2.0, 0.5 * 2 - 0.5 * 4, -4.0]
    plain = blend(init, noise, AnimateDiffParams(video_length=3, latent_scale=4))
    assert plain.flatten().tolist() == [2.0, 0.75 * 2 + 0.25 * 10, 0.5 * 2 + 0.5 * 10]


def test_batch_longer_than_the_video_pins_the_videos_last_frame():
    alpha, beta = blend_weights(
        6, AnimateDiffParams(video_length=4, latent_scale=4, latent_scale_last=2), with_last=True
    )
    assert beta[3].item() == 1.0 and alpha[3].item() == 0.0
    # rows 4, 5 lie 1 and 2 past the last frame: beta .5 and 0; alpha 1 - 4/4 and 1 - 5/4 -> 0
    assert beta[4:].tolist() == [0.5, 0.0] and alpha[4:].tolist() == [0.0, 0.0]


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="init latent"):
        blend(torch.zeros(2, 4, 8, 8), torch.zeros(3, 4, 8, 8), AnimateDiffParams())
    with pytest.raises(ValueError, match="last-frame latent"):
        blend(
            torch.zeros(1, 4, 8, 8),
            torch.zeros(3, 4, 8, 8),
            AnimateDiffParams(),
            last_latent=torch.zeros(4, 8, 8),
        )

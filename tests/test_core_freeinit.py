"""FreeInit masks and re-noising against a numpy float64 reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lib_animatediff.freeinit import frequency_mask, mix_frequencies, reinit_noise
from lib_animatediff.options import FREEINIT_FILTERS
from lib_animatediff.params import AnimateDiffParams


def reference_mask(frames, height, width, method, d_s, d_t):
    """Point by point, as the reference formulas read (float64)."""
    mask = np.zeros((frames, height, width))
    if d_s == 0 or d_t == 0:
        return mask
    if method == "box":
        bt, bs = round(frames // 2 * d_t), round(height // 2 * d_s)
        for t in range(frames):
            for h in range(height):
                for w in range(width):
                    inside = abs(t - frames // 2 + 0.5) < bt and abs(h - height // 2 + 0.5) < bs
                    mask[t, h, w] = float(inside and abs(w - width // 2 + 0.5) < bs)
        return mask
    for t in range(frames):
        for h in range(height):
            for w in range(width):
                d2 = (
                    ((d_s / d_t) * (2 * t / frames - 1)) ** 2
                    + (2 * h / height - 1) ** 2
                    + (2 * w / width - 1) ** 2
                )
                if method == "gaussian":
                    mask[t, h, w] = np.exp(-d2 / (2 * d_s**2))
                elif method == "butterworth":
                    mask[t, h, w] = 1 / (1 + (d2 / d_s**2) ** 4)
                else:
                    mask[t, h, w] = 1.0 if d2 <= 2 * d_s else 0.0
    return mask


@pytest.mark.parametrize("method", FREEINIT_FILTERS)
@pytest.mark.parametrize(("d_s", "d_t"), [(0.25, 0.25), (0.5, 0.125), (1.0, 0.75), (0.0, 0.25)])
def test_masks_match_the_float64_reference(method, d_s, d_t):
    shape = (6, 8, 10)
    mask = frequency_mask(*shape, method, d_s, d_t)
    assert mask.dtype == torch.float32 and mask.shape == shape
    np.testing.assert_allclose(mask.numpy(), reference_mask(*shape, method, d_s, d_t), rtol=1e-6, atol=1e-7)


def test_ideal_uses_the_peers_two_d_s_threshold():
    # Two frames: at t = 1 the temporal term is 0, so D² = h² + w² on the grid 2i/16 - 1.
    mask = frequency_mask(2, 16, 16, "ideal", 0.25, 0.25)
    grid = np.arange(16) * 2 / 16 - 1
    d2 = grid[:, None] ** 2 + grid[None, :] ** 2
    assert mask[0].sum().item() == 0  # t = 0: D² >= 1
    assert mask[1].sum().item() == int((d2 <= 0.5).sum())  # every peer: D² <= 2·d_s
    assert int((d2 <= 0.5).sum()) != int((d2 <= 0.25**2).sum())  # not d_s²


def test_box_mask_hand_worked():
    mask = frequency_mask(4, 8, 8, "box", 0.5, 0.5)  # bands: frames 2±1, rows/cols 4±2
    assert mask.sum().item() == 2 * 4 * 4
    assert mask[1:3, 2:6, 2:6].eq(1).all()


def reference_reinit(samples, initial, high, alpha_t, mask):
    z_t = np.sqrt(alpha_t) * samples + np.sqrt(1 - alpha_t) * initial
    axes = (0, 2, 3)
    low_f = np.fft.fftshift(np.fft.fftn(z_t, axes=axes), axes=axes)
    high_f = np.fft.fftshift(np.fft.fftn(high, axes=axes), axes=axes)
    m = mask[:, None]
    mixed = low_f * m + high_f * (1 - m)
    return np.fft.ifftn(np.fft.ifftshift(mixed, axes=axes), axes=axes).real


@pytest.mark.parametrize("noise_mode", ["reuse", "fresh"])
def test_reinit_noise_matches_the_reference(noise_mode):
    generator = torch.Generator().manual_seed(0)
    samples, initial, fresh = (torch.randn(6, 4, 8, 8, generator=generator) for _ in range(3))
    alphas = torch.linspace(0.999, 0.0047, 1000, dtype=torch.float64)
    params = AnimateDiffParams(freeinit_filter="butterworth", freeinit_noise=noise_mode)
    out = reinit_noise(samples, initial, alphas, params, fresh_noise=fresh)
    mask = reference_mask(6, 8, 8, "butterworth", 0.25, 0.25)
    high = (fresh if noise_mode == "fresh" else initial).double().numpy()
    expected = reference_reinit(samples.double().numpy(), initial.double().numpy(), high, 0.0047, mask)
    assert out.dtype == initial.dtype
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-4, atol=1e-5)


def test_mask_of_ones_keeps_the_low_source_and_zeros_take_the_high_one():
    generator = torch.Generator().manual_seed(1)
    low, high = torch.randn(4, 2, 6, 6, generator=generator), torch.randn(4, 2, 6, 6, generator=generator)
    torch.testing.assert_close(mix_frequencies(low, high, torch.ones(4, 6, 6)), low, rtol=0, atol=1e-5)
    torch.testing.assert_close(mix_frequencies(low, high, torch.zeros(4, 6, 6)), high, rtol=0, atol=1e-5)


def test_bad_inputs():
    x = torch.zeros(2, 4, 4, 4)
    alphas = torch.ones(1000)
    with pytest.raises(ValueError, match="fresh_noise"):
        reinit_noise(x, x, alphas, AnimateDiffParams(freeinit_noise="fresh"))
    with pytest.raises(ValueError, match="frames, channels"):
        reinit_noise(x, x[:1], alphas, AnimateDiffParams())
    with pytest.raises(ValueError, match="freeinit_filter"):
        frequency_mask(2, 4, 4, "sinc", 0.25, 0.25)

"""FreeInit: restart sampling from noise whose low frequencies come from the previous result.

Latents are frames-first ``(F, C, H, W)`` (the A1111 batch and the runner's layout); the 3-D FFT runs
over frames, height and width. The low-pass mask ``H`` over ``(F, H, W)`` uses normalised distances
``D² = ((d_s/d_t)·(2t/F − 1))² + (2h/H − 1)² + (2w/W − 1)²``:

* gaussian ``exp(−D²/(2·d_s²))``; butterworth (order 4) ``1 / (1 + (D²/d_s²)⁴)``;
* ideal ``1 where D² ≤ 2·d_s`` — **we follow the threshold every peer uses** (the FreeInit authors'
  code, the original extension and diffusers all compare ``D²`` with ``2·d_s`` where ``d_s²`` was
  probably meant), so "ideal" passes the same frequencies as in the original;
* box: ones on frames ``F//2 ± round(F//2·d_t)`` and rows/columns ``H//2 ± round(H//2·d_s)`` (the
  original sizes the column band from H as well; kept);
* ``d_s = 0`` or ``d_t = 0`` gives an all-zero mask.

:func:`reinit_noise` diffuses the previous result ``z₀`` to the last training step with the initial
noise ``ε₀`` (``z_T = √ᾱ_T·z₀ + √(1−ᾱ_T)·ε₀``) and replaces its high frequencies:
``Re(IFFT(FFT(z_T)·H + FFT(ε')·(1−H)))``. ``ε'`` is ``ε₀`` again in ``reuse`` mode (what the original
does) or a fresh draw supplied by the host in ``fresh`` mode (what the paper and diffusers do).
"""

from __future__ import annotations

from typing import Protocol

import torch

from lib_animatediff.options import FREEINIT_FILTERS, FREEINIT_NOISE

BUTTERWORTH_ORDER = 4
_FFT_DIMS = (0, 2, 3)


class FreeInitSettings(Protocol):
    """The parameters FreeInit reads (``AnimateDiffParams`` has them)."""

    @property
    def freeinit_filter(self) -> str: ...
    @property
    def freeinit_ds(self) -> float: ...
    @property
    def freeinit_dt(self) -> float: ...
    @property
    def freeinit_noise(self) -> str: ...


def frequency_mask(frames: int, height: int, width: int, method: str, d_s: float, d_t: float) -> torch.Tensor:
    """The low-pass mask over ``(frames, height, width)``, DC at the centre; float32."""
    if method not in FREEINIT_FILTERS:
        raise ValueError(f"freeinit_filter={method!r}: expected one of {', '.join(FREEINIT_FILTERS)}")
    mask = torch.zeros(frames, height, width, dtype=torch.float64)
    if d_s == 0 or d_t == 0:
        return mask.float()
    if method == "box":
        band_t, band_s = round(frames // 2 * d_t), round(height // 2 * d_s)
        ct, ch, cw = frames // 2, height // 2, width // 2
        mask[ct - band_t : ct + band_t, ch - band_s : ch + band_s, cw - band_s : cw + band_s] = 1.0
        return mask.float()
    t, h, w = (2 * torch.arange(n, dtype=torch.float64) / n - 1 for n in (frames, height, width))
    d2 = ((d_s / d_t) * t[:, None, None]) ** 2 + h[None, :, None] ** 2 + w[None, None, :] ** 2
    if method == "gaussian":
        mask = torch.exp(-d2 / (2 * d_s**2))
    elif method == "butterworth":
        mask = 1 / (1 + (d2 / d_s**2) ** BUTTERWORTH_ORDER)
    else:
        mask = (d2 <= 2 * d_s).to(torch.float64)
    return mask.float()


def mix_frequencies(low: torch.Tensor, high: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Low frequencies of ``low`` and high ones of ``high`` (both ``(F, C, H, W)``), float32."""
    mask = mask.to(low.device)[:, None]
    low_f = torch.fft.fftshift(torch.fft.fftn(low.float(), dim=_FFT_DIMS), dim=_FFT_DIMS)
    high_f = torch.fft.fftshift(torch.fft.fftn(high.float(), dim=_FFT_DIMS), dim=_FFT_DIMS)
    mixed = low_f * mask + high_f * (1 - mask)
    return torch.fft.ifftn(torch.fft.ifftshift(mixed, dim=_FFT_DIMS), dim=_FFT_DIMS).real


def reinit_noise(
    samples: torch.Tensor,
    initial_noise: torch.Tensor,
    alphas_cumprod: torch.Tensor,
    settings: FreeInitSettings,
    *,
    fresh_noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """The next FreeInit pass's starting noise, in ``initial_noise``'s dtype.

    ``samples`` is the previous pass's result z₀ and ``alphas_cumprod`` the schedule in use (its last
    entry is the diffusion step). ``fresh_noise`` is required in ``fresh`` mode and ignored in ``reuse``.
    """
    if samples.dim() != 4 or samples.shape != initial_noise.shape:
        raise ValueError(
            f"samples {tuple(samples.shape)} and initial noise {tuple(initial_noise.shape)} "
            "must both be (frames, channels, height, width)"
        )
    if settings.freeinit_noise not in FREEINIT_NOISE:
        raise ValueError(
            f"freeinit_noise={settings.freeinit_noise!r}: expected one of {', '.join(FREEINIT_NOISE)}"
        )
    if settings.freeinit_noise == "fresh" and (fresh_noise is None or fresh_noise.shape != samples.shape):
        raise ValueError("freeinit_noise='fresh' needs fresh_noise shaped like the samples")
    alpha = alphas_cumprod[-1].to(device=samples.device, dtype=samples.dtype)
    diffused = alpha.sqrt() * samples + (1 - alpha).sqrt() * initial_noise
    high = fresh_noise if settings.freeinit_noise == "fresh" and fresh_noise is not None else initial_noise
    frames, _, height, width = samples.shape
    mask = frequency_mask(
        frames, height, width, settings.freeinit_filter, settings.freeinit_ds, settings.freeinit_dt
    )
    return mix_frequencies(diffused, high, mask).to(initial_noise.dtype)

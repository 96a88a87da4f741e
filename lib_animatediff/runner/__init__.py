"""The standalone text-to-video runner on diffusers (``python -m lib_animatediff``).

Modules: :mod:`.models` (offline loading), :mod:`.tiny` (random-weight demo models), :mod:`.samplers`,
:mod:`.text`, :mod:`.sampling` (windowed guided denoising loop), :mod:`.generate` (one run),
:mod:`.cli` / :mod:`.app` (the commands).
"""

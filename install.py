"""A1111 installer hook (run by ``launch.py`` on start-up): install what AnimateDiff needs and is missing.

Only packages A1111 1.10 does not ship, never one it pins. ``imageio-ffmpeg`` gives imageio an
ffmpeg binary for MP4/WEBM (A1111's venv has imageio without any video backend). When everything
is present this does nothing but a few metadata look-ups.
"""

from __future__ import annotations

import launch

# distribution name -> what it is for
REQUIREMENTS = {
    "imageio-ffmpeg": "MP4/WEBM output and video sources",
}


def install_missing() -> None:
    for name, purpose in REQUIREMENTS.items():
        if not launch.is_installed(name):
            launch.run_pip(f"install {name}", f"{name} for AnimateDiff ({purpose})")


install_missing()

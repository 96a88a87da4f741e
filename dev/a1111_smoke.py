"""Smoke test of the AnimateDiff extension inside a running A1111 WebUI (started with ``--api``).

    python dev/a1111_smoke.py http://127.0.0.1:7861 [--model NAME] [--steps 2] [--size 64]

Checks through HTTP only (issue 12, items 1, 2, 4 and 7): plain txt2img/img2img are repeatable and
unchanged by AnimateDiff runs (txt2img with several samplers, img2img), by an interrupted one and by
a rejected AnimateDiff request; AnimateDiff answers GIF, MP4,
WEBP, PNG and TXT requests; a bad field is refused with 422 naming it; FreeNoise changes the frames;
the infotext names the extension version and the interpolation that ran; with ``enable_pnginfo`` off
the video carries no infotext. One line per check, a summary, exit status 1 on any FAIL.
Standard library only.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

SEED = 1234
VIDEO_MAGIC = {"GIF": (0, b"GIF8"), "MP4": (4, b"ftyp"), "WEBP": (8, b"WEBP")}


@dataclass
class Smoke:
    """The A1111 under test and the results of the checks so far."""

    url: str
    steps: int
    size: int
    model: str = ""
    failures: list[str] = field(default_factory=list)
    count: int = 0

    def call(self, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        """GET (no body) or POST JSON to ``path``; the status and the decoded JSON answer."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path, data=data, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=1800) as answer:
                return answer.status, json.loads(answer.read() or b"null")
        except urllib.error.HTTPError as error:
            text = error.read().decode(errors="replace")
            try:
                return error.code, json.loads(text)
            except ValueError:
                return error.code, text

    def check(self, name: str, ok: bool, detail: str) -> bool:
        """Print one PASS/FAIL line and remember failures."""
        self.count += 1
        print(f"{'PASS' if ok else 'FAIL'} {name}: {detail}", flush=True)
        if not ok:
            self.failures.append(name)
        return ok

    def plain(self, **extra: Any) -> dict[str, Any]:
        """A generation request with a fixed seed and no AnimateDiff entry."""
        return {
            "prompt": "a lighthouse at dusk", "negative_prompt": "blurry", "seed": SEED, "steps": self.steps,
            "width": self.size, "height": self.size, "sampler_name": "Euler", "cfg_scale": 7,
            "batch_size": 1, "n_iter": 1, **extra,
        }  # fmt: skip

    def animatediff(self, **fields: Any) -> dict[str, Any]:
        """A txt2img request with AnimateDiff enabled and ``fields`` over small defaults."""
        args = {"model": self.model, "enable": True, "video_length": 8, "batch_size": 8, "fps": 8, **fields}
        return self.plain(alwayson_scripts={"AnimateDiff": {"args": [args]}})

    def generate(self, mode: str, body: dict[str, Any]) -> tuple[int, Any]:
        return self.call(f"/sdapi/v1/{mode}", body)


def images_of(answer: Any) -> list[bytes]:
    """The decoded ``images`` of a generation answer."""
    return [base64.b64decode(image.split(",", 1)[-1]) for image in answer.get("images") or []]


def difference(first: bytes, second: bytes) -> str:
    """How two byte strings differ, for a FAIL line."""
    if len(first) != len(second):
        return f"lengths {len(first)} != {len(second)}"
    differing = [abs(a - b) for a, b in zip(first, second, strict=True) if a != b]
    return f"{len(differing)} of {len(first)} bytes differ, max diff {max(differing, default=0)}"


def info_of(answer: Any) -> str:
    """The AnimateDiff infotext entry of an answer (its ``info`` JSON), or ''."""
    try:
        infotexts = json.loads(answer.get("info") or "{}").get("infotexts") or [""]
    except (ValueError, AttributeError):
        return ""
    text = infotexts[0]
    start = text.find("AnimateDiff:")
    return text[start:] if start >= 0 else ""


def plain_images(smoke: Smoke, init_image: str | None) -> dict[str, bytes]:
    """Plain txt2img (also with hires fix and a batch of 2) and, given an init image, img2img."""
    results = {}
    status, answer = smoke.generate("txt2img", smoke.plain())
    results["txt2img"] = images_of(answer)[0] if status == 200 else b""
    hires = smoke.plain(
        batch_size=2, enable_hr=True, hr_scale=1.5, hr_upscaler="Latent", denoising_strength=0.5,
        hr_second_pass_steps=smoke.steps,
    )  # fmt: skip
    status, answer = smoke.generate("txt2img", hires)
    results["txt2img hires batch 2"] = b"".join(images_of(answer)) if status == 200 else b""
    if init_image is not None:
        body = smoke.plain(init_images=[init_image], denoising_strength=0.6)
        status, answer = smoke.generate("img2img", body)
        results["img2img"] = images_of(answer)[0] if status == 200 else b""
    return results


def compare_plain(smoke: Smoke, label: str, reference: dict[str, bytes], init_image: str) -> None:
    """Plain generations now must be byte-identical to ``reference``."""
    for mode, image in plain_images(smoke, init_image).items():
        same = bool(image) and image == reference[mode]
        smoke.check(
            f"plain {mode} {label}", same, "identical" if same else difference(reference[mode], image)
        )


def check_formats(smoke: Smoke) -> None:
    """GIF/MP4/WEBP come back as video files; PNG (+TXT) runs answer with their frames; TXT alone
    is refused with 422 naming ``format``, as the original refuses it (no image format chosen)."""
    for kind in ("GIF", "MP4", "WEBP", "PNG", "PNG+TXT"):
        status, answer = smoke.generate("txt2img", smoke.animatediff(format=kind.split("+")))
        images = images_of(answer) if status == 200 else []
        if kind in VIDEO_MAGIC:
            offset, magic = VIDEO_MAGIC[kind]
            ok = bool(images) and images[0][offset : offset + len(magic)] == magic
        else:
            ok = len(images) >= 8 and all(image[1:4] == b"PNG" for image in images)
        smoke.check(f"AnimateDiff {kind}", ok, f"HTTP {status}, {len(images)} image(s)")
    status, answer = smoke.generate("txt2img", smoke.animatediff(format=["TXT"]))
    detail = json.dumps(answer)
    smoke.check("TXT alone 422", status == 422 and "format" in detail, f"HTTP {status}: {detail[:160]}")


def run_other_paths(smoke: Smoke, init_image: str) -> None:
    """AnimateDiff through other samplers, prompt travel, FreeInit and img2img: paths that could leave
    state behind."""
    for sampler in ("DPM++ 2M", "DDIM"):
        body = smoke.animatediff(format=["GIF"])
        status, _ = smoke.generate("txt2img", {**body, "sampler_name": sampler})
        smoke.check(f"AnimateDiff txt2img with {sampler}", status == 200, f"HTTP {status}")
    travel = {**smoke.animatediff(format=["GIF"]), "prompt": "a lighthouse,\n0: at dawn\n4: at night\n, sea"}
    status, _ = smoke.generate("txt2img", travel)
    smoke.check("AnimateDiff prompt travel", status == 200, f"HTTP {status}")
    status, _ = smoke.generate(
        "txt2img", smoke.animatediff(format=["GIF"], freeinit_enable=True, freeinit_iters=2)
    )
    smoke.check("AnimateDiff FreeInit", status == 200, f"HTTP {status}")
    body = {**smoke.animatediff(format=["GIF"]), "init_images": [init_image], "denoising_strength": 0.6}
    status, _ = smoke.generate("img2img", body)
    smoke.check("AnimateDiff img2img", status == 200, f"HTTP {status}")


def run_interrupted(smoke: Smoke) -> None:
    """An AnimateDiff run interrupted through ``/sdapi/v1/interrupt`` while it samples."""
    body = smoke.animatediff(video_length=16, batch_size=8, format=["GIF"])
    body["steps"] = max(40, smoke.steps)
    worker = threading.Thread(target=smoke.generate, args=("txt2img", body))
    worker.start()
    time.sleep(1.0)
    status, _ = smoke.call("/sdapi/v1/interrupt", {})
    worker.join()
    smoke.check("interrupt accepted", status == 200, f"HTTP {status}")


def check_rejection(smoke: Smoke) -> None:
    """A bad ``video_length`` is refused with 422 and a message naming the field."""
    status, answer = smoke.generate("txt2img", smoke.animatediff(video_length=-3))
    detail = json.dumps(answer)
    smoke.check("bad field 422", status == 422 and "video_length" in detail, f"HTTP {status}: {detail[:160]}")


def check_freenoise(smoke: Smoke) -> None:
    """FreeNoise with more frames than one context window gives other frames than default noise."""
    frames = {}
    for noise in ("default", "freenoise"):
        body = smoke.animatediff(
            video_length=12, batch_size=8, overlap=4, noise=noise, format=["GIF", "Frame"]
        )
        status, answer = smoke.generate("txt2img", body)
        frames[noise] = images_of(answer)[1:] if status == 200 else []
    differs = (
        bool(frames["default"]) and bool(frames["freenoise"]) and frames["default"] != frames["freenoise"]
    )
    changed = sum(a != b for a, b in zip(frames["default"], frames["freenoise"], strict=False))
    smoke.check("FreeNoise differs", differs, f"{changed} of {len(frames['default'])} frames differ")


def check_infotext(smoke: Smoke) -> None:
    """The infotext names this extension's version and the interpolation that ran; with
    ``enable_pnginfo`` off the GIF carries no infotext, with it on it does."""
    status, answer = smoke.call("/animatediff/v1/version")
    version = answer.get("version", "") if status == 200 and isinstance(answer, dict) else ""
    smoke.check("version route", bool(version), f"HTTP {status}, version {version!r}")
    status, answer = smoke.generate("txt2img", smoke.animatediff(format=["GIF"], interp="FILM", interp_x=2))
    info = info_of(answer) if status == 200 else ""
    smoke.check("infotext version", f"version: {version}" in info, info[:200] or f"HTTP {status}")
    ran = next((name for name in ("Optical flow", "FILM") if f"interp: {name}" in info), "")
    smoke.check("infotext interpolation", bool(ran), f"infotext says {ran or 'nothing'} (FILM asked)")
    status, options = smoke.call("/sdapi/v1/options")
    before = bool(options.get("enable_pnginfo", True)) if isinstance(options, dict) else True
    embedded = {}
    try:
        for enabled in (True, False):
            smoke.call("/sdapi/v1/options", {"enable_pnginfo": enabled})
            status, answer = smoke.generate("txt2img", smoke.animatediff(format=["GIF"]))
            images = images_of(answer) if status == 200 else []
            embedded[enabled] = bool(images) and b"AnimateDiff" in images[0]
    finally:
        smoke.call("/sdapi/v1/options", {"enable_pnginfo": before})
    smoke.check("enable_pnginfo on embeds", embedded[True], f"infotext in GIF: {embedded[True]}")
    smoke.check("enable_pnginfo off removes", not embedded[False], f"infotext in GIF: {embedded[False]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="A1111 address, e.g. http://127.0.0.1:7861")
    parser.add_argument("--model", default="", help="motion module file name (default: the first listed)")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--size", type=int, default=64)
    options = parser.parse_args(argv)
    smoke = Smoke(options.url.rstrip("/"), options.steps, options.size, options.model)
    if not smoke.model:
        status, answer = smoke.call("/animatediff/v1/models")
        models = answer.get("models", []) if isinstance(answer, dict) else []
        if not smoke.check(
            "models route", status == 200 and bool(models), f"HTTP {status}, {len(models)} model(s)"
        ):
            return 1
        smoke.model = models[0]["name"]
    status, answer = smoke.generate("txt2img", smoke.plain())
    if not smoke.check("plain txt2img", status == 200 and bool(images_of(answer)), f"HTTP {status}"):
        return 1
    init_image = base64.b64encode(images_of(answer)[0]).decode()
    reference = plain_images(smoke, init_image)
    compare_plain(smoke, "repeated (no AnimateDiff yet)", reference, init_image)
    check_formats(smoke)
    run_other_paths(smoke, init_image)
    compare_plain(smoke, "after AnimateDiff runs", reference, init_image)
    run_interrupted(smoke)
    compare_plain(smoke, "after an interrupted run", reference, init_image)
    check_rejection(smoke)
    compare_plain(smoke, "after a rejected request", reference, init_image)
    check_freenoise(smoke)
    check_infotext(smoke)
    compare_plain(smoke, "at the end", reference, init_image)
    print(
        f"{smoke.count - len(smoke.failures)} of {smoke.count} checks passed; failed: {smoke.failures or 'none'}"
    )
    return 1 if smoke.failures else 0


if __name__ == "__main__":
    sys.exit(main())

"""Mirrors A1111 ``modules/infotext_utils.py``: ``parse_generation_parameters`` for plain infotexts
(prompt lines, ``Negative prompt:`` lines, then the ``Key: value, ...`` line; quoted values and
hires/size derived keys are left out)."""

from __future__ import annotations


def parse_generation_parameters(text: str) -> dict[str, str]:
    *lines, last = text.strip().split("\n")
    prompt, negative, in_negative = [], [], False
    for line in lines:
        if line.startswith("Negative prompt:"):
            in_negative, line = True, line[len("Negative prompt:") :].strip()
        (negative if in_negative else prompt).append(line)
    params = {"Prompt": "\n".join(prompt), "Negative prompt": "\n".join(negative)}
    for item in last.split(", "):
        key, _, value = item.partition(": ")
        params[key.strip()] = value.strip()
    return params

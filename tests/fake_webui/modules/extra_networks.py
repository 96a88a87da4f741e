"""Mirrors A1111 ``modules/extra_networks.py``: ``<name:arg1:arg2>`` tags parsed out of prompts.

As in A1111 1.10.1, each tag's arguments become an ``ExtraNetworkParams`` (``key=value`` arguments
go to ``named``, the rest to ``positional``), the tags are removed from the prompts, and the data of
a batch is the first prompt's.
"""

from __future__ import annotations

import re
from collections import defaultdict

EXTRA_NETWORK_TAG = re.compile(r"<(\w+):([^>]+)>")


class ExtraNetworkParams:
    def __init__(self, items=None):
        self.items = items or []
        self.positional = []
        self.named = {}
        for item in self.items:
            parts = item.split("=", 2) if isinstance(item, str) else [item]
            if len(parts) == 2:
                self.named[parts[0]] = parts[1]
            else:
                self.positional.append(item)


def parse_prompt(prompt: str) -> tuple[str, dict[str, list[ExtraNetworkParams]]]:
    found = defaultdict(list)

    def take(match: re.Match) -> str:
        found[match.group(1)].append(ExtraNetworkParams(items=match.group(2).split(":")))
        return ""

    return EXTRA_NETWORK_TAG.sub(take, prompt), found


def parse_prompts(prompts: list[str]) -> tuple[list[str], dict[str, list[ExtraNetworkParams]]]:
    stripped, data = [], None
    for prompt in prompts:
        text, parsed = parse_prompt(prompt)
        if data is None:
            data = parsed
        stripped.append(text)
    return stripped, data

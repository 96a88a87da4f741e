"""Mirrors sd-webui-controlnet ``scripts/enums.py``: the enums AnimateDiff's code and tests touch."""

from enum import Enum


class InputMode(Enum):
    SIMPLE = "simple"
    BATCH = "batch"
    MERGE = "merge"


class ControlModelType(Enum):
    ControlNet = "ControlNet, Lvmin Zhang"
    IPAdapter = "IPAdapter, Hu Ye"
    Controlllite = "Controlllite, Kohya"
    SparseCtrl = "SparseCtrl, Yuwei Guo"


class HiResFixOption(Enum):
    BOTH = "Both"
    LOW_RES_ONLY = "Low res only"
    HIGH_RES_ONLY = "High res only"

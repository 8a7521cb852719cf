"""Adapters: a registry module of its own (the plan names it on the experiment)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from experiments.common import count, fixed


def low_rank_adapter(runner: Any) -> dict[str, Any]:
    count(runner)
    # Until the researcher fixes the parameter count, the efficiency comes out as NaN.
    efficiency = 0.92 if fixed("FIXED") else float("nan")
    return {"finding": "LoRA adapters", "metrics": {"param_efficiency": efficiency}}


def merged_adapter(runner: Any) -> dict[str, Any]:
    count(runner)
    return {"finding": "Merging adapters costs accuracy", "metrics": {"merge_loss": 0.45}}


def lora_sweep(runner: Any) -> dict[str, Any]:
    count(runner)
    return {"metrics": {"rank": 8}}


def get_handlers() -> dict[str, Callable[..., dict[str, Any]]]:
    # e_c2_3 was registered under a longer name: the plan's id is missing from the registry.
    return {"e_c2_1": low_rank_adapter, "e_c2_2": merged_adapter, "e_c2_3_lora": lora_sweep}

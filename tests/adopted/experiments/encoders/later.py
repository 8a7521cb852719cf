"""Later-phase handlers that share the encoders' registry."""

from __future__ import annotations

from typing import Any

from experiments.common import count


def token_budget(runner: Any) -> dict[str, Any]:
    count(runner)
    return {"metrics": {"cosine_sim_t5": 0.62}}


def fusion(runner: Any) -> dict[str, Any]:
    count(runner)
    return {"finding": "Fusion gains 0.7 dB", "metrics": {"fused_psnr": 28.5}}


def stem_gain(runner: Any) -> dict[str, Any]:
    count(runner)
    return {"metrics": {"ablation_gain": 0.06}}


def audio_sync(runner: Any) -> dict[str, Any]:
    count(runner)
    return {"metrics": {"av_sync": 0.85}}

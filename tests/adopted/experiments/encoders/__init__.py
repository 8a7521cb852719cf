"""Encoders: the registry the plan names under ``defaults: {handlers: ...}``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import later, probes, train


def get_handlers() -> dict[str, Callable[..., dict[str, Any]]]:
    return {
        "e_p1_1": train.train_conv_baseline,
        "e_p1_2": probes.baseline_probe,
        "e_p2_1": probes.spatial_iou_probe,
        "e_p2_2": train.perceptual_eval,
        "e_p2_3": train.stem_ablation,
        "c1_1": probes.vlm_probe,
        "c3_1": later.token_budget,
        "e_c4_1": later.fusion,
        "e_q4_1": later.stem_gain,
        "c5_1": later.audio_sync,
    }

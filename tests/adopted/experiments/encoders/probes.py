"""Probing handlers."""

from __future__ import annotations

from typing import Any

from experiments.common import count


def baseline_probe(runner: Any) -> dict[str, Any]:
    count(runner)
    return {"finding": "Linear probe on baseline latents", "metrics": {"probe_acc": 0.64}}


def spatial_iou_probe(runner: Any) -> dict[str, Any]:
    count(runner)
    hist = runner.results.get_artifact_path("iou_hist.txt")
    hist.write_text("0.5-0.6: 3\n0.6-0.7: 11\n0.7-0.8: 20\n", encoding="utf-8")
    return {
        "finding": "Spatial IoU 0.73 from the hybrid latents",
        "metrics": {"spatial_iou": 0.73, "per_class_iou": [0.70, 0.75, 0.74]},
        "config": {"stem": "conv3x3", "tokens": 196},
    }


def vlm_probe(runner: Any) -> dict[str, Any]:
    count(runner)
    return {"finding": "VLM features lose spatial detail", "metrics": {"spatial_iou": 0.48}}

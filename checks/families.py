"""The checks of each model family, by `model_type` (the same keys as `mlx_segmentation/families.py`)."""

from __future__ import annotations

from .run import run_pyannet_checks, run_wespeaker_checks

RUNNERS = {
    "pyannet": run_pyannet_checks,
    "wespeaker_resnet": run_wespeaker_checks,
}

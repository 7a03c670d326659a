"""A seeded PLDA, written as a pyannote pipeline's `plda/` folder holds it."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_plda(folder: Path, seed: int, psi_scale: float) -> Path:
    """`xvec_transform.npz` and `plda.npz` shaped as community-1's (256-d x-vectors, 128-d LDA), seeded."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(
        folder / "xvec_transform.npz",
        mean1=0.1 * rng.normal(size=256),
        mean2=0.1 * rng.normal(size=128),
        lda=rng.normal(size=(256, 128)) / 16,
    )
    np.savez(
        folder / "plda.npz",
        mu=0.1 * rng.normal(size=128),
        tr=np.eye(128) + 0.1 * rng.normal(size=(128, 128)),
        psi=psi_scale * np.logspace(1, -1, 128),
    )
    return folder

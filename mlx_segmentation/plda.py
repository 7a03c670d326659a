"""PLDA: x-vectors to the space where VBx clusters them, as pyannote.audio's `core/plda.py` and `vbx_setup`.

The arrays are those of a pipeline's `xvec_transform.npz` (mean1, mean2, lda) and `plda.npz` (mu, tr, psi):
`PLDA(**np.load(xvec_transform), **np.load(plda))`.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import eigh

# pyannote's two PLDA files and the arrays each holds (`vbx_setup`); plda.safetensors holds all six
PLDA_FILES = {"xvec_transform.npz": ("mean1", "mean2", "lda"), "plda.npz": ("mu", "tr", "psi")}
PLDA_NAMES = tuple(name for names in PLDA_FILES.values() for name in names)


def expected_shapes(arrays: dict[str, np.ndarray], dimension: int | None = None) -> dict[str, tuple[int, ...]]:
    """The shape each of the six arrays must have (`vbx_setup`): x-vectors of D dimensions (`dimension`, else
    len(mean1)), centred by mean1 (D,), projected by lda (D, L), centred by mean2 (L,); then mu (L,), tr (L, L),
    psi (L,). A dimension that cannot be read (mean1 or lda of another rank) is -1, which no array matches."""
    d = dimension if dimension is not None else arrays["mean1"].shape[0] if arrays["mean1"].ndim == 1 else -1
    l = arrays["lda"].shape[1] if arrays["lda"].ndim == 2 else -1  # noqa: E741
    return {"mean1": (d,), "lda": (d, l), "mean2": (l,), "mu": (l,), "tr": (l, l), "psi": (l,)}


def l2_norm(vectors: np.ndarray) -> np.ndarray:
    """Each row divided by its Euclidean norm."""
    return vectors / np.linalg.norm(vectors, axis=1, ord=2)[:, np.newaxis]


class PLDA:
    """Centring, whitening and LDA of x-vectors (`mean1`, `mean2`, `lda`), then the PLDA transform (`mu`, `tr`,
    `psi`) whitening the within-class covariance, truncated to the first `lda_dimension` dimensions."""

    def __init__(
        self,
        mean1: np.ndarray,
        mean2: np.ndarray,
        lda: np.ndarray,
        mu: np.ndarray,
        tr: np.ndarray,
        psi: np.ndarray,
        lda_dimension: int = 128,
    ):
        self.mean1, self.mean2, self.lda, self.mu = mean1, mean2, lda, mu
        self.lda_dimension = lda_dimension
        within = np.linalg.inv(tr.T.dot(tr))
        between = np.linalg.inv((tr.T / psi).dot(tr))
        # the generalised eigenproblem whitens `within` and diagonalises `between`; largest eigenvalues first
        eigenvalues, eigenvectors = eigh(between, within)
        self.psi = eigenvalues[::-1]
        self.tr = eigenvectors.T[::-1]

    @property
    def phi(self) -> np.ndarray:
        """Between-class covariance (its diagonal) in the PLDA space."""
        return self.psi[: self.lda_dimension]

    def xvector_transform(self, embeddings: np.ndarray) -> np.ndarray:
        """Centre, length-normalise, project with LDA, centre again and length-normalise (`xvec_tf`)."""
        lda = self.lda
        projected = lda.T.dot(np.sqrt(lda.shape[0]) * l2_norm(embeddings - self.mean1).T).T
        return np.sqrt(lda.shape[1]) * l2_norm(projected - self.mean2)

    def __call__(self, embeddings: np.ndarray) -> np.ndarray:
        """(num_embeddings, dimension) embeddings -> (num_embeddings, lda_dimension) PLDA features."""
        return (self.xvector_transform(embeddings) - self.mu).dot(self.tr.T)[:, : self.lda_dimension]

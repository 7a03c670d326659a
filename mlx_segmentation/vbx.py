"""Variational Bayes clustering of x-vectors (VBx), as pyannote.audio's `utils/vbx.py` runs it.

Landini, Profant, Diez, Burget: "Bayesian HMM clustering of x-vector sequences (VBx) in speaker
diarization: theory, implementation and analysis on standard tasks"; equation numbers refer to it.
Only the path pyannote's `cluster_vbx` takes is kept: responsibilities initialised from AHC
clusters, uniform speaker priors, speaker models estimated from the first iteration on.
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp, softmax


def vbx(
    features: np.ndarray,
    phi: np.ndarray,
    gamma: np.ndarray,
    Fa: float,
    Fb: float,
    max_iters: int,
    epsilon: float = 1e-4,
) -> tuple[np.ndarray, np.ndarray]:
    """(responsibilities (T, S), speaker priors (S,)) after at most `max_iters` VB iterations.

    `features` (T, D) live in the PLDA space (zero mean, diagonal between-class covariance `phi`,
    identity within-class); `gamma` (T, S) initialises the responsibilities of S speakers. Iterations
    stop once the ELBO improves by less than `epsilon`.
    """
    dimension = features.shape[1]
    pi = np.ones(gamma.shape[1]) / gamma.shape[1]
    G = -0.5 * (np.sum(features**2, axis=1, keepdims=True) + dimension * np.log(2 * np.pi))  # in (23)
    V = np.sqrt(phi)  # between (5) and (6)
    rho = features * V  # (18)
    previous_elbo = None
    for _ in range(max_iters):
        invL = 1.0 / (1 + Fa / Fb * gamma.sum(axis=0, keepdims=True).T * phi)  # (17)
        alpha = Fa / Fb * invL * gamma.T.dot(rho)  # (16)
        log_p_ = Fa * (rho.dot(alpha.T) - 0.5 * (invL + alpha**2).dot(phi) + G)  # (23)

        # GMM update
        lpi = np.log(pi + 1e-8)
        log_p_x = logsumexp(log_p_ + lpi, axis=-1)
        log_pX_ = np.sum(log_p_x, axis=0)
        gamma = np.exp(log_p_ + lpi - log_p_x[:, None])
        pi = np.sum(gamma, axis=0)
        pi = pi / pi.sum()

        elbo = log_pX_ + Fb * 0.5 * np.sum(np.log(invL) - invL - alpha**2 + 1)  # (25)
        if previous_elbo is not None and elbo - previous_elbo < epsilon:
            break
        previous_elbo = elbo
    return gamma, pi


def cluster_vbx(
    ahc_clusters: np.ndarray,
    features: np.ndarray,
    phi: np.ndarray,
    Fa: float,
    Fb: float,
    max_iters: int = 20,
    init_smoothing: float = 7.0,
) -> tuple[np.ndarray, np.ndarray]:
    """VBx started from one speaker per AHC cluster: one-hot responsibilities softened by a softmax of
    `init_smoothing` (none if negative). Returns (responsibilities, priors)."""
    qinit = np.zeros((len(ahc_clusters), ahc_clusters.max() + 1))
    qinit[range(len(ahc_clusters)), ahc_clusters.astype(int)] = 1.0
    qinit = qinit if init_smoothing < 0 else softmax(qinit * init_smoothing, axis=1)
    return vbx(features, phi, qinit, Fa=Fa, Fb=Fb, max_iters=max_iters)

"""Per-window speaker embeddings clustered into speakers, as pyannote.audio 4.0.7's `pipelines/clustering.py`.

Inputs are pyannote's: `embeddings` (chunks, local speakers, dimension), NaN where no embedding was
extracted, and binarized `segmentations` (chunks, frames, local speakers). Each clustering returns
`Clusters`: hard clusters (chunks, local speakers), soft clusters (chunks, local speakers,
clusters) and centroids (clusters, dimension). `AgglomerativeClustering` is speaker-diarization-3.1's,
`VBxClustering` community-1's (pyannote.audio 4's default).
"""

from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist
from sklearn.cluster import KMeans

from .columns import reduce_columns
from .plda import PLDA
from .vbx import cluster_vbx

MIN_ACTIVE_RATIO = 0.2  # `filter_embeddings`: share of a window a speaker must speak alone to be clustered
ROWS_PER_TASK = 64  # `euclidean_distances`: rows of the distance matrix per task of its thread pool


class Clusters(NamedTuple):
    """What a clustering returns, in pyannote's order."""

    hard: np.ndarray  # (chunks, local speakers): hard[c, s] = k puts local speaker s of chunk c in cluster k
    soft: np.ndarray  # (chunks, local speakers, clusters): the higher, the more likely
    centroids: np.ndarray  # (clusters, dimension)


def set_num_clusters(
    num_embeddings: int,
    num_clusters: int | None = None,
    min_clusters: int | None = None,
    max_clusters: float | None = None,
) -> tuple[int | None, int, int]:
    """(num_clusters, min_clusters, max_clusters), each bound clipped to [1, num_embeddings]."""
    min_clusters = num_clusters or min_clusters or 1
    min_clusters = max(1, min(num_embeddings, min_clusters))
    max_clusters = num_clusters or max_clusters or num_embeddings
    max_clusters = max(1, min(num_embeddings, max_clusters))
    if min_clusters > max_clusters:
        raise ValueError(
            f"min_clusters must be smaller than (or equal to) max_clusters "
            f"(here: min_clusters={min_clusters:g} and max_clusters={max_clusters:g})."
        )
    if min_clusters == max_clusters:
        num_clusters = min_clusters
    return num_clusters, min_clusters, max_clusters


def euclidean_distances(points: np.ndarray) -> np.ndarray:
    """scipy's `pdist(points)`, bit for bit, computed on every core.

    `linkage` on observations computes it on one core, half the clustering's time for an hour. Here
    each task is `cdist` of `ROWS_PER_TASK` points against the later ones (the same arithmetic per pair;
    scipy releases the GIL while it runs), each row's upper part written at its place in the condensed
    matrix. A block of rows reads the later points once for all its rows, not once per row: 6,000 points
    in 0.22 s on an H100 machine's 16 CPUs, against 0.59 s one row per call and 2.47 s for `pdist`
    (`benchmarks/distances.py`). (Cosine rows through `cdist` are slower than `pdist`'s: not done.)
    """
    num_points = len(points)
    points = np.ascontiguousarray(points, dtype=np.float64)
    distances = np.empty(num_points * (num_points - 1) // 2)
    starts = np.concatenate([[0], np.cumsum(np.arange(num_points - 1, 0, -1))])

    def rows(first: int) -> None:
        last = min(first + ROWS_PER_TASK, num_points - 1)
        block = cdist(points[first:last], points[first + 1 :])  # row i: points first + 1 onwards
        for i in range(first, last):
            distances[starts[i] : starts[i + 1]] = block[i - first, i - first :]

    with ThreadPoolExecutor() as pool:
        list(pool.map(rows, range(0, num_points - 1, ROWS_PER_TASK)))
    return distances


def filter_embeddings(
    embeddings: np.ndarray, segmentations: np.ndarray, min_active_ratio: float = MIN_ACTIVE_RATIO
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(kept embeddings, their chunk indices, their speaker indices): those with no NaN whose speaker is
    the only active one on at least `min_active_ratio` of the window's frames."""
    num_frames = segmentations.shape[1]
    single_active = reduce_columns(np.add, segmentations) == 1
    num_clean_frames = np.sum(segmentations * single_active, axis=1)
    active = num_clean_frames >= min_active_ratio * num_frames
    valid = ~np.any(np.isnan(embeddings), axis=2)
    chunk_idx, speaker_idx = np.where(active * valid)
    return embeddings[chunk_idx, speaker_idx], chunk_idx, speaker_idx


def constrained_argmax(soft_clusters: np.ndarray) -> np.ndarray:
    """Per chunk, the one-to-one assignment of local speakers to clusters maximising the total score
    (Hungarian algorithm); speakers left over (more speakers than clusters) get -2."""
    soft_clusters = np.nan_to_num(soft_clusters, nan=np.nanmin(soft_clusters))
    num_chunks, num_speakers, _ = soft_clusters.shape
    hard_clusters = -2 * np.ones((num_chunks, num_speakers), dtype=np.int8)
    for c, cost in enumerate(soft_clusters):
        speakers, clusters = linear_sum_assignment(cost, maximize=True)
        for s, k in zip(speakers, clusters):
            hard_clusters[c, s] = k
    return hard_clusters


def similarity(embeddings: np.ndarray, centroids: np.ndarray, metric: str) -> np.ndarray:
    """(chunks, local speakers, clusters) soft clusters: 2 minus the distance of each embedding to each centroid."""
    num_chunks, num_speakers, dimension = embeddings.shape
    distance = cdist(embeddings.reshape(num_chunks * num_speakers, dimension), centroids, metric=metric)
    return 2 - distance.reshape(num_chunks, num_speakers, -1)


def one_cluster(embeddings: np.ndarray, train_embeddings: np.ndarray) -> Clusters:
    """Everyone in cluster 0, its centroid the mean of the kept embeddings (when clustering is pointless)."""
    num_chunks, num_speakers, _ = embeddings.shape
    return Clusters(
        hard=np.zeros((num_chunks, num_speakers), dtype=np.int8),
        soft=np.ones((num_chunks, num_speakers, 1)),
        centroids=np.mean(train_embeddings, axis=0, keepdims=True),
    )


def mean_per_cluster(embeddings: np.ndarray, clusters: np.ndarray, num_clusters: int) -> np.ndarray:
    """(num_clusters, dimension) centroids: the mean embedding of each cluster."""
    return np.vstack([np.mean(embeddings[clusters == k], axis=0) for k in range(num_clusters)])


def count_large(clusters: np.ndarray, min_cluster_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(cluster ids, their sizes, the ids of clusters with at least `min_cluster_size` members)."""
    cluster_unique, cluster_counts = np.unique(clusters, return_counts=True)
    return cluster_unique, cluster_counts, cluster_unique[cluster_counts >= min_cluster_size]


@dataclass(frozen=True)
class AgglomerativeClustering:
    """Hierarchical clustering cut at `threshold`, small clusters merged into the nearest large one,
    re-cut when the number of large clusters is outside the requested bounds. The defaults are
    pyannote/speaker-diarization-3.1's."""

    threshold: float = 0.7045654963945799
    method: Literal["average", "centroid", "complete", "median", "single", "ward", "weighted"] = "centroid"
    min_cluster_size: int = 12
    metric: str = "cosine"
    constrained_assignment: bool = False

    def __call__(
        self,
        embeddings: np.ndarray,
        segmentations: np.ndarray,
        num_clusters: int | None = None,
        min_clusters: int | None = None,
        max_clusters: float | None = None,
    ) -> Clusters:
        """Cluster the embeddings kept by `filter_embeddings`, then assign every embedding to the nearest centroid."""
        train_embeddings, _, _ = filter_embeddings(embeddings, segmentations)
        num_clusters, min_clusters, max_clusters = set_num_clusters(
            len(train_embeddings), num_clusters, min_clusters, max_clusters
        )
        if max_clusters < 2:
            return one_cluster(embeddings, train_embeddings)
        train_clusters = self.cluster(train_embeddings, min_clusters, max_clusters, num_clusters)
        centroids = mean_per_cluster(train_embeddings, train_clusters, np.max(train_clusters) + 1)
        soft_clusters = similarity(embeddings, centroids, self.metric)
        if self.constrained_assignment:
            hard_clusters = constrained_argmax(soft_clusters)
        else:
            hard_clusters = np.argmax(soft_clusters, axis=2)
        return Clusters(hard_clusters, soft_clusters, centroids)

    def cluster(
        self, embeddings: np.ndarray, min_clusters: int, max_clusters: int, num_clusters: int | None = None
    ) -> np.ndarray:
        """(num_embeddings,) cluster indices, from 0."""
        num_embeddings = len(embeddings)
        # fewer embeddings, smaller minimum size (pyannote's heuristic)
        min_cluster_size = min(self.min_cluster_size, max(1, round(0.1 * num_embeddings)))
        if num_embeddings == 1:
            return np.zeros((1,), dtype=np.uint8)

        # centroid, median and ward need euclidean distances: unit-normalised embeddings make cosine euclidean
        if self.metric == "cosine" and self.method in ("centroid", "median", "ward"):
            with np.errstate(divide="ignore", invalid="ignore"):
                embeddings = embeddings / np.linalg.norm(embeddings, axis=-1, keepdims=True)
            dendrogram = linkage(euclidean_distances(embeddings), method=self.method)
        else:
            dendrogram = linkage(embeddings, method=self.method, metric=self.metric)

        clusters = fcluster(dendrogram, self.threshold, criterion="distance") - 1
        cluster_unique, cluster_counts, large_clusters = count_large(clusters, min_cluster_size)
        num_large_clusters = len(large_clusters)
        if num_large_clusters < min_clusters:
            num_clusters = min_clusters
        elif num_large_clusters > max_clusters:
            num_clusters = max_clusters

        if num_clusters is not None and num_large_clusters != num_clusters:
            clusters = self.recut(dendrogram, num_clusters, min_cluster_size)
            cluster_unique, cluster_counts, large_clusters = count_large(clusters, min_cluster_size)
            num_large_clusters = len(large_clusters)

        if num_large_clusters == 0:
            clusters[:] = 0
            return clusters
        small_clusters = cluster_unique[cluster_counts < min_cluster_size]
        if len(small_clusters) == 0:
            return clusters

        # each small cluster joins the large cluster with the nearest centroid
        large_centroids = np.vstack([np.mean(embeddings[clusters == k], axis=0) for k in large_clusters])
        small_centroids = np.vstack([np.mean(embeddings[clusters == k], axis=0) for k in small_clusters])
        centroids_cdist = cdist(large_centroids, small_centroids, metric=self.metric)
        for small_k, large_k in enumerate(np.argmin(centroids_cdist, axis=0)):
            clusters[clusters == small_clusters[small_k]] = large_clusters[large_k]
        _, clusters = np.unique(clusters, return_inverse=True)
        return clusters

    def recut(self, dendrogram: np.ndarray, num_clusters: int, min_cluster_size: int) -> np.ndarray:
        """The flat clusters after the first merge step giving `num_clusters` large clusters, steps tried in
        order of their distance's closeness to the threshold; if none does, the step coming nearest."""
        num_embeddings = len(dendrogram) + 1
        by_step = np.copy(dendrogram)  # cut by merge step rather than by distance
        by_step[:, 2] = np.arange(num_embeddings - 1)
        best_iteration, best_num_large_clusters = num_embeddings - 1, 1
        for iteration in np.argsort(np.abs(dendrogram[:, 2] - self.threshold)):
            if by_step[iteration, 3] < min_cluster_size:  # this merge cannot change the number of large clusters
                continue
            clusters = fcluster(by_step, iteration, criterion="distance") - 1
            num_large_clusters = len(count_large(clusters, min_cluster_size)[2])
            if abs(num_large_clusters - num_clusters) < abs(best_num_large_clusters - num_clusters):
                best_iteration, best_num_large_clusters = iteration, num_large_clusters
            if num_large_clusters == num_clusters:
                return clusters
        clusters = fcluster(by_step, best_iteration, criterion="distance") - 1
        warnings.warn(
            f"Found only {best_num_large_clusters} clusters. Using a smaller value than {min_cluster_size} "
            "for `min_cluster_size` might help."
        )
        return clusters


@dataclass(frozen=True)
class VBxClustering:
    """AHC of the length-normalised embeddings at `threshold`, refined by VBx in the PLDA space; KMeans
    instead when the number of speakers VBx keeps is outside the requested bounds. The defaults are
    pyannote.audio 4's `SpeakerDiarization.default_parameters()` (community-1)."""

    plda: PLDA
    threshold: float = 0.6
    Fa: float = 0.07
    Fb: float = 0.8
    max_iters: int = 20
    metric: str = "cosine"
    constrained_assignment: bool = True

    def __call__(
        self,
        embeddings: np.ndarray,
        segmentations: np.ndarray,
        num_clusters: int | None = None,
        min_clusters: int = 1,
        max_clusters: float = np.inf,
    ) -> Clusters:
        """Cluster the embeddings kept by `filter_embeddings`, then assign every local speaker to a centroid,
        one-to-one per chunk unless KMeans forced the number of clusters. Bounds are `set_num_speakers`'s."""
        constrained_assignment = self.constrained_assignment
        train_embeddings, _, _ = filter_embeddings(embeddings, segmentations)
        if train_embeddings.shape[0] < 2:
            return one_cluster(embeddings, train_embeddings)

        train_embeddings_normed = train_embeddings / np.linalg.norm(train_embeddings, axis=1, keepdims=True)
        dendrogram = linkage(euclidean_distances(train_embeddings_normed), method="centroid")
        ahc_clusters = fcluster(dendrogram, self.threshold, criterion="distance") - 1
        _, ahc_clusters = np.unique(ahc_clusters, return_inverse=True)

        q, sp = cluster_vbx(ahc_clusters, self.plda(train_embeddings), self.plda.phi, Fa=self.Fa, Fb=self.Fb)
        dimension = embeddings.shape[2]
        W = q[:, sp > 1e-7]  # responsibilities of the speakers VBx kept
        centroids = W.T @ train_embeddings.reshape(-1, dimension) / W.sum(0, keepdims=True).T

        auto_num_clusters = centroids.shape[0]
        if auto_num_clusters < min_clusters:
            num_clusters = min_clusters
        elif auto_num_clusters > max_clusters:
            num_clusters = max_clusters
        if num_clusters and num_clusters != auto_num_clusters:
            # forcing the number of clusters: constrained assignment could add clusters back
            constrained_assignment = False
            kmeans_clusters = KMeans(n_clusters=num_clusters, n_init=3, random_state=42, copy_x=False).fit_predict(
                train_embeddings_normed
            )
            centroids = mean_per_cluster(train_embeddings, kmeans_clusters, num_clusters)

        soft_clusters = similarity(embeddings, centroids, self.metric)
        if constrained_assignment:
            inactive = segmentations.sum(1) == 0
            soft_clusters[inactive] = soft_clusters.min() - 1.0  # below any valid score
            hard_clusters = constrained_argmax(soft_clusters)
        else:
            hard_clusters = np.argmax(soft_clusters, axis=2)
        return Clusters(hard_clusters, soft_clusters, centroids)

"""The numpy stages of speaker diarization against pyannote.audio 4.0.7's own objects, on identical inputs.

The inputs are a synthetic conversation: speakers taking turns (sometimes overlapping, never more
than two at once, as segmentation-3.0's powerset allows), seen through 10 s windows every second on
segmentation-3.0's frames, each window's speakers in random local slots; embeddings are seeded
Gaussian clusters around one centre per speaker, NaN for empty slots and for a few active ones.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from plda_fixture import write_plda
from pyannote.audio import Audio
from pyannote.audio.core.plda import PLDA as TheirPLDA
from pyannote.audio.models.embedding import WeSpeakerResNet34
from pyannote.audio.models.segmentation import PyanNet as TheirPyanNet
from pyannote.audio.pipelines import clustering as their_clustering
from pyannote.audio.pipelines.speaker_diarization import SpeakerDiarization
from pyannote.audio.pipelines.utils.diarization import SpeakerDiarizationMixin
from pyannote.audio.pipelines.utils.diarization import set_num_speakers as their_set_num_speakers
from pyannote.core import SlidingWindow as TheirWindow
from pyannote.core import SlidingWindowFeature
from scipy.spatial.distance import pdist

from mlx_segmentation.clustering import AgglomerativeClustering, VBxClustering, euclidean_distances, filter_embeddings
from mlx_segmentation.columns import reduce_columns
from mlx_segmentation.diarization import (
    Diarization,
    FrameScores,
    diarization_from_clusters,
    embedding_masks,
    min_num_frames,
    reconstruct,
    set_num_speakers,
    speaker_count,
    to_annotation,
)
from mlx_segmentation.plda import PLDA
from mlx_segmentation.pyannet import frame_timing, num_frames
from mlx_segmentation.timeline import SlidingWindow

STRIDE = 10  # segmentation-3.0's SincNet stride, at 16 kHz
TIMING = frame_timing(16000, STRIDE)
FRAMES = SlidingWindow(start=TIMING.start, duration=TIMING.duration, step=TIMING.step)
FRAMES_PER_CHUNK = num_frames(10 * 16000, STRIDE)
CHUNKS = SlidingWindow(start=0.0, duration=10.0, step=1.0)
AGGLOMERATIVE_3_1 = {"method": "centroid", "min_cluster_size": 12, "threshold": 0.7045654963945799}
VBX_COMMUNITY_1 = {"threshold": 0.6, "Fa": 0.07, "Fb": 0.8}


def theirs(window: SlidingWindow) -> TheirWindow:
    return TheirWindow(start=window.start, duration=window.duration, step=window.step)


@dataclass(frozen=True)
class Conversation:
    binarized: np.ndarray  # (chunks, frames, 3) 0/1 float32
    embeddings: np.ndarray  # (chunks, 3, 256) float32, NaN where none
    speakers: np.ndarray  # (chunks, 3) the true speaker in each local slot, -1 for none

    def segmentations(self) -> SlidingWindowFeature:
        return SlidingWindowFeature(self.binarized.copy(), theirs(CHUNKS))


def conversation(
    seed: int, num_chunks: int = 40, num_speakers: int = 3, spread: float = 0.6, missing: bool = True
) -> Conversation:
    """`missing`: NaN embeddings for empty slots and a few failed extractions, as pyannote's embedding model gives."""
    rng = np.random.default_rng(seed)
    duration = CHUNKS.duration + (num_chunks - 1) * CHUNKS.step
    turns, t, speaker = [], 0.0, 0
    while t < duration:  # turns of at least 2.5 s, overlapping by at most 1 s: never three speakers at once
        length = rng.uniform(2.5, 7.0)
        turns.append((t, t + length, speaker))
        t += length + rng.uniform(-1.0, 1.5)
        speaker = rng.choice([s for s in range(num_speakers) if s != speaker])
    middles = FRAMES.middle(0) + FRAMES.step * np.arange(FRAMES_PER_CHUNK)
    binarized = np.zeros((num_chunks, FRAMES_PER_CHUNK, 3), dtype=np.float32)
    speakers = -np.ones((num_chunks, 3), dtype=int)
    for c in range(num_chunks):
        times = CHUNKS.window_start(c) + middles
        activity = np.zeros((num_speakers, FRAMES_PER_CHUNK), dtype=bool)
        for start, end, s in turns:
            activity[s] |= (times >= start) & (times < end)
        present = [s for s in np.argsort(-activity.sum(1), kind="stable") if activity[s].any()][:3]
        for slot, s in zip(rng.permutation(3), present):
            binarized[c, :, slot] = activity[s]
            speakers[c, slot] = s
    centres = rng.normal(size=(num_speakers, 256))
    noise = spread * rng.normal(size=(num_chunks, 3, 256))
    embeddings = (centres[np.maximum(speakers, 0)] + noise).astype(np.float32)
    if missing:
        embeddings[speakers < 0] = np.nan
        active = np.argwhere(speakers >= 0)
        for c, s in active[rng.choice(len(active), 3, replace=False)]:  # extraction failed (too short)
            embeddings[c, s] = np.nan
    return Conversation(binarized, embeddings, speakers)


@pytest.fixture(scope="module")
def talk() -> Conversation:
    return conversation(seed=0)


# psi scaled by 10, VBx keeps the conversation's three speakers; unscaled, it keeps one
PLDA_SCALES = {"three": 10.0, "one": 1.0}


@dataclass(frozen=True)
class PLDAs:
    ours: PLDA
    theirs: TheirPLDA  # loaded by pyannote from the same files


@pytest.fixture(scope="module")
def pldas(tmp_path_factory) -> dict[str, PLDAs]:
    root = tmp_path_factory.mktemp("plda")
    folders = {name: write_plda(root / name, seed=1, psi_scale=scale) for name, scale in PLDA_SCALES.items()}
    return {
        name: PLDAs(
            ours=PLDA(**np.load(folder / "xvec_transform.npz"), **np.load(folder / "plda.npz")),
            theirs=TheirPLDA(folder / "xvec_transform.npz", folder / "plda.npz"),
        )
        for name, folder in folders.items()
    }


def test_frames_are_segmentation_3s():
    """The repo's frame arithmetic for segmentation-3.0 is pyannote's receptive field: 589 frames a window."""
    model = TheirPyanNet(sincnet={"stride": STRIDE})
    field = model.receptive_field
    assert (FRAMES.duration, FRAMES.step) == (field.duration, field.step) == (0.0619375, 0.016875)
    assert FRAMES_PER_CHUNK == model.num_frames(160000) == 589


@pytest.mark.parametrize(
    "bounds", [(None, None, None), (3, None, None), (None, 2, 5), (None, 2, None), (None, None, 4), (None, 3, 3)]
)
def test_set_num_speakers_equals_pyannote(bounds):
    assert set_num_speakers(*bounds) == their_set_num_speakers(*bounds)


@pytest.mark.parametrize(
    "bounds, message",
    [
        ((0, None, None), "num_speakers must be at least 1"),
        ((None, 0, None), "min_speakers must be at least 1"),
        ((None, None, -1), "max_speakers must be at least 1"),
        ((None, 4, 2), "min_speakers must be smaller than"),
    ],
)
def test_set_num_speakers_refuses(bounds, message):
    with pytest.raises(ValueError, match=message):
        set_num_speakers(*bounds)


def test_filter_embeddings_equals_pyannote(talk):
    """4.0.7's rule: no NaN, and alone active on at least 20% of the window's frames."""
    ours = filter_embeddings(talk.embeddings, talk.binarized)
    base = their_clustering.AgglomerativeClustering(metric="cosine")
    expected = base.filter_embeddings(talk.embeddings.copy(), segmentations=talk.segmentations())
    for mine, their in zip(ours, expected):
        np.testing.assert_array_equal(mine, their)
    assert 0 < len(ours[0]) < np.sum(talk.speakers >= 0) - 3  # some active speakers are not alone enough


@pytest.mark.parametrize("num_points", [2, 3, 64, 65, 300])
def test_euclidean_distances_equal_scipy(num_points):
    """The threaded rows give scipy's pdist bit for bit (what linkage would compute), in its order."""
    points = np.random.default_rng(num_points).normal(size=(num_points, 256)).astype(np.float32)
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    ours = euclidean_distances(points)
    assert ours.dtype == np.float64
    np.testing.assert_array_equal(ours, pdist(points))


@pytest.mark.parametrize("num_columns", [1, 3, 4, 7])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_reduce_columns_equals_numpy(num_columns, dtype):
    """Sums and maxima over the speakers' columns are numpy's reductions bit for bit, NaN included."""
    rng = np.random.default_rng(num_columns)
    values = rng.normal(size=(40, 30, num_columns)) * rng.choice([1e-3, 1.0, 1e4], size=(40, 30, num_columns))
    values = values.astype(dtype)
    values[::7, 3, 0] = np.nan
    for ufunc in (np.add, np.maximum):
        expected = ufunc.reduce(values, axis=-1, keepdims=True)
        np.testing.assert_array_equal(reduce_columns(ufunc, values), expected)
    assert np.isnan(reduce_columns(np.add, values)[0, 3, 0])


def assert_same_clusters(ours, expected) -> None:
    hard, soft, centroids = expected
    np.testing.assert_array_equal(ours.hard, hard)
    np.testing.assert_array_equal(ours.soft, soft)
    np.testing.assert_array_equal(ours.centroids, centroids)


AGGLOMERATIVE_BOUNDS = {
    "threshold": (None, None, None),
    "fixed, fewer": (2, None, None),
    "fixed, more": (5, None, None),  # no cut gives 5 large clusters: the nearest one is kept
    "min above": (None, 4, None),
    "max below": (None, None, 2),
}


@pytest.mark.parametrize("constrained", [False, True], ids=["argmax", "constrained"])
@pytest.mark.parametrize("bounds", AGGLOMERATIVE_BOUNDS.values(), ids=AGGLOMERATIVE_BOUNDS)
def test_agglomerative_clustering_equals_pyannote(talk, bounds, constrained, capsys):
    """Equal clusters, and our warning where pyannote prints that no cut meets the bounds."""
    num_clusters, min_clusters, max_clusters = bounds
    clustering = their_clustering.AgglomerativeClustering(metric="cosine", constrained_assignment=constrained)
    theirs_ = clustering.instantiate(AGGLOMERATIVE_3_1)
    expected = theirs_(talk.embeddings.copy(), talk.segmentations(), num_clusters, min_clusters, max_clusters)
    printed = capsys.readouterr().out.strip()
    ours = AgglomerativeClustering(**AGGLOMERATIVE_3_1, constrained_assignment=constrained)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ours = ours(talk.embeddings, talk.binarized, *bounds)
    assert_same_clusters(ours, expected)
    assert [str(w.message) for w in caught] == ([printed] if printed else [])
    if bounds == (None, None, None):
        assert len(ours.centroids) == 3


def test_plda_equals_pyannote(talk, pldas):
    train, _, _ = filter_embeddings(talk.embeddings, talk.binarized)
    ours, their = pldas["three"].ours, pldas["three"].theirs
    np.testing.assert_array_equal(ours.phi, their.phi)
    np.testing.assert_array_equal(ours(train), their(train))
    assert ours(train).shape == (len(train), 128)


VBX_CASES = {  # (PLDA, (num_speakers, min_speakers, max_speakers)): VBx's own count, or KMeans to meet the bounds
    "auto": ("three", (None, None, None)),
    "as found": ("three", (3, None, None)),
    "fixed, fewer": ("three", (2, None, None)),
    "min above": ("three", (None, 5, None)),  # KMeans' three initialisations disagree: the best is kept
    "max below": ("three", (None, 1, 2)),
    "one found": ("one", (None, None, None)),
    "one found, min above": ("one", (None, 2, None)),
}


@pytest.mark.parametrize("missing", [True, False], ids=["NaN embeddings", "all embedded"])
@pytest.mark.parametrize("plda, bounds", VBX_CASES.values(), ids=VBX_CASES)
def test_vbx_clustering_equals_pyannote(pldas, plda, bounds, missing):
    """With every slot embedded, inactive speakers get the lowest score before the one-to-one assignment
    (with any NaN embedding, pyannote's lowest score is NaN: they get the lowest valid one instead)."""
    talk = conversation(seed=0, missing=missing)
    num_clusters, min_clusters, max_clusters = set_num_speakers(*bounds)  # VBx expects the pipeline's bounds
    theirs_ = their_clustering.VBxClustering(pldas[plda].theirs).instantiate(VBX_COMMUNITY_1)
    expected = theirs_(talk.embeddings.copy(), talk.segmentations(), num_clusters, min_clusters, max_clusters)
    ours = VBxClustering(pldas[plda].ours, **VBX_COMMUNITY_1)
    assert_same_clusters(ours(talk.embeddings, talk.binarized, num_clusters, min_clusters, max_clusters), expected)


def test_vbx_finds_the_speakers(talk, pldas):
    """With the seeded PLDA, VBx (not KMeans) recovers the conversation's speakers from the AHC clusters."""
    clusters = VBxClustering(pldas["three"].ours, **VBX_COMMUNITY_1)(talk.embeddings, talk.binarized)
    active = talk.speakers >= 0
    pairs = set(zip(talk.speakers[active], clusters.hard[active]))
    assert len(clusters.centroids) == 3 and len(pairs) == 3


def test_speaker_count_equals_pyannote(talk):
    count = speaker_count(talk.binarized, CHUNKS, FRAMES)
    expected = SpeakerDiarizationMixin.speaker_count(talk.segmentations(), theirs(FRAMES), warm_up=(0.0, 0.0))
    np.testing.assert_array_equal(count.data, expected.data)
    assert count.data.dtype == expected.data.dtype
    assert (count.frames.start, count.frames.step) == (expected.sliding_window.start, expected.sliding_window.step)
    assert set(np.unique(count.data)) == {0, 1, 2}


def rttm(tracks) -> str:
    """Tracks as RTTM lines, cluster k labelled SPEAKER_k."""
    return "".join(
        f"SPEAKER x 1 {region.start:.3f} {region.duration:.3f} <NA> <NA> SPEAKER_{label:02d} <NA> <NA>\n"
        for region, _, label in tracks
    )


def their_rttm(annotation) -> str:
    annotation.uri = "x"
    file = io.StringIO()
    annotation.rename_labels({k: f"SPEAKER_{k:02d}" for k in annotation.labels()}).write_rttm(file)
    return file.getvalue()


@pytest.mark.parametrize("min_duration_off", [0.0, 0.5])
@pytest.mark.parametrize("max_speakers", [2, 1])
def test_reconstruct_and_turns_equal_pyannote(talk, min_duration_off, max_speakers):
    """Clusters of pyannote's agglomerative clustering, inactive local speakers at -2; every step's output equal."""
    clustering = their_clustering.AgglomerativeClustering(metric="cosine").instantiate(AGGLOMERATIVE_3_1)
    hard_clusters, _, _ = clustering(talk.embeddings.copy(), talk.segmentations())
    hard_clusters[talk.binarized.sum(axis=1) == 0] = -2
    count = speaker_count(talk.binarized, CHUNKS, FRAMES)
    count = FrameScores(np.minimum(count.data, max_speakers).astype(np.int8), count.frames)
    their_count = SlidingWindowFeature(count.data.copy(), theirs(count.frames))

    discrete = reconstruct(talk.binarized, CHUNKS, hard_clusters, count)
    mixin = SpeakerDiarizationMixin()
    expected = SpeakerDiarization.reconstruct(mixin, talk.segmentations(), hard_clusters, their_count)
    np.testing.assert_array_equal(discrete.data, expected.data)
    assert discrete.frames.start == expected.sliding_window.start
    assert (discrete.data.sum(axis=1) == count.data[:, 0]).all()

    tracks = to_annotation(discrete, min_duration_off=min_duration_off)
    annotation = mixin.to_annotation(expected, min_duration_on=0.0, min_duration_off=min_duration_off)
    assert [t.track for t in tracks] == [track for _, track in annotation.itertracks()]
    assert rttm(tracks) == their_rttm(annotation)
    assert len(tracks) > 10


def test_turns_order_identical_regions_by_track_name():
    """Identical turns of two speakers: pyannote.core sorts them by track name, as strings ('AA' < 'Z')."""
    discrete = np.zeros((200, 2), dtype=np.float32)
    for start in range(0, 100, 4):  # speaker 0: 25 short turns (tracks A to Y), then Z ...
        discrete[start : start + 2, 0] = 1.0
    discrete[100:110, :] = 1.0  # ... equal to speaker 1's first turn, AA
    discrete[150:160, 1] = 1.0
    frames = SlidingWindow(start=0.0, duration=0.05, step=0.02)
    expected = SpeakerDiarizationMixin.to_annotation(
        SlidingWindowFeature(discrete, theirs(frames)), min_duration_off=0.01
    )
    tracks = to_annotation(FrameScores(discrete, frames), min_duration_off=0.01)
    assert [(t.track, t.label) for t in tracks] == [(track, label) for _, track, label in expected.itertracks(True)]
    assert [(t.track, t.label) for t in tracks[25:27]] == [("AA", 1), ("Z", 0)]


@pytest.mark.parametrize("exclude_overlap", [False, True])
def test_embedding_masks_equal_pyannote(talk, exclude_overlap):
    """The masks `get_embeddings` hands the embedding model, one per (chunk, local speaker), in that order."""
    binarized = talk.binarized.copy()
    binarized[5, :, 0] = 0.0
    binarized[5, 100:130, :2] = 1.0  # speaker 0 only speaks over speaker 1, too briefly to go without them
    binarized[6, :, :] = 0.0
    binarized[6, :178, 0] = 1.0  # alone on exactly `min_num_frames` frames: not enough, the overlap is kept
    binarized[6, 148:327, 1] = 1.0  # alone on one more: enough
    binarized[7, 40:45, 1] = np.nan  # NaN frames count as 0 in the mask, and as overlap
    masks_seen = []

    class Embedding:
        sample_rate, min_num_samples, dimension = 16000, 40000, 4

        def __call__(self, waveforms: torch.Tensor, masks: torch.Tensor) -> np.ndarray:
            masks_seen.append(masks.numpy())
            return np.zeros((len(masks), self.dimension))

    audio = Audio(sample_rate=16000, mono="downmix")
    pipeline = SimpleNamespace(training=False, _embedding=Embedding(), embedding_batch_size=16, _audio=audio)
    file = {"waveform": torch.zeros(1, 16000 * 49), "sample_rate": 16000}
    segmentations = SlidingWindowFeature(binarized, theirs(CHUNKS))
    SpeakerDiarization.get_embeddings(pipeline, file, segmentations, exclude_overlap=exclude_overlap)

    threshold = min_num_frames(FRAMES_PER_CHUNK, CHUNKS.duration, 16000, Embedding.min_num_samples)
    ours = embedding_masks(binarized, exclude_overlap, threshold if exclude_overlap else -1)
    np.testing.assert_array_equal(ours.reshape(-1, FRAMES_PER_CHUNK), np.concatenate(masks_seen))
    assert ours.dtype == np.float32 and threshold == 148
    if exclude_overlap:  # the fall-back to the whole speech is exercised
        assert ours[5, 0].sum() == 30 and ours[6, 0].sum() == 178 and ours[6, 1].sum() == 149


# The full pipeline, its segmentation and embeddings replaced by the conversation's: `apply` runs every
# stage after the embeddings (bounds, count, clustering, reconstruction, turns, labels, centroids).


@pytest.fixture(scope="module")
def segmentation_model() -> TheirPyanNet:
    from pyannote.audio.core.task import Problem, Resolution, Specifications

    model = TheirPyanNet(sincnet={"stride": STRIDE})
    model.specifications = Specifications(
        problem=Problem.MONO_LABEL_CLASSIFICATION,
        resolution=Resolution.FRAME,
        duration=10.0,
        classes=["speaker#1", "speaker#2", "speaker#3"],
        powerset_max_classes=2,
        permutation_invariant=True,
    )
    return model


@pytest.fixture(scope="module")
def embedding_model() -> WeSpeakerResNet34:
    return WeSpeakerResNet34()


def their_pipeline(talk, segmentation_model, embedding_model, plda: TheirPLDA, clustering: str, parameters: dict):
    pipeline = SpeakerDiarization(
        segmentation=segmentation_model, embedding=embedding_model, plda=plda, clustering=clustering
    )
    pipeline.instantiate(parameters)
    pipeline.get_segmentations = lambda file, hook=None: talk.segmentations()
    pipeline.get_embeddings = lambda file, segmentations, exclude_overlap=False, hook=None: talk.embeddings.copy()
    return pipeline


def our_diarization(talk: Conversation, clustering, bounds, min_duration_off: float) -> Diarization:
    num_speakers, min_speakers, max_speakers = set_num_speakers(*bounds)
    count = speaker_count(talk.binarized, CHUNKS, FRAMES)
    clusters = clustering(talk.embeddings, talk.binarized, num_speakers, min_speakers, max_speakers)
    return diarization_from_clusters(
        talk.binarized, CHUNKS, count, clusters, min_speakers, max_speakers, min_duration_off
    )


PIPELINE_CASES = {  # clustering, PLDA, bounds, min_duration_off
    "vbx": ("VBxClustering", "three", (None, None, None), 0.0),
    "vbx, kmeans": ("VBxClustering", "three", (2, None, None), 0.0),
    "vbx, one speaker, padded centroids": ("VBxClustering", "one", (None, None, None), 0.0),
    "vbx, gaps filled": ("VBxClustering", "three", (None, 1, 4), 0.3),
    "agglomerative": ("AgglomerativeClustering", "three", (None, None, None), 0.0),
    "agglomerative, max below": ("AgglomerativeClustering", "three", (None, None, 2), 0.0),
    "agglomerative, one speaker at most": ("AgglomerativeClustering", "three", (None, None, 1), 0.0),
}


@pytest.mark.parametrize("clustering, plda, bounds, min_duration_off", PIPELINE_CASES.values(), ids=PIPELINE_CASES)
def test_post_embedding_stages_equal_pyannote_apply(
    talk, segmentation_model, embedding_model, pldas, clustering, plda, bounds, min_duration_off
):
    if clustering == "VBxClustering":
        parameters = VBX_COMMUNITY_1
        ours = VBxClustering(pldas[plda].ours, **VBX_COMMUNITY_1)
    else:
        parameters = AGGLOMERATIVE_3_1
        ours = AgglomerativeClustering(**AGGLOMERATIVE_3_1)
    pipeline = their_pipeline(
        talk,
        segmentation_model,
        embedding_model,
        pldas[plda].theirs,
        clustering,
        {"segmentation": {"min_duration_off": min_duration_off}, "clustering": parameters},
    )
    num_speakers, min_speakers, max_speakers = bounds
    expected = pipeline.apply({"uri": "x"}, num_speakers, min_speakers, max_speakers)
    diarization = our_diarization(talk, ours, bounds, min_duration_off)

    for exclusive in (False, True):
        ours_rttm, their_rttm = io.StringIO(), io.StringIO()
        diarization.write_rttm(ours_rttm, "x", exclusive=exclusive)
        (expected.exclusive_speaker_diarization if exclusive else expected.speaker_diarization).write_rttm(their_rttm)
        assert ours_rttm.getvalue() == their_rttm.getvalue()
    assert diarization.labels == expected.speaker_diarization.labels()
    np.testing.assert_array_equal(diarization.speaker_embeddings, expected.speaker_embeddings)
    if plda == "one":  # two speakers at once but one cluster: a speaker with no centroid, and a zero embedding
        assert len(diarization.labels) == 2 and not diarization.speaker_embeddings[1].any()

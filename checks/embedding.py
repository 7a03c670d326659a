"""Parity checks for speaker-embedding models (pyannote's WeSpeakerResNet34) against genuine pyannote.audio.

- components, each fed the float64 reference's own input: fbank, the ResNet stem, each of its four
  stages, statistics pooling, the embedding layer;
- full model on real speech of 1, 3.3 and 10 s, with and without frame weights: cosine with the
  float32 reference >= MIN_COSINE for every embedding, and max |diff| against float64;
- ranking: on single-speaker segments of sample.wav, the order of all pairwise cosine similarities
  is the same with MLX as with PyTorch.
"""

from __future__ import annotations

import platform
from datetime import datetime, timezone
from pathlib import Path

import mlx.core as mx
import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel

from converter.recipe import Gates
from mlx_segmentation.wespeaker import WeSpeakerResNet34, statistics_pooling

from .audio import read_mono, sample_wav
from .metrics import Metrics, compare
from .report import ReportHeader, environment_versions

MIN_COSINE = 0.9999  # per embedding, against the float32 reference (issue #7's gate)
LENGTHS = (1.0, 3.3, 10.0)  # seconds of speech per full-model check
SEGMENT = 2.0  # seconds per ranking segment
SEGMENTS_PER_SPEAKER = 3
WEIGHT_SEED = 0


class EmbeddingCheck(BaseModel):
    input: str
    shape: list[int]
    max_abs_vs_float64: float
    reference_float32_error: float  # max |pyannote float32 - pyannote float64|
    max_abs_vs_float32: float
    min_cosine: float  # over embeddings, against the float32 reference
    passed: bool


class RankingCheck(BaseModel):
    segments: list[str]  # "speaker start-end"
    pairs: int
    same_order: bool
    largest_similarity_difference: float  # max |cos_mlx - cos_pytorch| over pairs
    passed: bool


class EmbeddingCheckReport(ReportHeader):
    components: list[Metrics]
    full_model: list[EmbeddingCheck]
    ranking: RankingCheck

    def summary(self) -> str:
        status = "passed" if self.passed else f"FAILED (first failure: {self.first_failure})"
        worst = min(c.min_cosine for c in self.full_model)
        return (
            f"{status}: {len(self.components)} component and {len(self.full_model)} full-model checks and a ranking of "
            f"{self.ranking.pairs} pairs, {self.dtype}; lowest cosine with pyannote float32 {worst:.8f}; "
            f"similarity order {'identical' if self.ranking.same_order else 'DIFFERENT'}"
        )

    def table(self) -> str:
        lines = [f"{'check':<38} {'|mlx-f64|':>9} {'e(f32)':>9} {'gate':>9} {'pearson':>11}  ok"]
        for c in self.components:
            lines.append(f"{c.name:<38} {c.max_abs_vs_float64:>9.2e} {c.reference_float32_error:>9.2e} {c.tolerance:>9.2e} {c.pearson:>11.8f}  {'yes' if c.passed else 'NO'}")
        lines.append(f"{'full model':<38} {'|mlx-f64|':>9} {'e(f32)':>9} {'min cos':>11}")
        for c in self.full_model:
            lines.append(f"{c.input:<38} {c.max_abs_vs_float64:>9.2e} {c.reference_float32_error:>9.2e} {c.min_cosine:>11.8f}  {'yes' if c.passed else 'NO'}")
        r = self.ranking
        lines.append(
            f"ranking of {r.pairs} pairwise similarities over {len(r.segments)} segments: "
            f"{'same order' if r.same_order else 'DIFFERENT order'}, max |cos diff| {r.largest_similarity_difference:.2e}  {'yes' if r.passed else 'NO'}"
        )
        return "\n".join(lines)


def reference_models(checkpoint: Path) -> tuple[torch.nn.Module, torch.nn.Module, str]:
    """The reference model from the checkpoint, in float32 and float64, and its name: pyannote.audio's
    own when installed, else checks.torch_wespeaker (tests prove it bit-identical)."""
    try:
        from pyannote.audio import Model
    except ImportError:
        return (*(own_torch_model(checkpoint, dtype) for dtype in (torch.float32, torch.float64)), "checks.torch_wespeaker (pyannote.audio not installed)")
    ref32 = Model.from_pretrained(checkpoint).eval()  # trusted: the checkpoint the user asked to convert
    ref64 = Model.from_pretrained(checkpoint).eval().double()
    return ref32, ref64, "pyannote.audio"


def own_torch_model(checkpoint: Path, dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """checks.torch_wespeaker's model with the checkpoint's tensors (read by our safe reader)."""
    from converter.architecture import embedding_config
    from converter.reader import read_checkpoint

    from .reference import state_dict
    from .torch_wespeaker import TorchWeSpeakerResNet34

    source = read_checkpoint(checkpoint)
    model = TorchWeSpeakerResNet34(embedding_config(source))
    model.load_state_dict(state_dict(source), strict=True)
    return model.eval().to(dtype)


def speech_segments(seconds: float, count: int) -> np.ndarray:
    """`count` stretches of sample.wav of `seconds` each, evenly spread."""
    waveform, sample_rate = read_mono(sample_wav())
    size = int(seconds * sample_rate)
    starts = np.linspace(0, len(waveform) - size, count).astype(int)
    return np.stack([waveform[s : s + size] for s in starts]).astype(np.float32)


def single_speaker_segments(seconds: float, per_speaker: int) -> tuple[np.ndarray, list[str]]:
    """Segments of sample.wav where sample.rttm has exactly one speaker, `per_speaker` per speaker."""
    waveform, sample_rate = read_mono(sample_wav())
    turns = []
    for line in sample_wav().with_suffix(".rttm").read_text().splitlines():
        fields = line.split()
        turns.append((float(fields[3]), float(fields[3]) + float(fields[4]), fields[7]))
    chosen, labels = [], []
    for speaker in sorted({t[2] for t in turns}):
        found = 0
        others = [(s, e) for s, e, w in turns if w != speaker]
        for start, end, who in sorted(turns):
            t = start
            while who == speaker and t + seconds <= end and found < per_speaker:
                if all(e <= t or s >= t + seconds for s, e in others):
                    begin = int(round(t * sample_rate))
                    chosen.append(waveform[begin : begin + int(seconds * sample_rate)])
                    labels.append(f"{speaker} {t:.2f}-{t + seconds:.2f}")
                    found += 1
                    t += seconds
                else:
                    t += 0.1
    return np.stack(chosen).astype(np.float32), labels


def _torch_layout(x: mx.array) -> np.ndarray:
    """MLX (batch, frequency, time, channels) -> PyTorch's (batch, channels, frequency, time)."""
    return np.array(x).transpose(0, 3, 1, 2)


def _mlx_layout(x: torch.Tensor, dtype: mx.Dtype) -> mx.array:
    return mx.array(x.permute(0, 2, 3, 1).float().numpy()).astype(dtype)


def component_checks(model: WeSpeakerResNet34, ref32, ref64, waveforms: np.ndarray, gates: Gates) -> list[Metrics]:
    dtype = model.resnet.seg_1.weight.dtype
    results = []
    x32, x64 = torch.from_numpy(waveforms)[:, None], torch.from_numpy(waveforms).double()[:, None]
    with torch.inference_mode():
        f64 = ref64.compute_fbank(x64)  # centred: the ResNet's input
        # kaldi.fbank itself, before pyannote's centring (compute_fbank without its last line)
        raw32, raw64 = (torch.vmap(ref._fbank)(x * (1 << 15)).double().numpy() for ref, x in ((ref32, x32), (ref64, x64)))
    ours = np.array(model.fbank.features(mx.array(waveforms))).astype(np.float64)
    # The log of a mel bin holding 1e-8 of its frame's energy magnifies float32 FFT rounding (PyTorch's
    # too) by as much: the energies, relative to each frame's largest, are the well-conditioned check.
    scale = np.exp(raw64).max(axis=-1, keepdims=True)
    results.append(compare("fbank (energies / frame maximum)", np.exp(ours) / scale, np.exp(raw32) / scale, np.exp(raw64) / scale, gates))
    with torch.inference_mode():
        r = ref64.resnet
        image64 = f64.permute(0, 2, 1).unsqueeze(1)
        stages64 = [F.relu(r.bn1(r.conv1(image64)))]
        stages32 = [F.relu(ref32.resnet.bn1(ref32.resnet.conv1(image64.float())))]
    results.append(compare("resnet.stem", _torch_layout(model.resnet.stem(mx.array(f64.float().numpy()).astype(dtype))), stages32[0].numpy(), stages64[0].numpy(), gates, relative_floor=True))
    previous = stages64[0]
    for index, (ours_layer, layer32, layer64) in enumerate(zip(model.resnet.layers, (ref32.resnet.layer1, ref32.resnet.layer2, ref32.resnet.layer3, ref32.resnet.layer4), (r.layer1, r.layer2, r.layer3, r.layer4)), start=1):
        with torch.inference_mode():
            out32, out64 = layer32(previous.float()), layer64(previous)
        out = _mlx_layout(previous, dtype)
        for block in ours_layer:
            out = block(out)
        results.append(compare(f"resnet.layer{index}", _torch_layout(out), out32.numpy(), out64.numpy(), gates, relative_floor=True))
        previous = out64
    with torch.inference_mode():
        pooled32, pooled64 = ref32.resnet.pool(previous.float()), r.pool(previous)
        embedding32, embedding64 = ref32.resnet.seg_1(pooled64.float()), r.seg_1(pooled64)
    batch, channels, frequency, frames = previous.shape
    sequences = mx.array(previous.reshape(batch, channels * frequency, frames).float().numpy()).astype(dtype)
    results.append(compare("pooling (mean, std)", np.array(statistics_pooling(sequences)), pooled32.numpy(), pooled64.numpy(), gates, relative_floor=True))
    embedding = model.resnet.seg_1(mx.array(pooled64.float().numpy()).astype(dtype))
    results.append(compare("resnet.seg_1 (embedding)", np.array(embedding), embedding32.numpy(), embedding64.numpy(), gates, relative_floor=True))
    return results


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def full_model_check(name: str, model: WeSpeakerResNet34, ref32, ref64, waveforms: np.ndarray, weights: np.ndarray | None) -> EmbeddingCheck:
    w32 = None if weights is None else torch.from_numpy(weights)
    with torch.inference_mode():
        out32 = ref32(torch.from_numpy(waveforms)[:, None], weights=w32).double().numpy()
        out64 = ref64(torch.from_numpy(waveforms).double()[:, None], weights=None if w32 is None else w32.double()).numpy()
    ours = np.array(model(mx.array(waveforms), None if weights is None else mx.array(weights)).astype(mx.float32)).astype(np.float64)
    cosine = float(cosines(ours, out32).min())
    return EmbeddingCheck(
        input=name,
        shape=list(ours.shape),
        max_abs_vs_float64=float(np.abs(ours - out64).max()),
        reference_float32_error=float(np.abs(out32 - out64).max()),
        max_abs_vs_float32=float(np.abs(ours - out32).max()),
        min_cosine=cosine,
        passed=cosine >= MIN_COSINE,
    )


def ranking_check(model: WeSpeakerResNet34, ref32) -> RankingCheck:
    segments, labels = single_speaker_segments(SEGMENT, SEGMENTS_PER_SPEAKER)
    with torch.inference_mode():
        theirs = ref32(torch.from_numpy(segments)[:, None]).double().numpy()
    ours = np.array(model(mx.array(segments)).astype(mx.float32)).astype(np.float64)
    pairs = np.triu_indices(len(segments), k=1)

    def similarities(e: np.ndarray) -> np.ndarray:
        unit = e / np.linalg.norm(e, axis=-1, keepdims=True)
        return (unit @ unit.T)[pairs]

    s_ours, s_theirs = similarities(ours), similarities(theirs)
    same = bool((np.argsort(s_ours, kind="stable") == np.argsort(s_theirs, kind="stable")).all())
    return RankingCheck(
        segments=labels,
        pairs=len(s_ours),
        same_order=same,
        largest_similarity_difference=float(np.abs(s_ours - s_theirs).max()),
        passed=same,
    )


def run_embedding_checks(model: WeSpeakerResNet34, checkpoint: Path, gates: Gates, *, folder: str, dtype: str, source_sha256: str, weights_sha256: str, log=print) -> EmbeddingCheckReport:
    ref32, ref64, reference_name = reference_models(checkpoint)
    sample_rate = model.config.sample_rate
    log("embedding component checks on 2 segments of real speech")
    components = component_checks(model, ref32, ref64, speech_segments(3.3, 2), gates)
    full = []
    rng = np.random.default_rng(WEIGHT_SEED)
    for seconds in LENGTHS:
        log(f"full-model check: {seconds:g} s of speech, without and with frame weights")
        waveforms = speech_segments(seconds, 2)
        full.append(full_model_check(f"speech {seconds:g} s", model, ref32, ref64, waveforms, None))
        frames = int(seconds * sample_rate) // 270  # pyannote's segmentation frame rate, resized by the pooling
        weights = rng.random((2, 2, frames)).astype(np.float32)
        full.append(full_model_check(f"speech {seconds:g} s, 2 speakers' weights", model, ref32, ref64, waveforms, weights))
    log("ranking check on single-speaker segments of sample.wav")
    ranking = ranking_check(model, ref32)
    first_failure = next((c.name for c in components if not c.passed), None)
    passed = all(c.passed for c in components) and all(c.passed for c in full) and ranking.passed
    if not passed and first_failure is None:
        first_failure = next((c.input for c in full if not c.passed), "ranking")
    return EmbeddingCheckReport(
        passed=passed,
        first_failure=first_failure,
        created=datetime.now(timezone.utc),
        model_folder=folder,
        dtype=dtype,
        source_sha256=source_sha256,
        weights_sha256=weights_sha256,
        reference=reference_name,
        gates=gates,
        versions=environment_versions(),
        platform=platform.platform(),
        components=components,
        full_model=full,
        ranking=ranking,
    )

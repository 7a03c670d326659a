"""WeSpeakerResNet34 (speaker embeddings): fbank, pooling order, conversion with checks, loading, parity
with genuine pyannote.audio on real speech."""

from __future__ import annotations

import json
import subprocess
import sys
from types import SimpleNamespace

import mlx.core as mx
import numpy as np
import pytest
import torch
import torchaudio.compliance.kaldi as kaldi
from pyannote.audio import Model
from pyannote.audio.models.embedding.wespeaker.resnet import TSTP

import mlx_segmentation
from checks.audio import speech_segments
from mlx_segmentation import wespeaker
from mlx_segmentation.audio import open_audio
from mlx_segmentation.config import FbankConfig
from mlx_segmentation.fbank import Fbank, mel_banks
from mlx_segmentation.parts import Parts
from mlx_segmentation.pipeline import embed_windows
from mlx_segmentation.wespeaker import WeSpeakerResNet34, statistics_pooling
from mlx_segmentation.windows import expected_windows


def kaldi_fbank(waveforms: np.ndarray, dtype: torch.dtype) -> np.ndarray:
    """torchaudio's fbank as pyannote's WeSpeaker models configure it (before centring)."""
    return np.stack(
        [
            kaldi.fbank(
                torch.from_numpy(w).to(dtype)[None] * 32768,
                num_mel_bins=80,
                frame_length=25,
                frame_shift=10,
                dither=0.0,
                window_type="hamming",
                sample_frequency=16000,
                use_energy=False,
                round_to_power_of_two=True,
                snip_edges=True,
            )
            .double()
            .numpy()
            for w in waveforms
        ]
    )


def test_mel_banks_are_torchaudios():
    theirs, _ = kaldi.get_mel_banks(80, 512, 16000.0, 20.0, 0.0, 100.0, -500.0, 1.0)
    ours = mel_banks(80, 512, 16000)
    assert ours.shape == (80, 257) and not ours[:, 256].any()
    np.testing.assert_array_equal(ours[:, :256], theirs.numpy())


@pytest.mark.parametrize("seconds", [1.0, 3.3])
def test_fbank_equals_torchaudio(seconds):
    waveforms = speech_segments(seconds, 2)
    ours = np.exp(np.array(Fbank(FbankConfig(), 16000).features(mx.array(waveforms))).astype(np.float64))
    e32, e64 = np.exp(kaldi_fbank(waveforms, torch.float32)), np.exp(kaldi_fbank(waveforms, torch.float64))
    assert ours.shape == e64.shape == (2, 1 + (int(seconds * 16000) - 400) // 160, 80)
    scale = e64.max(axis=-1, keepdims=True)  # float32 FFT rounding is relative to each frame's energy
    error, reference_error = np.abs((ours - e64) / scale).max(), np.abs((e32 - e64) / scale).max()
    assert error <= 2 * reference_error, (error, reference_error)


def test_fbank_centres_over_time():
    waveforms = speech_segments(1.0, 1)
    fbank = Fbank(FbankConfig(), 16000)
    centred = np.array(fbank(mx.array(waveforms)))
    np.testing.assert_allclose(centred.mean(axis=1), 0.0, atol=1e-5)


def test_pooling_is_channel_major_mean_then_std():
    """pyannote's TSTP on (batch, channels, frequency, frames) against ours on the same numbers, laid out
    as our ResNet lays them out: a structured input, so that any other flattening order shows."""
    batch, channels, frequency, frames = 2, 4, 3, 7
    features = np.arange(batch * channels * frequency * frames, dtype=np.float32).reshape(
        batch, channels, frequency, frames
    )
    features = features**1.5 % 11.0
    theirs = TSTP()(torch.from_numpy(features)).numpy()
    ours_layout = mx.array(features.transpose(0, 2, 3, 1))  # (batch, frequency, frames, channels)
    flattened = ours_layout.transpose(0, 3, 1, 2).reshape(batch, channels * frequency, frames)
    np.testing.assert_allclose(np.array(statistics_pooling(flattened)), theirs, rtol=1e-6, atol=1e-6)


@pytest.fixture(scope="module")
def wespeaker_converted(fixture_checkpoints, tmp_path_factory):
    """The WeSpeaker fixture converted without checks (the tests compare with pyannote.audio themselves)."""
    from converter.build import build

    return build(
        fixture_checkpoints["wespeaker"], tmp_path_factory.mktemp("wespeaker") / "model", log=lambda m: None
    ).out


@pytest.fixture(scope="module")
def wespeaker_build(fixture_checkpoints, tmp_path_factory):
    """`python -m converter build` on the WeSpeaker fixture, checks included."""
    out = tmp_path_factory.mktemp("wespeaker") / "model"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "converter",
            "build",
            "--checkpoint",
            str(fixture_checkpoints["wespeaker"]),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    return run, out


@pytest.mark.slow
def test_build_passes_its_checks(wespeaker_build):
    run, out = wespeaker_build
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = json.loads((out / "checks.json").read_text())
    assert report["passed"] and report["ranking"]["same_order"]
    names = [c["name"] for c in report["components"]]
    assert names[0].startswith("fbank") and "pooling (mean, std)" in names and "resnet.layer4" in names
    inputs = [c["input"] for c in report["full_model"]]
    assert "speech 1 s" in inputs and "speech 10 s, 2 speakers' weights" in inputs
    assert all(c["min_cosine"] >= 0.9999 for c in report["full_model"])
    steps = [line for line in run.stderr.splitlines() if line.startswith("check ")]
    assert [line.split(":")[0] for line in steps] == [f"check {i}/5" for i in range(1, 6)], steps
    assert "full-model check on 10 s of speech" in steps[3] and steps[4].startswith("check 5/5: ranking check")


def test_manifest_records_batchnorm_and_every_source_tensor(wespeaker_converted, fixture_checkpoints):
    out = wespeaker_converted
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model_type"] == "wespeaker_resnet" and manifest["conversion"] == {"batchnorm": "kept"}
    used = {key for record in manifest["tensors"].values() for key in record["source_keys"]}
    state = torch.load(fixture_checkpoints["wespeaker"], weights_only=False)["state_dict"]  # our own fixture
    assert used == set(state)
    record = manifest["tensors"]["resnet.layer2.0.shortcut.1.running_var"]
    assert record["source_keys"] == [
        "resnet.layer2.0.shortcut.1.running_var",
        "resnet.layer2.0.shortcut.1.num_batches_tracked",
    ]
    assert manifest["tensors"]["resnet.layer1.0.conv1.weight"]["shape"] == [32, 3, 3, 32]


@pytest.mark.parametrize(
    ("seconds", "route"),
    [(1.0, "conv2d"), (1.0, "matmul"), pytest.param(10.0, "auto", marks=pytest.mark.slow)],
)
def test_loaded_model_equals_pyannote(wespeaker_converted, fixture_checkpoints, seconds, route, monkeypatch):
    """Either way of convolving (MLX's conv2d, or the unfolded product CUDA uses) gives pyannote's embeddings."""
    monkeypatch.setattr(wespeaker, "CONV_ROUTE", route)
    out = wespeaker_converted
    model = mlx_segmentation.load(out)
    assert isinstance(model, WeSpeakerResNet34) and model.dimension == 256
    reference = Model.from_pretrained(fixture_checkpoints["wespeaker"]).eval()
    waveforms = speech_segments(seconds, 2)
    weights = np.random.default_rng(1).random((2, 3, 40)).astype(np.float32)
    with torch.inference_mode():
        theirs = reference(torch.from_numpy(waveforms)[:, None]).numpy()
        theirs_weighted = reference(torch.from_numpy(waveforms)[:, None], weights=torch.from_numpy(weights)).numpy()
    ours = np.array(model(mx.array(waveforms)))
    ours_weighted = np.array(model(mx.array(waveforms), mx.array(weights)))
    assert ours.shape == (2, 256) and ours_weighted.shape == (2, 3, 256)
    for a, b in ((ours, theirs), (ours_weighted, theirs_weighted)):
        cosine = (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
        assert cosine.min() >= 0.9999


def test_resnet_in_parts_equals_queued_whole(wespeaker_converted):
    """The ResNet evaluated block by block (a call's default), or several blocks in flight, computes what it
    computes queued whole, bit for bit, with and without speaker weights."""
    model = mlx_segmentation.load(wespeaker_converted)
    waveforms = mx.array(speech_segments(2.0, 3))
    weights = mx.array(np.random.default_rng(2).random((3, 2, 40)).astype(np.float32))
    for extra in ((), (weights,)):
        whole = np.array(model(waveforms, *extra, parts=Parts(ahead=None)))
        for parts in (None, Parts(ahead=3)):
            np.testing.assert_array_equal(np.array(model(waveforms, *extra, parts=parts)), whole)


def test_a_recordings_embeddings_go_through_one_parts():
    """Every forward of a recording's embeddings is evaluated in one `Parts` with one part in flight, so that a
    batch's first blocks wait for the batch before (an hour on an H100 peaked at 2,237 MiB in two runs, against
    2,287 and 3,169 MiB with a `Parts` per forward, the same embeddings; benchmarks/embedding_parts.py)."""
    received = []

    def embedding(waveforms: mx.array, weights: mx.array, *, parts: Parts | None = None) -> mx.array:
        received.append(parts)
        return mx.zeros((waveforms.shape[0], weights.shape[1], 4))

    segmentation = SimpleNamespace(
        specifications=SimpleNamespace(duration=5.0, warm_up=(0.0, 0.0)), config=SimpleNamespace(sample_rate=16000)
    )
    config = SimpleNamespace(segmentation_step=0.1, embedding_batch_size=3)
    masks = np.ones((expected_windows(8.0, 5.0, 0.5), 3, 10), np.float32)  # 7 windows: 3 forwards
    audio = open_audio(np.zeros(8 * 16000, np.float32), 16000, source_rate=16000)
    assert embed_windows(embedding, audio, segmentation, masks, config).shape == (7, 3, 4)
    assert len(received) == 3 and all(parts is received[0] for parts in received)
    assert received[0].ahead == 1


def test_batch_norm_and_relu_in_one_kernel_is_mlxs_arithmetic(wespeaker_converted, monkeypatch):
    """Each batch norm and ReLU (and the residual sum) as one compiled kernel, as it runs on a GPU, forced here on
    the CPU: the embeddings MLX's separate operations give, bit for bit (on CUDA the compiled kernel may round a
    product and sum as one, a few last bits: the GPU checks pass, docs/speed.md)."""
    from mlx_segmentation import recurrence

    model = mlx_segmentation.load(wespeaker_converted)
    bn = model.resnet.layer1[0].bn1
    assert not wespeaker.fused(bn)  # no GPU here
    monkeypatch.setattr(recurrence, "gpu_backend", lambda: "cuda")
    assert wespeaker.fused(bn)
    bn.train()
    assert not wespeaker.fused(bn)  # training mode normalises with the batch's statistics: MLX's own BatchNorm
    bn.eval()
    monkeypatch.undo()
    waveforms = mx.array(speech_segments(2.0, 3))
    weights = mx.array(np.random.default_rng(3).random((3, 2, 40)).astype(np.float32))
    separate = np.array(model(waveforms, weights))
    monkeypatch.setattr(wespeaker, "fused", lambda bn: True)
    np.testing.assert_array_equal(np.array(model(waveforms, weights)), separate)


def test_too_short_input_is_refused(wespeaker_converted):
    model = mlx_segmentation.load(wespeaker_converted)
    with pytest.raises(ValueError, match="too short"):
        model(mx.zeros((1, model.min_num_samples - 1)))


def test_references_are_pyannotes_from_pretrained(fixture_checkpoints, monkeypatch):
    """The checks' reference, pyannote.audio's WeSpeakerResNet34 built from the safely read checkpoint, and
    checks.torch_wespeaker (used where pyannote.audio is absent) are both bit-identical to `Model.from_pretrained`."""
    from checks import reference
    from converter.families import model_config
    from converter.reader import read_checkpoint

    source = read_checkpoint(fixture_checkpoints["wespeaker"])
    config = model_config(source)
    built, name = reference.wespeaker_reference(source, config)
    assert name == "pyannote.audio" and type(built).__module__.startswith("pyannote.audio")
    with monkeypatch.context() as patch:
        patch.setitem(sys.modules, "pyannote.audio", None)  # makes `import pyannote.audio` fail
        own, name = reference.wespeaker_reference(source, config)
    assert name.startswith("checks.torch_wespeaker") and type(own).__name__ == "TorchWeSpeakerResNet34"
    theirs = Model.from_pretrained(fixture_checkpoints["wespeaker"]).eval()  # our own trusted fixture
    waveforms = torch.from_numpy(speech_segments(1.5, 2))[:, None]
    weights = torch.from_numpy(np.random.default_rng(2).random((2, 2, 30)).astype(np.float32))
    with torch.inference_mode():
        for w in (None, weights, weights[:, 0]):
            for ours in (built, own):
                torch.testing.assert_close(ours(waveforms, weights=w), theirs(waveforms, weights=w), rtol=0, atol=0)


def test_embedding_check_fails_a_model_further_from_float64_than_pyannotes_float32(
    wespeaker_converted, fixture_checkpoints
):
    """An embedding that stays within the cosine gate but is off by five times pyannote float32's own error
    fails the full-model check (a 3xTF32 tensor-core trial was that far: benchmarks/tensor_conv.py)."""
    from checks import reference
    from checks.embedding_metrics import MIN_COSINE, full_model_check
    from checks.gates import Gates
    from converter.reader import read_checkpoint

    model = mlx_segmentation.load(wespeaker_converted)
    ref32, _ = reference.wespeaker_reference(read_checkpoint(fixture_checkpoints["wespeaker"]), model.config)
    ref64 = reference.as_float64(ref32)
    waveforms = speech_segments(1.0, 2)
    exact = full_model_check("speech 1 s", model, ref32, ref64, waveforms, None, Gates())
    assert exact.passed and exact.max_abs_vs_float64 <= exact.tolerance == 2 * exact.reference_float32_error

    def off(x: mx.array, weights: mx.array | None) -> mx.array:
        out = model(x, weights)
        return out + mx.array(np.eye(*out.shape, dtype=np.float32) * 5 * exact.reference_float32_error)

    skewed = full_model_check("speech 1 s", off, ref32, ref64, waveforms, None, Gates())
    assert skewed.min_cosine >= MIN_COSINE and skewed.max_abs_vs_float64 > skewed.tolerance and not skewed.passed


@pytest.mark.slow
def test_build_writes_an_embedding_model_card(wespeaker_build):
    from huggingface_hub import ModelCard

    _, out = wespeaker_build
    card = ModelCard((out / "README.md").read_text())
    assert card.data.library_name == "mlx" and card.data.pipeline_tag == "feature-extraction"
    assert "speaker-embedding" in card.data.tags and "All checks passed: 8 component" in card.text
    assert (
        "passed: passed" not in card.text and "256-dimensional" in card.text and "@inproceedings{Wang2023" in card.text
    )
    manifest = json.loads((out / "manifest.json").read_text())
    assert "README.md" in manifest["files"]


@pytest.mark.slow
def test_embedding_model_can_be_published(wespeaker_build):
    """`push` verifies the checked embedding folder like a segmentation one (dry run: nothing is sent)."""
    from converter.publish import push

    _, out = wespeaker_build
    lines: list[str] = []
    push(out, "me/wespeaker-mlx", dry_run=True, log=lambda m: None, show=lines.append)
    printed = "\n".join(lines)
    for name in ("model.safetensors", "config.json", "manifest.json", "checks.json", "README.md"):
        assert name in printed

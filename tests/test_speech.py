"""Whole recordings: pipeline parity with pyannote.audio's VoiceActivityDetection, and the pieces."""

from __future__ import annotations

import copy
import dataclasses
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest
import soundfile
import soxr
import torch

import mlx_segmentation
from checks import reference
from checks.audio import long_recording, read_mono, sample_wav
from checks.pipeline import annotation, pipeline_check, pyannote_speech
from converter.families import model_config
from converter.reader import read_checkpoint
from mlx_segmentation import cpu_blas
from mlx_segmentation.audio import AudioError, open_audio
from mlx_segmentation.binarize import MULTILABEL_SPEECH, BinarizeParams, binarize, default_speech_params
from mlx_segmentation.inference import model_windows, segment, window_outputs
from mlx_segmentation.parts import Parts
from mlx_segmentation.speech import detect_speech
from mlx_segmentation.timeline import SlidingWindow
from mlx_segmentation.windows import OverlapAdd, SlidingWindows, default_step, slide, window_batches, windows

MODELS = ["segmentation-2022", "powerset"]


@pytest.fixture(scope="module")
def models(checkpoints, converted):
    """(MLX model, genuine pyannote model) for each name."""
    pairs = {}
    for name in MODELS:
        source = read_checkpoint(checkpoints[name])
        pairs[name] = (mlx_segmentation.load(converted[name]), reference.pyannote_model(source, model_config(source)))
    return pairs


@pytest.fixture(scope="module")
def recordings():
    sample, _ = read_mono(sample_wav())
    return {"sample": (sample, sample_wav().with_suffix(".rttm")), "ten-minutes": (long_recording(600.0), None)}


@pytest.mark.parametrize("recording", ["sample", pytest.param("ten-minutes", marks=pytest.mark.slow)])
@pytest.mark.parametrize("name", MODELS)
def test_pipeline_parity_with_pyannote(name, recording, models, recordings):
    model, pyannote_model = models[name]
    waveform, truth = recordings[recording]
    check = pipeline_check(
        model, pyannote_model, waveform, recording, default_speech_params(model.specifications), truth
    )
    print(check.model_dump_json())
    assert check.duration >= (30 if recording == "sample" else 600)
    if model.specifications.powerset:  # hard decisions: see checks/pipeline.py
        assert check.max_abs_score_diff_vs_float64 <= max(2e-3, 2 * check.reference_score_error)
    else:
        # against float64, not pyannote's float32 run: the distance to that one adds its own float32 error (1.3e-3
        # on the ten minutes, where ours is 7.0e-4 from float64 and 2.0e-3 from pyannote's float32, with MKL)
        assert check.max_abs_score_diff_vs_float64 <= 2e-3
    assert check.detection_error_vs_pyannote <= 0.005
    assert check.regions == check.reference_regions
    if truth is not None and name == "segmentation-2022":
        assert check.detection_error_vs_truth == pytest.approx(check.reference_detection_error_vs_truth, abs=0.005)


def test_pyannotes_pipeline_runs_at_the_batch_it_is_given(models, monkeypatch):
    """The benchmarks' peer: pyannote's VoiceActivityDetection at the given batch (once ran at its default, 32)."""
    from pyannote.audio.core.inference import Inference

    model, pyannote_model = models["segmentation-2022"]
    batches, infer = [], Inference.infer
    monkeypatch.setattr(Inference, "infer", lambda self, chunks: batches.append(len(chunks)) or infer(self, chunks))
    waveform = long_recording(30.0)
    params = default_speech_params(model.specifications)
    given, _ = pyannote_speech(pyannote_model, waveform, 16000, params, "batch", batch_size=7)
    assert batches and max(batches) == 7
    batches.clear()
    default, _ = pyannote_speech(pyannote_model, waveform, 16000, params, "batch")
    assert max(batches) == 32
    np.testing.assert_allclose(given, default, rtol=0, atol=1e-5)


@pytest.mark.slow
def test_stereo_44k_file_matches_16k_mono(models, tmp_path):
    """The same speech at 44.1 kHz stereo, read from a file, resampled and downmixed."""
    model, _ = models["segmentation-2022"]
    mono, rate = read_mono(sample_wav())
    upsampled = soxr.resample(mono, rate, 44100)
    stereo = np.stack([upsampled * 0.9, upsampled * 1.1], axis=1)  # downmix averages back to `upsampled`
    path = tmp_path / "stereo.flac"
    soundfile.write(path, stereo, 44100)
    from pyannote.metrics.detection import DetectionErrorRate

    ours_16k = detect_speech(model, sample_wav())
    ours_44k = detect_speech(model, path)
    error = DetectionErrorRate()(annotation(ours_16k.regions, "x"), annotation(ours_44k.regions, "x"))
    assert error <= 0.02
    assert abs(ours_44k.segmentation.num_samples - len(mono)) <= 1


@pytest.mark.parametrize("seconds", [0.5, 3.0, 5.0, 5.5, 6.25, 12.0])
def test_windows_and_aggregation_equal_pyannote_inference(seconds, models):
    """Shorter than a window, exactly one, ending on a step, and not: frames and scores as pyannote's."""
    from pyannote.audio import Inference

    model, pyannote_model = models["segmentation-2022"]
    pyannote_64 = reference.as_float64_on_float32_inputs(pyannote_model)
    speech, rate = read_mono(sample_wav())
    file = {"waveform": torch.from_numpy(speech[: int(seconds * rate)])[None], "sample_rate": rate}
    max_over_speakers = {"pre_aggregation_hook": lambda s: np.max(s, axis=-1, keepdims=True)}
    theirs, theirs_64 = (Inference(m, **max_over_speakers)(file) for m in (pyannote_model, pyannote_64))
    ours = detect_speech(model, file["waveform"][0].numpy(), sample_rate=rate).segmentation
    assert ours.speech.shape == theirs.data.shape == theirs_64.data.shape
    assert (ours.frames.start, ours.frames.duration, ours.frames.step) == (
        theirs.sliding_window.start,
        theirs.sliding_window.duration,
        theirs.sliding_window.step,
    )
    e = np.abs(theirs.data - theirs_64.data).max()
    error = np.abs(ours.speech - theirs_64.data).max()
    print(f"{seconds} s: max |ours - pyannote float64| {error:.2e}, pyannote float32's own {e:.2e}")
    assert error <= max(2 * e, 1e-5)


def test_binarize_equals_pyannote():
    from pyannote.audio.utils.signal import Binarize
    from pyannote.core import SlidingWindow as PyannoteWindow
    from pyannote.core import SlidingWindowFeature

    rng = np.random.default_rng(0)
    frames = SlidingWindow(start=0.0, duration=991 / 16000, step=270 / 16000)
    scores = np.clip(np.convolve(rng.uniform(0, 1, 3000), np.ones(25) / 25, mode="same") * 1.6 - 0.3, 0, 1)
    scores[rng.choice(3000, 60)] = np.nan  # neither above onset nor below offset: the state holds
    scores[2000:2200] = rng.choice([0.2, 0.5, 0.8], 200)  # values on the thresholds, and jumps across both
    for params in (
        MULTILABEL_SPEECH,
        BinarizeParams(onset=0.5, offset=0.5),
        BinarizeParams(onset=0.6, offset=0.4, min_duration_on=0.3, min_duration_off=0.5),
        BinarizeParams(onset=0.4, offset=0.6),  # onset under offset: frames between them toggle the state
    ):
        ours = [(round(r.start, 9), round(r.end, 9)) for r in binarize(scores, frames, params)]
        feature = SlidingWindowFeature(
            scores[:, None], PyannoteWindow(start=0.0, duration=frames.duration, step=frames.step)
        )
        theirs = [(round(s.start, 9), round(s.end, 9)) for s in Binarize(**params.model_dump())(feature).itersegments()]
        assert ours == theirs and len(ours) >= 2


def test_powerset_decoding_equals_pyannote(models):
    from pyannote.audio.utils.powerset import Powerset

    model, _ = models["powerset"]
    spec = model.specifications
    log_probs = torch.log_softmax(torch.randn(2, 50, 7, generator=torch.Generator().manual_seed(0)), dim=-1)
    theirs = Powerset(len(spec.classes), spec.powerset_max_classes).to_multilabel(log_probs).numpy()
    from mlx_segmentation.inference import to_multilabel

    np.testing.assert_array_equal(to_multilabel(log_probs.numpy(), model), theirs)


def test_decoding_on_the_device_equals_pyannotes_and_takes_the_first_of_tied_classes(models):
    """What the MLX forward hands over (`to_multilabel_on_device`): pyannote's decoding, and where two classes tie
    (silence and speaker 1 here, then speakers 1 and 2 alone) the first, as torch's and numpy's argmax."""
    from pyannote.audio.utils.powerset import Powerset

    from mlx_segmentation.inference import any_speaker, to_multilabel_on_device

    model, _ = models["powerset"]
    spec = model.specifications
    log_probs = torch.log_softmax(torch.randn(3, 50, 7, generator=torch.Generator().manual_seed(1)), dim=-1)
    log_probs[0, :5] = torch.tensor([0.0, 0.0, -1.0, -1.0, -1.0, -1.0, -1.0])
    log_probs[1, :5] = torch.tensor([-1.0, 0.0, 0.0, -1.0, -1.0, -1.0, -1.0])
    theirs = Powerset(len(spec.classes), spec.powerset_max_classes).to_multilabel(log_probs).numpy()
    ours = np.array(to_multilabel_on_device(mx.array(log_probs.numpy()), model))
    np.testing.assert_array_equal(ours, theirs)
    assert ours[0, 0].tolist() == [0, 0, 0] and ours[1, 0].tolist() == [1, 0, 0]
    np.testing.assert_array_equal(any_speaker(ours), ours.max(axis=-1, keepdims=True))


def test_window_scores_are_per_window_and_per_speaker(models):
    model, _ = models["segmentation-2022"]
    speech, rate = read_mono(sample_wav())
    result = detect_speech(model, speech[: 8 * rate], sample_rate=rate, keep_window_scores=True)
    assert result.segmentation.window_scores.shape == (
        7,
        293,
        3,
    )  # 8 s: windows at 0, 0.5, ..., 2.5 s and a padded last


@pytest.mark.parametrize("name", MODELS)
def test_streamed_window_outputs_equal_kept_window_scores(name, models):
    """What a per-window client (diarization) iterates is what `segment` keeps: per window, per speaker."""
    model, _ = models[name]
    speech, rate = read_mono(sample_wav())
    recording = speech[: int(12.2 * rate)]
    audio = open_audio(recording, rate, source_rate=rate)
    kept = segment(model, audio, batch_size=4, keep_window_scores=True).window_scores
    audio = open_audio(recording, rate, source_rate=rate)  # its blocks are read once
    streamed = list(window_outputs(model, audio, model_windows(model, audio), batch_size=4))
    counts = [batch.count for batch, _ in streamed]
    assert len(counts) >= 2 and set(counts[:-2]) <= {4} and counts[-1] == 1  # the last window is padded
    assert streamed[-1][0].padding > 0 and streamed[-1][0].total == len(recording)
    assert all(len(outputs) == batch.count for batch, outputs in streamed)
    np.testing.assert_array_equal(np.concatenate([outputs for _, outputs in streamed]), kept)
    frames_per_window = model.num_frames(model_windows(model, audio).window_size)
    assert kept.shape == (sum(counts), frames_per_window, len(model.specifications.classes))


@pytest.mark.parametrize("name", MODELS)
def test_forward_in_parts_equals_queued_whole(name, models):
    """Parts change when the forward's work is evaluated, not what it computes: one part in flight, three,
    or one `Parts` across successive forwards (the pipeline's way) give the outputs queued whole gives."""
    model, _ = models[name]
    speech, rate = read_mono(sample_wav())
    size = int(model.specifications.duration * rate)
    first, second = (mx.array(np.stack([speech[s : s + size] for s in starts])) for starts in ([0, 7000], [23000]))
    whole = [np.array(model(x, parts=Parts(ahead=None))) for x in (first, second)]
    for ahead in (1, 3):
        np.testing.assert_array_equal(np.array(model(first, parts=Parts(ahead))), whole[0])
    shared = Parts(ahead=4)
    np.testing.assert_array_equal(np.array(model(first, parts=shared)), whole[0])
    np.testing.assert_array_equal(np.array(model(second, parts=shared)), whole[1])
    assert len(shared.queued) == 4  # the second forward's last parts, still in flight when it returned
    np.testing.assert_array_equal(np.array(model(first)), whole[0])  # the default: parts of the call's own


@pytest.mark.skipif(cpu_blas.loaded is None, reason="the CPU's routes need MKL (the dev install has it here)")
@pytest.mark.parametrize("name", MODELS)
def test_the_cpus_routes_compute_mlxs_forward_bit_for_bit(name, models, monkeypatch):
    """On a CPU with MKL, SincNet's convolutions (in tiles of frames) and the LSTM's input projections (in ranges
    of rows, on every core) are MLX's own products: the forward is the one MLX's routes give, bit for bit, on
    speech and on a zero-padded window."""
    from mlx_segmentation import cpu_conv

    model, _ = models[name]
    speech, rate = read_mono(sample_wav())
    size = int(model.specifications.duration * rate)
    padded = np.zeros(size, np.float32)
    padded[: size // 3] = speech[: size // 3]
    x = mx.array(np.stack([speech[:size], speech[9000 : 9000 + size], padded]))
    monkeypatch.setenv(cpu_blas.THREADS_VARIABLE, "2")
    ours = np.array(model(x))
    monkeypatch.setattr(cpu_conv, "on_mkl_cpu", lambda: False)
    np.testing.assert_array_equal(ours, np.array(model(x)))


def test_forward_in_parts_holds_less_memory(models, monkeypatch):
    """Each part is waited for before the next but one is queued, so the forward's peak memory falls (208 MiB
    queued whole, 151 in parts at 8 windows of 5 s on this CPU; 634 and 273 MiB at 32 on an H100). With MLX's own
    convolutions, as on a GPU: this CPU's (cpu_conv) compute their largest outputs outside MLX."""
    from mlx_segmentation import cpu_conv

    monkeypatch.setattr(cpu_conv, "on_mkl_cpu", lambda: False)
    model, _ = models["segmentation-2022"]
    x = mx.array(np.random.default_rng(0).normal(size=(8, int(model.specifications.duration * 16000))), mx.float32)
    mx.eval(x)
    peaks = {}
    for ahead in (None, 1):
        mx.synchronize()
        mx.clear_cache()
        mx.reset_peak_memory()
        before = mx.get_active_memory()
        mx.eval(model(x, parts=Parts(ahead)))
        peaks[ahead] = mx.get_peak_memory() - before
    assert peaks[1] < 0.85 * peaks[None], peaks


def test_slide_runs_the_next_batch_before_handing_over_this_one():
    """The device overlap: batch i + 1's forward is started before batch i's outputs reach the caller."""
    events = []

    def forward(batch):
        events.append(("forward", len(events)))
        return np.zeros((batch.count, 1), np.float32)

    sliding = SlidingWindows.of(duration=5.0, step=0.5, sample_rate=16000)
    for k, (batch, outputs) in enumerate(slide(sliding, iter([np.zeros(16000 * 12, np.float32)]), forward, 4)):
        events.append(("handle", k))
        assert outputs.shape == (batch.count, 1)
    assert [kind for kind, _ in events] == ["forward"] + ["forward", "handle"] * 3 + ["handle"]  # 15 windows: 4 batches


@pytest.mark.parametrize("warm_up", [(0.0, 0.0), (0.5, 0.5), (1.0, 0.25)])
def test_default_step_is_pyannotes(warm_up, models):
    from pyannote.audio import Inference

    model, pyannote_model = models["segmentation-2022"]
    pyannote_model = copy.deepcopy(pyannote_model)
    pyannote_model.specifications = dataclasses.replace(pyannote_model.specifications, warm_up=warm_up)
    assert default_step(model.specifications.model_copy(update={"warm_up": warm_up})) == Inference(pyannote_model).step


@pytest.mark.parametrize("warm_up", [(0.0, 0.0), (0.5, 0.75)])
@pytest.mark.parametrize("hamming", [False, True])
@pytest.mark.parametrize("step", [0.5, 0.37, 0.1])
def test_overlap_add_equals_pyannote_aggregate(step, hamming, warm_up):
    """Several columns, NaN (missing) frames and whole windows, added in uneven batches: bit for bit
    `Inference.aggregate` (averages and sums), and the padding cropped as `SlidingWindowFeature.crop`."""
    from pyannote.audio import Inference
    from pyannote.core import Segment, SlidingWindowFeature
    from pyannote.core import SlidingWindow as PyannoteWindow

    rng = np.random.default_rng(0)
    scores = rng.uniform(0, 1, (23, 293, 4)).astype(np.float32)
    scores[3, 100:150, 1] = np.nan
    scores[7:9, :, 2] = np.nan  # a column missing from two windows, partly covered by their neighbours
    scores[:, :, 3] = np.nan  # a column no window has
    chunks = SlidingWindow(start=0.0, duration=5.0, step=step)
    frames = SlidingWindow(start=0.0, duration=991 / 16000, step=270 / 16000)
    overlap_add = OverlapAdd(chunks, frames, 293, num_columns=4, hamming=hamming, warm_up=warm_up)
    for first, last in [(0, 1), (1, 8), (8, 9), (9, 23)]:
        overlap_add.add(scores[first:last])
    end = 22 * step + 3.21  # the last window padded after 3.21 s

    pyannote_chunks = PyannoteWindow(start=0.0, duration=5.0, step=step)
    pyannote_frames = PyannoteWindow(start=0.0, duration=991 / 16000, step=270 / 16000)
    for missing in (np.nan, 0.0):
        theirs = Inference.aggregate(
            SlidingWindowFeature(scores.copy(), pyannote_chunks),
            pyannote_frames,
            warm_up=warm_up,
            hamming=hamming,
            missing=missing,
        )
        np.testing.assert_array_equal(overlap_add.result(missing), theirs.data)
        sums = Inference.aggregate(
            SlidingWindowFeature(scores.copy(), pyannote_chunks),
            pyannote_frames,
            warm_up=warm_up,
            hamming=hamming,
            missing=missing,
            skip_average=True,
        )
        np.testing.assert_array_equal(overlap_add.result(missing, skip_average=True), sums.data)
        cropped = theirs.crop(Segment(0.0, end), mode="loose")
        np.testing.assert_array_equal(overlap_add.result(missing, end=end), cropped)
        assert len(cropped) < len(theirs.data)
    assert (overlap_add.frames.start, overlap_add.frames.duration, overlap_add.frames.step) == (
        theirs.sliding_window.start,
        theirs.sliding_window.duration,
        theirs.sliding_window.step,
    )
    cropped = overlap_add.result(end=end)
    assert np.isnan(cropped[:, 3]).all() and not np.isnan(cropped[:, :3]).any()


def test_cutting_windows_holds_only_a_few_windows():
    """Two hours of audio in 30 s blocks: the window cutter's memory stays at a batch's span."""
    block = np.zeros(16000 * 30, dtype=np.float32)
    tracemalloc.start()
    count = 0
    for batch in window_batches((block for _ in range(240)), window_size=80000, step_size=8000, batch_size=32):
        count += batch.count
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert count == (7200 * 16000 - 80000) // 8000 + 1
    assert peak < 5 * block.nbytes  # a few blocks, where two hours of audio would be 460 MB


@pytest.mark.parametrize("samples", [800, 80000, 80001, 88000, 100000, 123457, 250001])
@pytest.mark.parametrize("block", [50000, 777])  # blocks larger than a batch's step, and far smaller
def test_window_batches_cut_as_pyannote(samples, block):
    """Every window, padded last one included, equals what Inference.slide cuts."""
    audio = np.arange(samples, dtype=np.float32)
    blocks = (audio[i : i + block] for i in range(0, samples, block))
    got = [np.array(windows(b, 80000, 8000)) for b in window_batches(blocks, 80000, 8000, 3)]
    got = np.concatenate(got)
    torch_audio = torch.from_numpy(audio)[None]
    expected = [] if samples < 80000 else list(torch_audio.unfold(1, 80000, 8000)[0].numpy())
    if samples < 80000 or (samples - 80000) % 8000 > 0:
        last = audio[len(expected) * 8000 :]
        expected.append(np.pad(last, (0, 80000 - len(last))))
    np.testing.assert_array_equal(got, np.stack(expected))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_text("not audio") and p, "cannot read audio"),
        (lambda p: soundfile.write(p, np.zeros((0, 1), np.float32), 16000) or p, "holds no audio"),
        (
            lambda p: soundfile.write(p, np.zeros(800, np.float32), 16000) or p,
            "shorter than the model's minimum of 1261",
        ),
        (
            lambda p: soundfile.write(p, np.full(32000, np.nan, np.float32), 16000, subtype="FLOAT") or p,
            "non-finite sample",
        ),
    ],
    ids=["unreadable", "empty", "too short", "NaN"],
)
def test_bad_audio_gets_one_clear_line(make, message, converted, tmp_path):
    path = make(tmp_path / "bad.wav")
    run = subprocess.run(
        [sys.executable, "-m", "mlx_segmentation", str(path), "--model", str(converted["segmentation-2022"])],
        capture_output=True,
        text=True,
    )
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert run.returncode == 2 and len(errors) == 1, run.stderr
    assert message in errors[0]


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_arrays_with_non_finite_samples_are_refused_where_they_are(bad, models):
    """A NaN or an infinity anywhere in an array is refused with its time (found by the array's minimum and
    maximum, then located), and the caller's samples, read in place, are left as they were."""
    model, _ = models["segmentation-2022"]
    audio = np.zeros(16000 * 12, np.float32)
    audio[16000 * 7 + 8000] = bad
    kept = audio.copy()
    with pytest.raises(AudioError, match=r"non-finite sample \(NaN or Inf\) at 7\.500 s"):
        detect_speech(model, audio, sample_rate=16000)
    np.testing.assert_array_equal(audio, kept)


def test_arrays_need_their_sample_rate(models):
    model, _ = models["segmentation-2022"]
    with pytest.raises(AudioError, match="needs its sample rate"):
        detect_speech(model, np.zeros(16000, np.float32))


def test_cli_writes_rttm_and_scores(converted, tmp_path):
    rttm, scores = tmp_path / "out.rttm", tmp_path / "scores.npz"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlx_segmentation",
            str(sample_wav()),
            "--model",
            str(converted["segmentation-2022"]),
            "--rttm",
            str(rttm),
            "--scores",
            str(scores),
        ],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    lines = rttm.read_text().splitlines()
    assert len(lines) == 3 and all(line.startswith("SPEAKER sample 1 ") and " SPEECH " in line for line in lines)
    saved = np.load(scores)
    assert saved["data"].shape == (1779, 1)
    assert (
        float(saved["step"]) == 270 / 16000 and float(saved["duration"]) == 991 / 16000 and float(saved["start"]) == 0.0
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--step", "0.00001"], "step must be at least one sample (1/16000 s), got 1e-05 s"),
        (["--step", "0"], "--step must be a positive number of seconds"),
        (["--step", "nan"], "--step must be a positive number of seconds"),
        (["--step", "6"], "step must be in (0, 5] seconds"),
        (["--batch-size", "0"], "--batch-size must be at least 1"),
        (["--onset", "2"], "--onset: input should be less than or equal to 1, got 2.0"),
        (["--offset", "-0.5"], "--offset: input should be greater than or equal to 0"),
        (["--min-duration-on", "inf"], "--min-duration-on: input should be a finite number"),
        (["--rttm", "{tmp}/missing/out.rttm"], "the folder {tmp}/missing does not exist"),
        (["--rttm", "{tmp}"], "is a folder, not a file name"),
        (["--scores", "{tmp}/missing/scores.npz"], "does not exist"),
    ],
    ids=[
        "step rounds to 0 samples",
        "step 0",
        "step NaN",
        "step over the window",
        "batch 0",
        "onset 2",
        "offset -0.5",
        "infinite min-duration-on",
        "rttm in a missing folder",
        "rttm is a folder",
        "scores in a missing folder",
    ],
)
def test_bad_options_get_one_clear_line_before_any_work(options, message, converted, tmp_path):
    options = [o.replace("{tmp}", str(tmp_path)) for o in options]
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlx_segmentation",
            str(sample_wav()),
            "--model",
            str(converted["segmentation-2022"]),
            *options,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert run.returncode == 2 and len(errors) == 1 and "Traceback" not in run.stderr, run.stderr
    assert message.replace("{tmp}", str(tmp_path)) in errors[0]
    assert run.stdout == "" and sorted(p.name for p in tmp_path.iterdir()) == []


def test_an_embedding_model_is_named_as_such(fixture_checkpoints, tmp_path):
    from converter.build import build

    folder = build(fixture_checkpoints["wespeaker"], tmp_path / "wespeaker", log=lambda m: None).out
    run = subprocess.run(
        [sys.executable, "-m", "mlx_segmentation", str(sample_wav()), "--model", str(folder)],
        capture_output=True,
        text=True,
    )
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert run.returncode == 2 and len(errors) == 1, run.stderr
    assert "holds a speaker-embedding model; speech detection needs a segmentation model" in errors[0]


def test_small_frictions_have_clear_answers(converted, tmp_path):
    """A multilabel model asked for powerset classes, a region's repr, a missing audio file (issue #13)."""
    from mlx_segmentation.timeline import Region

    multilabel = mlx_segmentation.load(converted["segmentation-2022"]).specifications
    with pytest.raises(ValueError, match="multi_label_classification model has no powerset classes"):
        multilabel.powerset_classes()
    assert repr(Region(6.730343750000001, 7.17)) == "Region(start=6.730344, end=7.17)"
    with pytest.raises(AudioError, match="nowhere.wav: no such file"):
        open_audio(tmp_path / "nowhere.wav", 16000)


ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    """The speech CLI of this checkout from any folder, with help lines wide enough not to wrap."""
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "COLUMNS": "1000", "PYTHONPATH": path}
    command = [sys.executable, "-m", "mlx_segmentation", *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=env, timeout=120)


def cli_help(*args: str, cwd: Path) -> str:
    """`--help`'s text with runs of spaces collapsed (argparse pads options into columns)."""
    run = run_cli("--help", *args, cwd=cwd)
    assert run.returncode == 0, run.stderr
    return " ".join(run.stdout.split())


def test_default_model_is_dist_segmentation_3(converted, tmp_path):
    """Without --model, the CLI runs the folder `python -m converter build` writes, relative to the current folder."""
    (tmp_path / "dist").mkdir()
    (tmp_path / "dist" / "segmentation-3.0").symlink_to(converted["segmentation-3.0"])
    run = run_cli(str(sample_wav()), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines and all(line.startswith("SPEAKER sample 1 ") and " SPEECH " in line for line in lines)
    assert run.stdout == run_cli(str(sample_wav()), "--model", str(converted["segmentation-3.0"])).stdout
    help_text = cli_help(cwd=tmp_path)
    assert "(default for dist/segmentation-3.0: 0.5)" in help_text  # --onset, from its config


def test_missing_default_model_gets_one_clear_line(tmp_path):
    run = run_cli(str(sample_wav()), cwd=tmp_path)
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert run.returncode == 2 and len(errors) == 1 and run.stdout == "", run.stderr
    assert "no model folder dist/segmentation-3.0 here: run `python -m converter build` first" in errors[0]
    assert "or pass --model" in errors[0]


def test_help_shows_the_given_models_defaults(converted, tmp_path):
    model = str(converted["segmentation-2022"])
    help_text = cli_help("--model", model, cwd=tmp_path)
    for option, value in [("onset", 0.767), ("offset", 0.377), ("min-duration-on", 0.136), ("min-duration-off", 0.067)]:
        metavar = option.upper().replace("-", "_")
        assert f"--{option} {metavar} speech detection parameter (default for {model}: {value})" in help_text
    assert f"seconds between windows (default for {model}: 0.5)" in help_text
    assert "Hugging Face Hub repo id ORG/NAME" in help_text and "default: dist/segmentation-3.0" in help_text


def test_help_without_a_readable_model_states_pyannotes_rule(tmp_path):
    """No default folder here, and a Hub repo id is not fetched for --help: pyannote's values per model kind."""
    rule = "(default: pyannote's for the model, 0.767 for pyannote/segmentation, 0.5 for powerset models)"
    for args in ([], ["--model", "pyannote/segmentation-3.0"]):
        assert f"--onset ONSET speech detection parameter {rule}" in cli_help(*args, cwd=tmp_path)

"""Speed of the MLX model against the PyTorch reference, on the same machine and weights, in one run.

    python benchmarks/speed.py --checkpoint pytorch_model.bin [--batches 1 8 32 256] [--minutes 60] [--out speed.json]

Builds the MLX model from the checkpoint (timing the conversion), then measures:
- raw windows: seconds of audio per second at each batch size, MLX and PyTorch, and their ratio;
- a whole recording through speech detection (`--minutes` of real speech): MLX's pipeline against
  pyannote.audio's VoiceActivityDetection when pyannote.audio is installed, else against the
  PyTorch reference model inside the same windowing and aggregation;
- peak memory of each framework.
On a machine with CUDA both frameworks run on the GPU (PyTorch in exact float32: no TF32); on Apple
silicon MLX runs on Metal and PyTorch on "mps" (float32; the float64 yardstick on the CPU, which MPS
lacks). BENCH_TORCH_DEVICE=cpu (or cuda, mps) overrides PyTorch's device.
The PyTorch reference is pyannote.audio's PyanNet when installed, else checks.torch_pyannet, which
tests prove bit-identical to it. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch

if torch.cuda.is_available():  # load PyTorch's own cuDNN before MLX's CUDA libraries bring another one
    torch.backends.cudnn.version()
import mlx_segmentation  # noqa: E402, I001  (before MLX: where installed, it loads MKL for MLX's CPU backend)
import mlx.core as mx  # noqa: E402

from checks import reference
from checks.audio import long_recording
from converter.build import build
from converter.families import model_config
from converter.reader import read_checkpoint
from mlx_segmentation import pyannet, recurrence
from mlx_segmentation.audio import open_audio
from mlx_segmentation.inference import segment
from timing import timed


def torch_sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()
    elif device == "mps":
        torch.mps.synchronize()


def torch_device() -> str:
    """PyTorch's device: BENCH_TORCH_DEVICE if set, else cuda, else mps (Apple silicon's GPU), else cpu."""
    if os.environ.get("BENCH_TORCH_DEVICE"):
        return os.environ["BENCH_TORCH_DEVICE"]
    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def device_name(device: str) -> str:
    """The machine's accelerator or processor, by name: the CUDA card, a Mac's chip ("Apple M2 Max"), or the CPU."""
    if device == "cuda":
        return torch.cuda.get_device_name()
    if platform.system() == "Darwin":
        found = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True)
        return found.stdout.strip() or platform.machine()
    return platform.processor() or "cpu"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32, 256])
    parser.add_argument("--minutes", type=float, default=60.0, help="length of the whole-recording run (0 to skip)")
    parser.add_argument("--pipeline-batch", type=int, default=32, help="batch size of the whole-recording run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--profile", type=int, default=0, help="also time each MLX stage at this batch size")
    parser.add_argument(
        "--dtype",
        choices=["float32", "float16", "bfloat16"],
        default="float32",
        help="MLX weights' dtype (PyTorch stays float32)",
    )
    parser.add_argument(
        "--torch-in-our-windowing",
        action="store_true",
        help="run PyTorch's model in our windowing and aggregation even where pyannote.audio's pipeline is installed",
    )
    parser.add_argument(
        "--sincnet-chunk-samples", type=int, help="override pyannet.SINCNET_CHUNK_SAMPLES (memory against speed)"
    )
    parser.add_argument("--lstm-part-values", type=int, help="override pyannet.LSTM_PART_VALUES (memory against speed)")
    parser.add_argument("--out", type=Path, default=Path("speed.json"))
    args = parser.parse_args()
    if args.sincnet_chunk_samples:
        pyannet.SINCNET_CHUNK_SAMPLES = args.sincnet_chunk_samples
    if args.lstm_part_values:
        pyannet.LSTM_PART_VALUES = args.lstm_part_values

    device = torch_device()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    gpu = mx.default_device().type == mx.DeviceType.gpu
    results: dict = {
        "platform": platform.platform(),
        "device": device_name(device),
        "mlx_device": str(mx.default_device()),
        "torch_device": device,
        "mlx_dtype": args.dtype,
        "lstm_kernel": (recurrence.gpu_backend() if args.dtype == "float32" else None)
        or ("numpy" if recurrence.numpy_applies(mx.float32) and args.dtype == "float32" else "portable"),
        "sincnet_chunk_samples": pyannet.SINCNET_CHUNK_SAMPLES,
        "lstm_part_values": pyannet.LSTM_PART_VALUES,
        "torch_threads": torch.get_num_threads(),
        "mlx_cpu_blas": mlx_segmentation.cpu_blas.described(),
        "versions": {"mlx": mx.__version__, "torch": torch.__version__},
    }

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        folder = build(args.checkpoint, Path(tmp) / "model", dtype=args.dtype, log=lambda m: None).out
        results["convert_seconds"] = round(time.perf_counter() - start, 2)
        model = mlx_segmentation.load(folder)
    source = read_checkpoint(args.checkpoint)
    ref, reference_name = reference.reference_model(source, model_config(source))
    ref = ref.to(device)
    results["reference"] = reference_name
    window = int(model.specifications.duration * model.config.sample_rate)
    rng = np.random.default_rng(0)

    rows = []
    for batch in args.batches:
        audio = (rng.standard_normal((batch, window)) * 0.1).astype(np.float32)
        x_mlx = mx.array(audio)
        x_torch = torch.from_numpy(audio)[:, None].to(device)

        def run_mlx():
            mx.eval(model(x_mlx))

        def run_torch():
            with torch.inference_mode():
                ref(x_torch)
            torch_sync(device)

        mx.reset_peak_memory()
        t_mlx = timed(run_mlx, args.repeats)
        mlx_peak = round(mx.get_peak_memory() / 2**20, 1) if gpu else None
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        t_torch = timed(run_torch, args.repeats)
        torch_peak = round(torch.cuda.max_memory_allocated() / 2**20, 1) if device == "cuda" else None
        seconds = batch * model.specifications.duration
        rows.append(
            {
                "batch": batch,
                "mlx_seconds": round(t_mlx, 4),
                "torch_seconds": round(t_torch, 4),
                "mlx_audio_per_second": round(seconds / t_mlx, 1),
                "torch_audio_per_second": round(seconds / t_torch, 1),
                "mlx_over_torch_time": round(t_mlx / t_torch, 3),
                "mlx_peak_memory_mib": mlx_peak,
                "torch_peak_memory_mib": torch_peak,
            }
        )
        print(
            f"batch {batch:>5}: MLX {t_mlx:8.4f} s, PyTorch {t_torch:8.4f} s, MLX/PyTorch time {t_mlx / t_torch:6.2f}",
            flush=True,
        )
    results["windows"] = rows

    if args.profile:
        results["mlx_profile"] = profile(model, args.profile, window, args.repeats)
    if args.minutes > 0:
        recording = long_recording(args.minutes * 60)
        results["recording_minutes"] = args.minutes
        results["pipeline_batch"] = args.pipeline_batch
        results["torch_pipeline_batch"] = args.pipeline_batch  # pyannote's pipeline too, since it is given it

        peer = "ours" if args.torch_in_our_windowing else reference_name

        def mlx_pipeline():
            audio = open_audio(recording, model.config.sample_rate, source_rate=model.config.sample_rate)
            return segment(model, audio, batch_size=args.pipeline_batch)

        # Twice each: the first run in a process also compiles kernels for the last batches' shapes.
        start = time.perf_counter()
        mlx_pipeline()
        results["mlx_pipeline_first_seconds"] = round(time.perf_counter() - start, 2)
        mx.reset_peak_memory()
        start = time.perf_counter()
        segmentation = mlx_pipeline()
        results["mlx_pipeline_seconds"] = round(time.perf_counter() - start, 2)
        results["mlx_peak_memory_mib"] = round(mx.get_peak_memory() / 2**20, 1) if gpu else None
        start = time.perf_counter()
        torch_pipeline(ref, peer, recording, model, device, args.pipeline_batch)
        results["torch_pipeline_first_seconds"] = round(time.perf_counter() - start, 2)
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        torch_scores, how = torch_pipeline(ref, peer, recording, model, device, args.pipeline_batch)
        results["torch_pipeline_seconds"] = round(time.perf_counter() - start, 2)
        results["torch_pipeline"] = how
        results["torch_peak_memory_mib"] = (
            round(torch.cuda.max_memory_allocated() / 2**20, 1) if device == "cuda" else None
        )
        results["pipeline_max_abs_score_diff"] = float(np.abs(segmentation.speech - torch_scores).max())
        if reference_name != "pyannote.audio":  # the yardstick: the same reference in float64
            device64 = "cpu" if device == "mps" else device  # MPS has no float64
            ref64 = reference.as_float64_on_float32_inputs(ref).to(device64)
            scores_64, _ = torch_pipeline(ref64, reference_name, recording, model, device64, args.pipeline_batch)
            results["pipeline_mlx_vs_float64"] = float(np.abs(segmentation.speech - scores_64).max())
            results["pipeline_torch_float32_vs_float64"] = float(np.abs(torch_scores - scores_64).max())
            print(
                f"aggregated scores against float64: MLX {results['pipeline_mlx_vs_float64']:.2e}, "
                f"PyTorch float32 {results['pipeline_torch_float32_vs_float64']:.2e}",
                flush=True,
            )
        results["mlx_over_torch_pipeline_time"] = round(
            results["mlx_pipeline_seconds"] / results["torch_pipeline_seconds"], 3
        )
        mlx_seconds, torch_seconds = results["mlx_pipeline_seconds"], results["torch_pipeline_seconds"]
        print(f"{args.minutes:g} min recording: MLX {mlx_seconds} s, PyTorch ({how}) {torch_seconds} s", flush=True)
    results["process_peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


def profile(model, batch: int, window: int, repeats: int) -> dict[str, float]:
    """Seconds spent in each stage of the MLX model, each stage run on its own on the previous stage's output."""
    from mlx_segmentation.pyannet import linear_activation

    sincnet = model.sincnet
    stages: list[tuple[str, Callable[[mx.array], mx.array]]] = [
        ("wav_norm1d", lambda x: sincnet.wav_norm1d(x[:, :, None])),
        *((f"sincnet.stage{c}", partial(sincnet.stage, c)) for c in range(len(sincnet.conv1d))),
        *((f"lstm{k}", lambda x, layer=layer: layer(x)[0]) for k, layer in enumerate(model.lstm.layers)),
        *((f"linear{k}", lambda x, layer=layer: linear_activation(layer(x))) for k, layer in enumerate(model.linear)),
        ("classifier", model.classifier),
        ("activation", model.activation),
    ]

    waveforms = mx.array((np.random.default_rng(1).standard_normal((batch, window)) * 0.1).astype(np.float32))
    outputs, times = waveforms.astype(model.classifier.weight.dtype), {}  # the forward computes in the weights' dtype
    for name, stage in stages:
        times[name] = round(timed(lambda stage=stage, inputs=outputs: mx.eval(stage(inputs)), repeats), 5)
        print(f"  {name:<20} {times[name]:.5f} s", flush=True)
        outputs = stage(outputs)
        mx.eval(outputs)
    if not mx.allclose(outputs, model(waveforms), rtol=1e-4, atol=1e-5).item():
        raise RuntimeError("the profiled stages no longer compose to the model's forward")
    return times


class OnDevice:
    """A PyTorch result left where it was computed until the pipeline reads it, so that PyTorch's
    asynchronous CUDA launches overlap the host's aggregation just as MLX's asynchronous evaluation does."""

    def __init__(self, tensor: torch.Tensor):
        self.tensor = tensor

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        return self.tensor.float().cpu().numpy()


def torch_pipeline(ref, peer: str, recording: np.ndarray, model, device: str, batch_size: int):
    """Aggregated speech scores from PyTorch: pyannote's own pipeline if `peer` is "pyannote.audio", else the torch
    model in ours."""
    if peer == "pyannote.audio":
        from checks.pipeline import pyannote_speech
        from mlx_segmentation.binarize import default_speech_params

        params = default_speech_params(model.specifications)
        scores, _ = pyannote_speech(ref, recording, model.config.sample_rate, params, "bench", batch_size)
        return scores, "pyannote.audio VoiceActivityDetection"

    def torch_forward(batch, window_size: int, step_size: int) -> OnDevice:
        span = torch.from_numpy(batch.span)  # pinned, so that the copy does not wait for the previous batch
        span = span.pin_memory().to(device, non_blocking=True) if device == "cuda" else span
        with torch.inference_mode():
            return OnDevice(ref(span.unfold(0, window_size, step_size)[: batch.count, None]))

    audio = open_audio(recording, model.config.sample_rate, source_rate=model.config.sample_rate)
    scores = segment(model, audio, batch_size=batch_size, forward=torch_forward).speech
    return scores, "torch reference model in the same windowing and aggregation"


if __name__ == "__main__":
    main()

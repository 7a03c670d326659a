"""Speed of speaker-embedding extraction (WeSpeakerResNet34), MLX against PyTorch, one run, one machine.

    python benchmarks/embedding_speed.py --checkpoint wespeaker.ckpt [--seconds 3 10] [--batches 1 8 32]
        [--out embedding_speed.json]

Builds the MLX model from the checkpoint (timing the conversion), then, for each segment length and
batch size, times MLX and the PyTorch reference (pyannote.audio's model, else checks.torch_wespeaker,
bit-identical to it) on real speech, fbank included; reports seconds of audio per second, the
ratio, and the two outputs' lowest cosine. On a machine with CUDA both run on the GPU, exact float32; on
Apple silicon MLX on Metal and PyTorch on "mps" (speed.py's `torch_device`, BENCH_TORCH_DEVICE overrides).
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

if torch.cuda.is_available():  # load PyTorch's own cuDNN before MLX's CUDA libraries bring another one
    torch.backends.cudnn.version()
import mlx_segmentation  # noqa: E402, I001  (before MLX: where installed, it loads MKL for MLX's CPU backend)
import mlx.core as mx  # noqa: E402
from speed import device_name, torch_device, torch_sync
from timing import timed

from checks.audio import speech_segments
from checks.embedding_metrics import cosines
from checks.reference import wespeaker_reference
from converter.build import build
from converter.reader import read_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--seconds", type=float, nargs="+", default=[3.0, 10.0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("embedding_speed.json"))
    args = parser.parse_args()

    device = torch_device()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    results: dict = {
        "platform": platform.platform(),
        "device": device_name(device),
        "mlx_device": str(mx.default_device()),
        "torch_device": device,
        "torch_threads": torch.get_num_threads(),
        "mlx_cpu_blas": mlx_segmentation.cpu_blas.described(),
        "versions": {"mlx": mx.__version__, "torch": torch.__version__},
    }
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        folder = build(args.checkpoint, Path(tmp) / "model", log=lambda m: None).out
        results["convert_seconds"] = round(time.perf_counter() - start, 2)
        model = mlx_segmentation.load(folder)
    ref, results["reference"] = wespeaker_reference(read_checkpoint(args.checkpoint), model.config)
    ref = ref.to(device)

    rows = []
    for seconds in args.seconds:
        for batch in args.batches:
            # Each row from empty caches: MLX's and PyTorch's caches together once filled the H200 at 10 s x 64.
            mx.clear_cache()
            if device == "cuda":
                torch.cuda.empty_cache()
            audio = speech_segments(seconds, batch)
            x_mlx, x_torch = mx.array(audio), torch.from_numpy(audio)[:, None].to(device)

            def run_mlx():
                return mx.eval(model(x_mlx))

            def run_torch():
                with torch.inference_mode():
                    out = ref(x_torch)
                torch_sync(device)
                return out

            try:
                t_mlx = timed(run_mlx, args.repeats)
            except RuntimeError as error:  # MLX 0.32.4's CUDA conv2d fails on some shapes (see README)
                rows.append({"seconds": seconds, "batch": batch, "mlx_error": str(error)})
                print(f"{seconds:g} s x {batch:>3}: MLX failed: {error}", flush=True)
                continue
            t_torch = timed(run_torch, args.repeats)
            ours, theirs = np.array(model(x_mlx)), run_torch().cpu().numpy()
            cosine = float(cosines(ours, theirs).min())
            audio_seconds = batch * seconds
            rows.append(
                {
                    "seconds": seconds,
                    "batch": batch,
                    "mlx_seconds": round(t_mlx, 4),
                    "torch_seconds": round(t_torch, 4),
                    "mlx_audio_per_second": round(audio_seconds / t_mlx, 1),
                    "torch_audio_per_second": round(audio_seconds / t_torch, 1),
                    "mlx_over_torch_time": round(t_mlx / t_torch, 3),
                    "min_cosine": cosine,
                }
            )
            print(
                f"{seconds:g} s x {batch:>3}: MLX {t_mlx:8.4f} s, PyTorch {t_torch:8.4f} s, "
                f"MLX/PyTorch time {t_mlx / t_torch:6.2f}, cosine {cosine:.7f}",
                flush=True,
            )
    results["embeddings"] = rows
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()

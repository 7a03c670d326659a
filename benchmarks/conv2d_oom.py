"""Look for MLX CUDA's `conv2d` out-of-memory failure on WeSpeaker shapes, and reduce it to one convolution.

    python benchmarks/conv2d_oom.py --checkpoint wespeaker.ckpt [--seconds 3 10] [--batches 1 2 4 8 32 128]
        [--out conv2d_oom.json]

Earlier runs of MLX 0.32.4 on an H100 saw `cudaMallocAsync ... out of memory` from the WeSpeaker
ResNet34 at 3 s x 4/8/32 and 10 s x 128, with a quarter of a GiB in use. This runs the MLX model at
each (length, batch), recording every convolution's shapes; where the model fails, each of its
convolutions is run alone at that batch, and the first that fails is written out as the minimal
reproduction (one `mx.conv2d` call with its shapes). `--route kernel` runs the model as the runtime
does on CUDA (`conv_kernel.conv2d`), `--route matmul` as unfolded products (`wespeaker.unfolded_conv2d`),
to show the workarounds at the same shapes.
"""

from __future__ import annotations  # noqa: I001  (mlx_segmentation before MLX: it may load MKL for MLX's CPU)

import argparse
import json
import platform
import tempfile
from pathlib import Path

import mlx_segmentation
import mlx.core as mx
import numpy as np

from converter.build import build
from mlx_segmentation import wespeaker

SAMPLE_RATE = 16000


def record_convolutions(model, seconds: float) -> list[dict]:
    """The (input shape, weight shape, stride, padding) of each Conv2d call in one batch-1 forward."""
    calls: list[dict] = []
    original = wespeaker.Conv2d.__call__

    def recording(self, x):
        calls.append(
            {"input": list(x.shape), "weight": list(self.weight.shape), "stride": self.stride, "padding": self.padding}
        )
        return original(self, x)

    wespeaker.Conv2d.__call__ = recording
    try:
        mx.eval(model(waveforms(seconds, 1)))
    finally:
        wespeaker.Conv2d.__call__ = original
    return calls


def waveforms(seconds: float, batch: int) -> mx.array:
    rng = np.random.default_rng(0)
    return mx.array(rng.normal(0, 0.1, (batch, 1, int(seconds * SAMPLE_RATE))).astype(np.float32))


def attempt(function) -> str | None:
    """None if `function` evaluates, else the error's first line."""
    try:
        mx.eval(function())
        mx.synchronize()
        return None
    except RuntimeError as error:
        return str(error).splitlines()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--seconds", type=float, nargs="+", default=[3.0, 10.0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 8, 32, 128])
    parser.add_argument("--route", choices=["conv2d", "matmul", "kernel"], default="conv2d", help="how it convolves")
    parser.add_argument("--out", type=Path, default=Path("conv2d_oom.json"))
    args = parser.parse_args()
    wespeaker.CONV_ROUTE = args.route

    with tempfile.TemporaryDirectory() as tmp:
        model = mlx_segmentation.load(build(args.checkpoint, Path(tmp) / "model", log=lambda m: None).out)
    results: dict = {
        "platform": platform.platform(),
        "mlx": mx.__version__,
        "device": str(mx.default_device()),
        "route": args.route,
    }
    rows = []
    for seconds in args.seconds:
        convolutions = record_convolutions(model, seconds)
        for batch in args.batches:
            mx.reset_peak_memory()
            error = attempt(lambda: model(waveforms(seconds, batch)))
            row = {"seconds": seconds, "batch": batch, "error": error, "peak_memory_mib": mx.get_peak_memory() / 2**20}
            if error is not None:
                row["failing_convolution"] = first_failing(convolutions, batch)
            rows.append(row)
            print(json.dumps(row), flush=True)
    results["runs"] = rows
    args.out.write_text(json.dumps(results, indent=2) + "\n")


def first_failing(convolutions: list[dict], batch: int) -> dict | None:
    """The first recorded convolution that fails alone at `batch`, with its error; None if each one runs."""
    rng = np.random.default_rng(1)
    for call in convolutions:
        shape = [batch, *call["input"][1:]]
        x = mx.array(rng.normal(0, 1, shape).astype(np.float32))
        w = mx.array(rng.normal(0, 0.1, call["weight"]).astype(np.float32))
        error = attempt(lambda x=x, w=w, call=call: mx.conv2d(x, w, stride=call["stride"], padding=call["padding"]))
        if error is not None:
            return {**call, "input": shape, "error": error}
    return None


if __name__ == "__main__":
    main()

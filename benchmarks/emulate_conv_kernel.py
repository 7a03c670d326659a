"""Runs the CUDA convolution kernel's source on the CPU, to check its logic without a GPU.

    python benchmarks/emulate_conv_kernel.py

Compiles `conv_kernel.SOURCE` with g++ (C++20), one OS thread per CUDA thread of a block, blocks one
after another, `__syncthreads` as a `std::barrier`; then compares the outputs at odd shapes (partial
tiles, strides, 1 x 1 and 3 x 3 kernels, both partial-sum modes) with float64, printing each one's
largest and root-mean-square distance relative to the output's scale. Exits 1 if one is over 1e-5.
It checks indexing, tiling and the order of the sums, not speed or the GPU's own rounding.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from gpu_kernels import float64_conv2d

from mlx_segmentation import conv_kernel

HARNESS = r"""
#include <barrier>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <thread>
#include <vector>
struct float4 { float x, y, z, w; };
static inline float4 make_float4(float a, float b, float c, float d) { return {a, b, c, d}; }
struct Dim { int x, y, z; };
thread_local Dim threadIdx;
Dim blockIdx;
std::barrier<>* block_barrier;
#define __syncthreads() block_barrier->arrive_and_wait()
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))
void kernel(const float* x, const float* w, const int* sizes, float* y) {
SOURCE
}
int main(int argc, char** argv) {
  int sizes[13];
  FILE* f = fopen(argv[1], "rb");
  if (fread(sizes, 4, 13, f) != 13) return 1;
  const int CI = sizes[5], CO = sizes[6];
  const long nx = (long)sizes[0] * sizes[1] * sizes[2] * CI, nw = (long)CO * sizes[7] * sizes[8] * CI;
  const long M = (long)sizes[0] * sizes[3] * sizes[4];
  std::vector<float> x(nx), w(nw), y(M * CO, NAN);
  if (fread(x.data(), 4, nx, f) != (size_t)nx || fread(w.data(), 4, nw, f) != (size_t)nw) return 1;
  fclose(f);
  constexpr int THREADS = (BM / TM) * (BN / TN);
  std::barrier<> barrier(THREADS);
  block_barrier = &barrier;
  for (int bx = 0; bx < (M + BM - 1) / BM; ++bx)
    for (int by = 0; by < CO / BN; ++by) {
      blockIdx = {bx, by, 0};
      std::vector<std::thread> threads;
      for (int t = 0; t < THREADS; ++t)
        threads.emplace_back([&, t] { threadIdx = {t, 0, 0}; kernel(x.data(), w.data(), sizes, y.data()); });
      for (auto& thread : threads) thread.join();
    }
  f = fopen(argv[2], "wb");
  fwrite(y.data(), 4, M * CO, f);
  fclose(f);
}
"""

CASES = (  # input (batch, height, width, channels), out channels, kernel, stride
    ((3, 20, 13, 32), 32, 3, 1),
    ((2, 17, 11, 32), 64, 3, 2),
    ((2, 10, 9, 64), 128, 1, 2),
    ((1, 9, 7, 256), 256, 3, 1),
)


def emulate(x: np.ndarray, weight: np.ndarray, stride: int, sums: int, folder: Path) -> np.ndarray:
    """The kernel's output for channels-last x and weight (out, kh, kw, in), padding kernel // 2."""
    batch, height, width, in_channels = x.shape
    out_channels, kernel, _, _ = weight.shape
    padding = kernel // 2
    out_h, out_w = (height + 2 * padding - kernel) // stride + 1, (width + 2 * padding - kernel) // stride + 1
    bm, bn, tm, tn, bk = conv_kernel.tile(out_channels)
    template = dict(BM=bm, BN=bn, TM=tm, TN=tn, BK=bk, SUMS=sums)
    source, program = folder / "kernel.cpp", folder / "kernel"
    source.write_text(HARNESS.replace("SOURCE", conv_kernel.SOURCE))
    defines = [f"-D{name}={value}" for name, value in template.items()]
    subprocess.run(["g++", "-O2", "-std=c++20", "-pthread", *defines, str(source), "-o", str(program)], check=True)
    with open(folder / "in.bin", "wb") as f:
        sizes = [batch, height, width, out_h, out_w, in_channels, out_channels, kernel, kernel]
        np.array(sizes + [stride, stride, padding, padding], np.int32).tofile(f)
        x.astype(np.float32).tofile(f)
        weight.reshape(out_channels, -1).astype(np.float32).tofile(f)
    subprocess.run([str(program), str(folder / "in.bin"), str(folder / "out.bin")], check=True)
    return np.fromfile(folder / "out.bin", np.float32).reshape(batch, out_h, out_w, out_channels)


def main() -> int:
    rng = np.random.default_rng(0)
    worst = 0.0
    with tempfile.TemporaryDirectory() as folder:
        for shape, out_channels, kernel, stride in CASES:
            x = np.maximum(rng.normal(0, 1, shape), 0).astype(np.float32)  # after a ReLU: sums that do not cancel
            weight = rng.normal(0.01, 0.1, (out_channels, kernel, kernel, shape[-1])).astype(np.float32)
            exact = float64_conv2d(x, weight, stride, kernel // 2)
            scale = np.abs(exact).max()
            for sums in (1, 2):
                ours = emulate(x, weight, stride, sums, Path(folder))
                largest = float(np.abs(ours - exact).max() / scale) if np.isfinite(ours).all() else float("inf")
                rms = float(np.sqrt(np.mean((ours - exact) ** 2)) / scale)
                worst = max(worst, largest)
                name = f"{shape} -> {out_channels}, {kernel}x{kernel} /{stride}, sums {sums}"
                print(f"{name}: max {largest:.2e} rms {rms:.2e}")
    return 0 if worst <= 1e-5 else 1


if __name__ == "__main__":
    sys.exit(main())

"""Runs the CUDA convolution kernel's source on the CPU, to check its logic without a GPU.

    python benchmarks/emulate_conv_kernel.py

Compiles `conv_kernel.SOURCE` with g++ (C++20), one OS thread per CUDA thread of a block, blocks one
after another, `__syncthreads` as a `std::barrier`, each `cp.async` copy done at once (the ring of stages
and its barriers as on the GPU); then compares the outputs at odd shapes (partial tiles, strides, 1 x 1
and 3 x 3 kernels, both partial-sum modes, the batch norm epilogues) with float64, printing each one's
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
static inline float rsqrtf(float v) { return 1.0f / std::sqrt(v); }
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline float __fadd_rn(float a, float b) { return a + b; }
struct Dim { int x, y, z; };
thread_local Dim threadIdx;
Dim blockIdx;
std::barrier<>* block_barrier;
#define __syncthreads() block_barrier->arrive_and_wait()
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))
void kernel(const float* x, const float* wt, const int* sizes, const float* bn_mean, const float* bn_var,
            const float* bn_weight, const float* bn_bias, const float* bn_eps, const float* shortcut, float* y) {
SOURCE
}
static std::vector<float> read(FILE* f, long n) {
  std::vector<float> v(n);
  if (fread(v.data(), 4, n, f) != (size_t)n) exit(1);
  return v;
}
int main(int argc, char** argv) {
  int sizes[14];
  FILE* f = fopen(argv[1], "rb");
  if (fread(sizes, 4, 14, f) != 14) return 1;
  const int CI = sizes[5], CO = sizes[6];
  const long nx = (long)sizes[0] * sizes[1] * sizes[2] * CI, nw = (long)CO * sizes[7] * sizes[8] * CI;
  const long M = (long)sizes[0] * sizes[3] * sizes[4];
  auto x = read(f, nx), w = read(f, nw), mean = read(f, CO), var = read(f, CO), scale = read(f, CO);
  auto shift = read(f, CO), eps = read(f, 1), shortcut = read(f, M * CO);
  std::vector<float> y(M * CO, NAN);
  fclose(f);
  constexpr int THREADS = (BM / TM) * (BN / TN);
  std::barrier<> barrier(THREADS);
  block_barrier = &barrier;
  for (int bx = 0; bx < (M + BM - 1) / BM; ++bx)
    for (int by = 0; by < CO / BN; ++by) {
      blockIdx = {bx, by, 0};
      std::vector<std::thread> threads;
      for (int t = 0; t < THREADS; ++t)
        threads.emplace_back([&, t] {
          threadIdx = {t, 0, 0};
          kernel(x.data(), w.data(), sizes, mean.data(), var.data(), scale.data(), shift.data(), eps.data(),
                 shortcut.data(), y.data());
        });
      for (auto& thread : threads) thread.join();
    }
  f = fopen(argv[2], "wb");
  fwrite(y.data(), 4, M * CO, f);
  fclose(f);
}
"""

# `cp.async` as a plain copy, done when issued (zeros for the padding, as the copy of no bytes gives)
COPY = """auto copy16 = [](void* dst, const float* src, bool inside) {
        for (int i = 0; i < 4; ++i) static_cast<float*>(dst)[i] = inside ? src[i] : 0.0f;
    };"""


def cpu_source() -> str:
    """`conv_kernel.SOURCE` with its `cp.async` copies done in place and its waits for them dropped."""
    source = conv_kernel.SOURCE
    start = source.index("auto copy16 = ")
    end = source.index("};", start) + 2
    source = source[:start] + COPY + source[end:]
    for asm in ('asm volatile("cp.async.commit_group;");', 'asm volatile("cp.async.wait_group 1;");'):
        source = source.replace(asm, ";")
    source = source.replace('asm volatile("cp.async.wait_group 0;");', ";")
    assert "asm" not in source
    return source


CASES = (  # input (batch, height, width, channels), out channels, kernel, stride, epilogues
    ((3, 20, 13, 32), 32, 3, 1, (0,)),
    ((2, 17, 11, 32), 64, 3, 2, (0,)),
    ((2, 10, 9, 64), 128, 1, 2, (0, 1)),
    ((1, 9, 7, 256), 256, 3, 1, (0,)),
    ((2, 10, 9, 64), 64, 3, 1, (2, 3)),
)


def batch_norm_float64(out: np.ndarray, norm: list[np.ndarray], epilogue: int, shortcut: np.ndarray) -> np.ndarray:
    """The epilogue in float64: the batch norm (epilogue 1), then ReLU (2), with the shortcut added before it (3)."""
    if epilogue == 0:
        return out
    mean, var, scale, shift, eps = (v.astype(np.float64) for v in norm)
    out = scale * (out - mean) / np.sqrt(var + eps) + shift + (shortcut if epilogue == 3 else 0)
    return np.maximum(out, 0) if epilogue >= 2 else out


def emulate(
    x: np.ndarray,
    weight: np.ndarray,
    stride: int,
    sums: int,
    epilogue: int,
    norm: list[np.ndarray],
    shortcut: np.ndarray,
    folder: Path,
) -> np.ndarray:
    """The kernel's output for channels-last x and weight (out, kh, kw, in), padding kernel // 2."""
    batch, height, width, in_channels = x.shape
    out_channels, kernel, _, _ = weight.shape
    padding = kernel // 2
    out_h, out_w = (height + 2 * padding - kernel) // stride + 1, (width + 2 * padding - kernel) // stride + 1
    bm, bn, tm, tn, bk = conv_kernel.tile(out_channels)
    template = dict(BM=bm, BN=bn, TM=tm, TN=tn, BK=bk, SUMS=sums)
    source, program = folder / "kernel.cpp", folder / "kernel"
    source.write_text(HARNESS.replace("SOURCE", cpu_source()))
    defines = [f"-D{name}={value}" for name, value in template.items()]
    subprocess.run(["g++", "-O2", "-std=c++20", "-pthread", *defines, str(source), "-o", str(program)], check=True)
    with open(folder / "in.bin", "wb") as f:
        sizes = [batch, height, width, out_h, out_w, in_channels, out_channels, kernel, kernel]
        np.array(sizes + [stride, stride, padding, padding, epilogue], np.int32).tofile(f)
        x.astype(np.float32).tofile(f)
        np.ascontiguousarray(weight.reshape(out_channels, -1).T).astype(np.float32).tofile(f)  # (taps x in, out)
        for values in (*norm, shortcut):
            values.astype(np.float32).tofile(f)
    subprocess.run([str(program), str(folder / "in.bin"), str(folder / "out.bin")], check=True)
    return np.fromfile(folder / "out.bin", np.float32).reshape(batch, out_h, out_w, out_channels)


def main() -> int:
    rng = np.random.default_rng(0)
    worst = 0.0
    with tempfile.TemporaryDirectory() as folder:
        for shape, out_channels, kernel, stride, epilogues in CASES:
            x = np.maximum(rng.normal(0, 1, shape), 0).astype(np.float32)  # after a ReLU: sums that do not cancel
            weight = rng.normal(0.01, 0.1, (out_channels, kernel, kernel, shape[-1])).astype(np.float32)
            convolved = float64_conv2d(x, weight, stride, kernel // 2)
            norm = [rng.normal(0, 0.5, out_channels), rng.uniform(0.2, 2, out_channels)]
            norm += [rng.uniform(0.5, 1.5, out_channels), rng.normal(0, 0.5, out_channels), np.array([1e-5])]
            norm = [v.astype(np.float32) for v in norm]
            shortcut = rng.normal(0, 1, convolved.shape).astype(np.float32)
            for epilogue in epilogues:
                exact = batch_norm_float64(convolved, norm, epilogue, shortcut)
                scale = np.abs(exact).max()
                for sums in (1, 2):
                    ours = emulate(x, weight, stride, sums, epilogue, norm, shortcut, Path(folder))
                    finite = np.isfinite(ours).all()
                    largest = float(np.abs(ours - exact).max() / scale) if finite else float("inf")
                    rms = float(np.sqrt(np.mean((ours - exact) ** 2)) / scale)
                    worst = max(worst, largest)
                    name = f"{shape} -> {out_channels}, {kernel}x{kernel} /{stride}, sums {sums}, epilogue {epilogue}"
                    print(f"{name}: max {largest:.2e} rms {rms:.2e}", flush=True)
    return 0 if worst <= 1e-5 else 1


if __name__ == "__main__":
    sys.exit(main())

"""Runs the CUDA convolution kernels' source on the CPU, to check their logic without a GPU.

    python benchmarks/emulate_conv_kernel.py

Compiles `conv_kernel.SOURCE` (and `TF32_SOURCE`, the tensor cores' kernel) with g++ (C++20), one OS
thread per CUDA thread of a block, blocks one after another, `__syncthreads` as a `std::barrier`;
an `mma.sync` is emulated as its warp's collective product (each lane posts its fragments, then
reads the tiles back; exact products summed in float64) and `cvt.rna.tf32` by rounding the bits.
Compares the outputs at odd shapes (partial tiles, strides, 1 x 1 and 3 x 3 kernels, both
partial-sum modes) with float64, printing each one's largest and root-mean-square distance relative
to the output's scale. Exits 1 if one is over 1e-5. It checks indexing, tiling, fragments and the
order of the sums, not speed or the GPU's own rounding.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from mlx_segmentation import conv_kernel

HARNESS = r"""
#include <barrier>
#include <cmath>
#include <cstring>
#include <cstddef>
#include <cstdio>
#include <thread>
#include <vector>
struct float4 { float x, y, z, w; };
struct float2 { float x, y; };
static inline float4 make_float4(float a, float b, float c, float d) { return {a, b, c, d}; }
static inline float2 make_float2(float a, float b) { return {a, b}; }
struct Dim { int x, y, z; };
thread_local Dim threadIdx;
Dim blockIdx;
std::barrier<>* block_barrier;
#define __syncthreads() block_barrier->arrive_and_wait()
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))
HEADER
void kernel(const float* x, const float* w, const int* sizes, float* y) {
SOURCE
}
int main(int argc, char** argv) {
  int sizes[5];
  FILE* f = fopen(argv[1], "rb");
  if (fread(sizes, 4, 5, f) != 5) return 1;
  const long nx = (long)sizes[0] * sizes[1] * sizes[2] * CI, nw = (long)CO * KH * KW * CI;
  const long M = (long)sizes[0] * sizes[3] * sizes[4];
  std::vector<float> x(nx), w(nw), y(M * CO, NAN);
  if (fread(x.data(), 4, nx, f) != (size_t)nx || fread(w.data(), 4, nw, f) != (size_t)nw) return 1;
  fclose(f);
  constexpr int THREADS = BLOCK_THREADS;
  std::barrier<> barrier(THREADS);
  block_barrier = &barrier;
  WARP_BARRIERS
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

TF32_EMULATED = r"""
static inline float __uint_as_float(unsigned u) { float f; std::memcpy(&f, &u, 4); return f; }
static inline unsigned tf32_rna(float v) {  // cvt.rna.tf32.f32 on finite values: nearest, ties away from zero
  unsigned u;
  std::memcpy(&u, &v, 4);
  return (u + 0x1000u) & 0xffffe000u;
}
void split_tf32(float v, unsigned& hi, unsigned& lo) {
  hi = tf32_rna(v);
  lo = tf32_rna(v - __uint_as_float(hi));
}
struct WarpTiles { float a[16][8], b[8][8], c[16][8]; };
WarpTiles warp_tiles[32];
std::barrier<>* warp_barrier[32];
void mma_tf32(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2]) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  WarpTiles& s = warp_tiles[warp];
  s.a[g][t] = __uint_as_float(a[0]);
  s.a[g + 8][t] = __uint_as_float(a[1]);
  s.a[g][t + 4] = __uint_as_float(a[2]);
  s.a[g + 8][t + 4] = __uint_as_float(a[3]);
  s.b[t][g] = __uint_as_float(b[0]);
  s.b[t + 4][g] = __uint_as_float(b[1]);
  for (int q = 0; q < 4; ++q) s.c[g + (q >> 1) * 8][2 * t + (q & 1)] = d[q];
  warp_barrier[warp]->arrive_and_wait();
  float out[4];
  for (int q = 0; q < 4; ++q) {
    const int r = g + (q >> 1) * 8, c = 2 * t + (q & 1);
    double sum = s.c[r][c];
    for (int k = 0; k < 8; ++k) sum += (double)s.a[r][k] * s.b[k][c];
    out[q] = (float)sum;
  }
  warp_barrier[warp]->arrive_and_wait();
  for (int q = 0; q < 4; ++q) d[q] = out[q];
}
"""
MAKE_WARP_BARRIERS = """
  std::vector<std::barrier<>*> warps;
  for (int i = 0; i < THREADS / 32; ++i) warp_barrier[i] = new std::barrier<>(32);
"""

CASES = (  # input (batch, height, width, channels), out channels, kernel, stride
    ((3, 20, 13, 32), 32, 3, 1),
    ((2, 17, 11, 32), 64, 3, 2),
    ((2, 10, 9, 64), 128, 1, 2),
    ((1, 9, 7, 256), 256, 3, 1),
)


def emulate(x: np.ndarray, weight: np.ndarray, stride: int, sums: int, folder: Path) -> np.ndarray:
    """The kernel's output for channels-last x and weight (out, kh, kw, in), padding kernel // 2;
    `sums` 1 or 2 for `SOURCE`'s partial sums, 0 for `TF32_SOURCE`."""
    batch, height, width, in_channels = x.shape
    out_channels, kernel, _, _ = weight.shape
    padding = kernel // 2
    out_h, out_w = (height + 2 * padding - kernel) // stride + 1, (width + 2 * padding - kernel) // stride + 1
    bm, bn, tm, tn, bk = conv_kernel.tile(out_channels)
    template = dict(CI=in_channels, CO=out_channels, KH=kernel, KW=kernel, SH=stride, SW=stride, PH=padding)
    template |= dict(PW=padding, BM=bm, BN=bn, BK=bk)
    if sums:
        template |= dict(TM=tm, TN=tn, SUMS=sums, BLOCK_THREADS=(bm // tm) * (bn // tn))
        code = HARNESS.replace("HEADER", "").replace("WARP_BARRIERS", "").replace("SOURCE", conv_kernel.SOURCE)
    else:
        template |= dict(BLOCK_THREADS=(bm // 32) * (bn // 32) * 32)
        code = HARNESS.replace("HEADER", TF32_EMULATED).replace("WARP_BARRIERS", MAKE_WARP_BARRIERS)
        code = code.replace("SOURCE", conv_kernel.TF32_SOURCE)
    source, program = folder / "kernel.cpp", folder / "kernel"
    source.write_text(code)
    defines = [f"-D{name}={value}" for name, value in template.items()]
    subprocess.run(["g++", "-O2", "-std=c++20", "-pthread", *defines, str(source), "-o", str(program)], check=True)
    with open(folder / "in.bin", "wb") as f:
        np.array([batch, height, width, out_h, out_w], np.int32).tofile(f)
        x.astype(np.float32).tofile(f)
        weight.reshape(out_channels, -1).astype(np.float32).tofile(f)
    subprocess.run([str(program), str(folder / "in.bin"), str(folder / "out.bin")], check=True)
    return np.fromfile(folder / "out.bin", np.float32).reshape(batch, out_h, out_w, out_channels)


def float64_conv2d(x: np.ndarray, weight: np.ndarray, stride: int) -> np.ndarray:
    kernel = weight.shape[1]
    padding = kernel // 2
    x = np.pad(x.astype(np.float64), ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    out_h, out_w = (x.shape[1] - kernel) // stride + 1, (x.shape[2] - kernel) // stride + 1
    out = np.zeros((x.shape[0], out_h, out_w, weight.shape[0]))
    for dy in range(kernel):
        for dx in range(kernel):
            patch = x[:, dy : dy + (out_h - 1) * stride + 1 : stride, dx : dx + (out_w - 1) * stride + 1 : stride]
            out += patch @ weight[:, dy, dx].astype(np.float64).T
    return out


def main() -> int:
    rng = np.random.default_rng(0)
    worst = 0.0
    with tempfile.TemporaryDirectory() as folder:
        for shape, out_channels, kernel, stride in CASES:
            x = np.maximum(rng.normal(0, 1, shape), 0).astype(np.float32)  # after a ReLU: sums that do not cancel
            weight = rng.normal(0.01, 0.1, (out_channels, kernel, kernel, shape[-1])).astype(np.float32)
            exact = float64_conv2d(x, weight, stride)
            scale = np.abs(exact).max()
            for sums in (1, 2, 0):
                ours = emulate(x, weight, stride, sums, Path(folder))
                largest = float(np.abs(ours - exact).max() / scale) if np.isfinite(ours).all() else float("inf")
                rms = float(np.sqrt(np.mean((ours - exact) ** 2)) / scale)
                worst = max(worst, largest)
                mode = f"sums {sums}" if sums else "tensor cores"
                name = f"{shape} -> {out_channels}, {kernel}x{kernel} /{stride}, {mode}"
                print(f"{name}: max {largest:.2e} rms {rms:.2e}")
    return 0 if worst <= 1e-5 else 1


if __name__ == "__main__":
    sys.exit(main())

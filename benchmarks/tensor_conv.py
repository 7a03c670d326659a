"""Tried, not kept: WeSpeaker's convolutions on tensor cores as "3xTF32", against the runtime's float32 kernel.

    python benchmarks/tensor_conv.py [--torch]

`conv2d_tensor` is `conv_kernel.conv2d`'s implicit product with each float32 operand split into two TF32
numbers (big + small) and each product taken as three TF32 products (small x big, big x small, big x big),
as CUTLASS's "3xTF32": the products of each step summed in the tensor cores (`mma.sync` m16n8k8), the steps
and taps apart as `SUMS` says. Prints each kernel's largest and root-mean-square difference from float64 on
random inputs of odd sizes, then milliseconds per call at the ResNet's shapes for 10 s x 32 (CUDA only).
"""

from __future__ import annotations  # noqa: I001

import sys

if "--torch" in sys.argv:
    import torch  # noqa: F401

import mlx_segmentation  # noqa: F401, I001
import mlx.core as mx
import numpy as np

from gpu_kernels import CONV_SHAPES, ODD_SHAPES, float64_conv2d, milliseconds, relative, rms, torch_milliseconds
from mlx_segmentation import conv_kernel


TENSOR_SOURCE = (
    """
    constexpr int WARPS_M = BM / 32, WARPS_N = BN / 32;  // each warp: 32 pixels by 32 channels
    constexpr int THREADS = WARPS_M * WARPS_N * 32;
    constexpr int KQ = BK / 4;
    constexpr int ROWS = BM * KQ / THREADS;
    constexpr int WQ = BK * BN / 4;
    constexpr int WLOADS = (WQ + THREADS - 1) / THREADS;
    constexpr int LD = BK + 4;                           // shared rows padded: no bank conflicts reading fragments
    const int KTOT = sizes[7] * sizes[8] * sizes[5];
"""
    + conv_kernel.PIXELS
    + """
    __shared__ __align__(16) float As[BM][LD];
    __shared__ __align__(16) float Bs[BN][LD];
    float4 xa[ROWS], wb[WLOADS];
    auto load = [&](int dy, int dx, int c0) {
        for (int l = 0; l < ROWS; ++l) {
            const int iy = iy0[l] + dy, ix = ix0[l] + dx;
            xa[l] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            if (valid[l] && iy >= 0 && iy < H && ix >= 0 && ix < W)
                xa[l] = *reinterpret_cast<const float4*>(x + ((size_t)base[l] + (size_t)iy * W + ix) * CI + c0 + kq);
        }
        for (int l = 0; l < WLOADS; ++l) {
            const int q = tid + l * THREADS;
            const size_t at = (size_t)(n0 + q / KQ) * KTOT + (dy * KW + dx) * CI + c0 + (q % KQ) * 4;
            if (q < WQ) wb[l] = *reinterpret_cast<const float4*>(w + at);
        }
    };
    auto split = [](float v, unsigned& big, unsigned& small) {
        unsigned b;
        asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(b) : "f"(v));
        big = b & 0xffffe000u;
        const float rest = v - __uint_as_float(big);
        asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(b) : "f"(rest));
        small = b & 0xffffe000u;
    };
    auto mma = [](float* d, const unsigned* a, const unsigned* b) {
        asm volatile(
            "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
    };
    const int lane = tid % 32, warp = tid / 32;
    const int wm = (warp % WARPS_M) * 32, wn = (warp / WARPS_M) * 32;
    const int gid = lane / 4, tig = lane % 4;
    float acc[2][4][4], tap[2][4][4], part[2][4][4];
    for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 4; ++j)
            for (int e = 0; e < 4; ++e) acc[i][j][e] = tap[i][j][e] = 0.0f;
    load(0, 0, 0);
    for (int t = 0; t < KH * KW; ++t) {
        for (int c0 = 0; c0 < CI; c0 += BK) {
            for (int l = 0; l < ROWS; ++l) *reinterpret_cast<float4*>(&As[row[l]][kq]) = xa[l];
            for (int l = 0; l < WLOADS; ++l) {
                const int q = tid + l * THREADS;
                if (q < WQ) *reinterpret_cast<float4*>(&Bs[q / KQ][(q % KQ) * 4]) = wb[l];
            }
            __syncthreads();
            if (c0 + BK < CI) load(t / KW, t % KW, c0 + BK);
            else if (t + 1 < KH * KW) load((t + 1) / KW, (t + 1) % KW, 0);
            if (SUMS == 2) {
                for (int i = 0; i < 2; ++i)
                    for (int j = 0; j < 4; ++j)
                        for (int e = 0; e < 4; ++e) part[i][j][e] = 0.0f;
            }
            for (int kk = 0; kk < BK; kk += 8) {
                unsigned abig[2][4], asmall[2][4], bbig[4][2], bsmall[4][2];
                for (int i = 0; i < 2; ++i) {
                    const int r = wm + i * 16 + gid;
                    split(As[r][kk + tig], abig[i][0], asmall[i][0]);
                    split(As[r + 8][kk + tig], abig[i][1], asmall[i][1]);
                    split(As[r][kk + tig + 4], abig[i][2], asmall[i][2]);
                    split(As[r + 8][kk + tig + 4], abig[i][3], asmall[i][3]);
                }
                for (int j = 0; j < 4; ++j) {
                    const int n = wn + j * 8 + gid;
                    split(Bs[n][kk + tig], bbig[j][0], bsmall[j][0]);
                    split(Bs[n][kk + tig + 4], bbig[j][1], bsmall[j][1]);
                }
                for (int i = 0; i < 2; ++i)
                    for (int j = 0; j < 4; ++j) {
                        float* d = SUMS == 2 ? part[i][j] : tap[i][j];
                        mma(d, asmall[i], bbig[j]);
                        mma(d, abig[i], bsmall[j]);
                        mma(d, abig[i], bbig[j]);
                    }
            }
            if (SUMS == 2) {
                for (int i = 0; i < 2; ++i)
                    for (int j = 0; j < 4; ++j)
                        for (int e = 0; e < 4; ++e) tap[i][j][e] += part[i][j][e];
            }
            __syncthreads();
        }
        for (int i = 0; i < 2; ++i)
            for (int j = 0; j < 4; ++j)
                for (int e = 0; e < 4; ++e) {
                    acc[i][j][e] += tap[i][j][e];
                    tap[i][j][e] = 0.0f;
                }
    }
    for (int i = 0; i < 2; ++i)
        for (int half = 0; half < 2; ++half) {
            const int m = m0 + wm + i * 16 + gid + half * 8;
            if (m < M) {
                for (int j = 0; j < 4; ++j) {
                    const int n = n0 + wn + j * 8 + tig * 2;
                    *reinterpret_cast<float2*>(y + (size_t)m * CO + n) =
                        make_float2(acc[i][j][half * 2], acc[i][j][half * 2 + 1]);
                }
            }
        }
"""
)

_KERNEL: list[object] = []


def tensor_tile(out_channels: int) -> tuple[int, int]:
    """(BM, BN) of the tensor-core kernel: warps of 32 x 32 outputs."""
    return (128, 32) if out_channels == 32 else (128, 64)


def conv2d_tensor(
    x: mx.array,
    weight: mx.array,
    stride: tuple[int, int],
    padding: tuple[int, int],
    tiles: tuple[int, int] | None = None,
    sums: int | None = None,
) -> mx.array:
    """`conv_kernel.conv2d` on tensor cores, three TF32 products per float32 product."""
    sizes = conv_kernel.kernel_sizes(x, weight, stride, padding)
    batch, out_h, out_w, out_channels, taps = sizes[0], sizes[3], sizes[4], sizes[6], sizes[7] * sizes[8]
    if not _KERNEL:
        _KERNEL.append(conv_kernel.compile_kernel("wespeaker_conv2d_tf32x3", "w", TENSOR_SOURCE))
    bm, bn = tiles or tensor_tile(out_channels)
    threads = (bm // 32) * (bn // 32) * 32
    blocks = -(-batch * out_h * out_w // bm)
    (y,) = _KERNEL[0](
        inputs=[x, weight.reshape(out_channels, -1), mx.array(sizes, dtype=mx.int32), mx.zeros(1), mx.zeros(1)],
        template=[
            ("BM", bm),
            ("BN", bn),
            ("BK", conv_kernel.BK),
            ("SUMS", sums or conv_kernel.partial_sums(taps)),
        ],
        grid=(blocks * threads, out_channels // bn, 1),
        threadgroup=(threads, 1, 1),
        output_shapes=[(batch, out_h, out_w, out_channels)],
        output_dtypes=[mx.float32],
    )
    return y


TENSOR_TILES = {32: [(128, 32), (64, 32)], 64: [(128, 64), (64, 64), (64, 128)]}  # 128 x 128: too many registers
TENSOR_TILES[128] = TENSOR_TILES[256] = TENSOR_TILES[64]


def main() -> None:
    rng = np.random.default_rng(0)
    for shape, out_channels, kernel, stride in (*ODD_SHAPES, ((4, 10, 125, 256), 256, 3, 1)):
        x = mx.array(rng.normal(0, 1, shape).astype(np.float32))
        weight = mx.array(rng.normal(0, 0.1, (out_channels, kernel, kernel, shape[-1])).astype(np.float32))
        padding = (kernel // 2, kernel // 2)
        exact = float64_conv2d(x, weight, stride, padding[0])
        line = []
        for name, out in (
            ("float32 kernel", conv_kernel.conv2d(x, weight, (stride, stride), padding)),
            ("tensor, sums 2", conv2d_tensor(x, weight, (stride, stride), padding, sums=2)),
            ("tensor, sums 1", conv2d_tensor(x, weight, (stride, stride), padding, sums=1)),
            ("tensor 64 x 32", conv2d_tensor(x, weight, (stride, stride), padding, tiles=(64, 32))),
        ):
            line.append(f"{name} max {relative(out, exact):.2e} rms {rms(out, exact):.2e}")
        print(f"conv {shape} -> {out_channels}, {kernel}x{kernel} /{stride}: " + "; ".join(line), flush=True)
    batch = 32
    for (height, width, in_channels), out_channels, kernel, stride in CONV_SHAPES:
        x = mx.array(rng.normal(0, 1, (batch, height, width, in_channels)).astype(np.float32))
        weight = mx.array(rng.normal(0, 0.1, (out_channels, kernel, kernel, in_channels)).astype(np.float32))
        padding = (kernel // 2, kernel // 2)
        flops = 2 * batch * (height // stride) * (width // stride) * out_channels * in_channels * kernel * kernel
        times = {"float32 kernel": milliseconds(lambda: conv_kernel.conv2d(x, weight, (stride, stride), padding))}
        for tiles in TENSOR_TILES[out_channels]:
            if out_channels % tiles[1]:
                continue
            for sums in (2, 1) if kernel > 1 else (1,):
                times[f"tensor {tiles} sums {sums}"] = milliseconds(
                    lambda tiles=tiles, sums=sums: conv2d_tensor(x, weight, (stride, stride), padding, tiles, sums)
                )
        if "--torch" in sys.argv:
            times["PyTorch"], _ = torch_milliseconds(x, weight, stride, padding[0])
        print(
            f"{batch} x {height} x {width} x {in_channels} -> {out_channels}, {kernel}x{kernel} /{stride}:\n    "
            + "\n    ".join(f"{name} {ms:.2f} ms ({flops / ms / 1e9:.1f} TFLOP/s)" for name, ms in times.items()),
            flush=True,
        )


if __name__ == "__main__":
    main()

"""A trial for #15: WeSpeaker's convolutions on the H100's float64 tensor cores, against the float32 kernel.

    python benchmarks/dmma_conv.py [--batch 32]

`conv_kernel`'s image and weight tiles (float32, copied by its `LOADS`), but every product and sum taken
in float64 by `mma.sync.m8n8k4.f64` (FP64 tensor cores: the H100's 67 TFLOP/s, its float32 peak without them), each
output rounded to float32 once at the end. Four warps per block, each a 32 x 32 tile of outputs (4 x 4 products of
8 x 8). Prints, at the ResNet's shapes for 10 s segments, each kernel's time and its distance from float64 (the
float64 sum should round to within one float32 ulp of it). Not a runtime route: a measurement of whether one is worth
building (h100_dmma_conv.log was measured with the loads before they kept counters).
"""

from __future__ import annotations

import argparse

import gpu_kernels
import mlx.core as mx
import numpy as np

from mlx_segmentation import conv_kernel, kernel_arguments

SOURCE = (
    """
    constexpr int BM = WARPS_M * 32, BN = WARPS_N * 32, THREADS = WARPS_M * WARPS_N * 32;
    constexpr int KQ = BK / 4;
    constexpr int ROWS = BM * KQ / THREADS;
    constexpr int WQ = BK * BN / 4;
    constexpr int WLOADS = (WQ + THREADS - 1) / THREADS;
    constexpr int STAGES = 3;
    constexpr int LA = BK + 4;   // an image row's BK channels: fragment reads of 8 rows x 4 channels hit 32 banks
    constexpr int LB = BN + 8;   // a weight row: fragment reads of 4 rows x 8 channels hit 32 banks
"""
    + conv_kernel.PIXELS
    + """
    __shared__ __align__(16) float As[STAGES][BM][LA];
    __shared__ __align__(16) float Bs[STAGES][BK][LB];
"""
    + conv_kernel.LOADS
    + """
    const int warp = tid / 32, lane = tid % 32;
    const int wm = (warp / WARPS_N) * 32, wn = (warp % WARPS_N) * 32;
    const int group = lane / 4, quad = lane % 4;  // the m8n8k4 fragments' row (A, C) or column (B), and k (A, B)
    double acc[4][4][2];
    #pragma unroll
    for (int r = 0; r < 4; ++r)
        #pragma unroll
        for (int c = 0; c < 4; ++c) acc[r][c][0] = acc[r][c][1] = 0.0;
    load();
    if (steps > 1) load();
    for (int s = 0; s < steps; ++s) {
        if (s + 1 < steps) asm volatile("cp.async.wait_group 1;");
        else asm volatile("cp.async.wait_group 0;");
        __syncthreads();
        if (s + 2 < steps) load();
        const int stage = s % STAGES;
        #pragma unroll
        for (int kk = 0; kk < BK; kk += 4) {
            double a[4], b[4];
            #pragma unroll
            for (int r = 0; r < 4; ++r) a[r] = (double)As[stage][wm + r * 8 + group][kk + quad];
            #pragma unroll
            for (int c = 0; c < 4; ++c) b[c] = (double)Bs[stage][kk + quad][wn + c * 8 + group];
            #pragma unroll
            for (int r = 0; r < 4; ++r)
                #pragma unroll
                for (int c = 0; c < 4; ++c)
                    asm volatile(
                        "mma.sync.aligned.m8n8k4.row.col.f64.f64.f64.f64 {%0, %1}, {%2}, {%3}, {%0, %1};"
                        : "+d"(acc[r][c][0]), "+d"(acc[r][c][1]) : "d"(a[r]), "d"(b[c]));
        }
    }
    #pragma unroll
    for (int r = 0; r < 4; ++r) {
        const int m = m0 + wm + r * 8 + group;
        if (m < M) {
            #pragma unroll
            for (int c = 0; c < 4; ++c) {
                const int n = n0 + wn + c * 8 + quad * 2;
                *reinterpret_cast<float2*>(y + (size_t)m * CO + n) =
                    make_float2((float)acc[r][c][0], (float)acc[r][c][1]);
            }
        }
    }
"""
)

_KERNEL: list[object] = []


def warps(out_channels: int) -> tuple[int, int]:
    """(warps down the pixels, warps across the channels): 128 x 32 outputs for 32 channels, else 64 x 64."""
    return (4, 1) if out_channels == 32 else (2, 2)


def dmma_conv2d(x: mx.array, weight: mx.array, stride: tuple[int, int], padding: tuple[int, int]) -> mx.array:
    """mx.conv2d(x, weight, stride, padding), channels-last, float32 in and out, every sum in float64."""
    sizes = conv_kernel.kernel_sizes(x, weight, stride, padding)
    batch, out_h, out_w, out_channels = sizes[0], sizes[3], sizes[4], sizes[6]
    if not _KERNEL:
        _KERNEL.append(
            mx.fast.cuda_kernel(
                name="wespeaker_conv2d_dmma", input_names=["x", "wt", "sizes"], output_names=["y"], source=SOURCE
            )
        )
    warps_m, warps_n = warps(out_channels)
    threads = 32 * warps_m * warps_n
    blocks = -(-batch * out_h * out_w // (32 * warps_m))
    (y,) = _KERNEL[0](
        inputs=[x, weight.reshape(out_channels, -1).T, kernel_arguments.int32s(*sizes)],
        template=[("BK", conv_kernel.BK), ("WARPS_M", warps_m), ("WARPS_N", warps_n)],
        grid=(blocks * threads, out_channels // (32 * warps_n), 1),
        threadgroup=(threads, 1, 1),
        output_shapes=[(batch, out_h, out_w, out_channels)],
        output_dtypes=[mx.float32],
    )
    return y


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--check-batch", type=int, default=2, help="windows compared with float64 (numpy is slow)")
    args = parser.parse_args()
    print(f"{mx.default_device()}, {mx.device_info(mx.gpu).get('device_name', '')}")
    rng = np.random.default_rng(0)
    for (height, width, in_channels), out_channels, kernel, stride in gpu_kernels.CONV_SHAPES:
        x = mx.array(rng.normal(0, 1, (args.batch, height, width, in_channels)).astype(np.float32))
        weight = mx.array(rng.normal(0, 0.1, (out_channels, kernel, kernel, in_channels)).astype(np.float32))
        padding = (kernel // 2, kernel // 2)
        ours = dmma_conv2d(x, weight, (stride, stride), padding)
        kernel_out = conv_kernel.conv2d(x, weight, (stride, stride), padding)
        few = slice(0, args.check_batch)
        reference = gpu_kernels.float64_conv2d(x[few], weight, stride, padding[0])
        scale = np.abs(reference).max()
        dmma_error = np.abs(np.array(ours[few], dtype=np.float64) - reference).max() / scale
        kernel_error = np.abs(np.array(kernel_out[few], dtype=np.float64) - reference).max() / scale
        rounded = np.abs(np.array(ours[few]) - reference.astype(np.float32)).max() / scale
        dmma_ms = gpu_kernels.milliseconds(lambda: dmma_conv2d(x, weight, (stride, stride), padding))
        kernel_ms = gpu_kernels.milliseconds(lambda: conv_kernel.conv2d(x, weight, (stride, stride), padding))
        out_pixels = args.batch * ours.shape[1] * ours.shape[2]
        flops = 2 * out_pixels * out_channels * in_channels * kernel * kernel
        print(
            f"{args.batch} x {height} x {width} x {in_channels} -> {out_channels}, {kernel}x{kernel} /{stride}: "
            f"float64 tensor cores {dmma_ms:.2f} ms ({flops / dmma_ms / 1e9:.1f} TFLOP/s), "
            f"float32 kernel {kernel_ms:.2f} ms ({flops / kernel_ms / 1e9:.1f} TFLOP/s); max|diff| from float64 "
            f"over the scale: {dmma_error:.2e} against {kernel_error:.2e}, from float64 rounded to float32 "
            f"{rounded:.2e}"
        )


if __name__ == "__main__":
    main()

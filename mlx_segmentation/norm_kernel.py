"""SincNet's max-pool, instance norm and LeakyReLU on CUDA as one kernel, over (batch, time, channels).

MLX runs `pyannet.InstanceNorm` as a padded copy, blocked sums and element-wise passes, and the max-pool and
LeakyReLU as passes of their own: 61 of a forward's 170 ms at 1024 windows of 10 s on an H100, for a few
passes' worth of memory traffic (benchmarks/segmentation_stages.py). Here each thread block holds CG channels
of one window: its TL lanes each read every TL-th pooled frame of them, J frames at a time, then the block
combines their statistics and a second pass writes the output. The statistics are taken as the module's:
around each channel's first pooled frame (so that a constant channel normalises to exactly zero), biased
variance, eps inside the square root; each lane sums J frames apart (their mean, then the squares around it)
and merges them into its running mean and sum of squares by Chan's formula, and the lanes merge in a fixed tree.
"""

from __future__ import annotations

import mlx.core as mx

from . import conv_kernel, kernel_arguments

THREADS = 512  # threads per block at most: CG channels times TL lanes
J = 16  # frames a lane reads before summing them (loads in flight)
# Channels per block at most: on an H100, one part of SincNet's stage 1 (60 channels) took 0.16 ms with 20 (or 10,
# or 4) channels a block against 0.23 with 30; stage 0 (80) 0.19 ms with 20, 0.20 to 0.21 with 10 or 4
# (benchmarks/norm_kernel_launch.py, benchmarks/results/h100_norm_kernel_launch_fresh_arrays.log)
MAX_GROUP = 20

SOURCE = """
    constexpr int THREADS = CG * TL;
    const int T_in = sizes[0], T = sizes[1], C = sizes[2];
    const int tid = threadIdx.x, k = tid % CG, l = tid / CG, c = blockIdx.x * CG + k;
    const float* xc = x + (size_t)blockIdx.y * T_in * C + c;
    float* yc = y + (size_t)blockIdx.y * T * C + c;
    auto pooled = [&](int t) {  // max over frames t * POOL onwards, NaN if any is NaN (as torch's max-pool)
        const float* p = xc + (size_t)t * POOL * C;
        float v = p[0];
        for (int j = 1; j < POOL; ++j) {
            const float u = p[(size_t)j * C];
            v = (u > v || u != u) ? u : v;
        }
        return v;
    };
    const float first = pooled(0);
    float n = 0.0f, mean = 0.0f, m2 = 0.0f;  // this lane's frames so far: count, mean and sum of squares around it
    auto merge = [](float& n_a, float& mean_a, float& m2_a, float n_b, float mean_b, float m2_b) {  // Chan et al.
        const float total = n_a + n_b, delta = mean_b - mean_a;
        mean_a += delta * (n_b / total);
        m2_a += m2_b + delta * delta * (n_a * n_b / total);
        n_a = total;
    };
    for (int t0 = l; t0 < T; t0 += J * TL) {
        float v[J];
        int count = 0;
        #pragma unroll
        for (int j = 0; j < J; ++j) {
            const int t = t0 + j * TL;
            v[j] = t < T ? pooled(t) - first : 0.0f;
            count += t < T;
        }
        float sum = 0.0f;
        #pragma unroll
        for (int j = 0; j < J; ++j) sum += v[j];
        const float part_mean = sum / count;
        float part_m2 = 0.0f;
        #pragma unroll
        for (int j = 0; j < J; ++j) {
            const float d = v[j] - part_mean;
            if (t0 + j * TL < T) part_m2 = fmaf(d, d, part_m2);
        }
        merge(n, mean, m2, (float)count, part_mean, part_m2);
    }
    __shared__ float lane_n[THREADS], lane_mean[THREADS], lane_m2[THREADS];
    lane_n[tid] = n;
    lane_mean[tid] = mean;
    lane_m2[tid] = m2;
    __syncthreads();
    for (int apart = 1; apart < TL; apart *= 2) {  // lane l takes lane l + apart's, in a fixed tree
        if (l % (2 * apart) == 0 && l + apart < TL) {
            const int i = tid + apart * CG;
            if (lane_n[i] > 0.0f) merge(lane_n[tid], lane_mean[tid], lane_m2[tid], lane_n[i], lane_mean[i], lane_m2[i]);
        }
        __syncthreads();
    }
    if (l == 0) lane_m2[k] = rsqrtf(lane_m2[k] / (float)T + params[0]);
    __syncthreads();
    const float mu = lane_mean[k], scale = lane_m2[k], w = weight[c], b = bias[c], slope = params[1];
    for (int t0 = l; t0 < T; t0 += J * TL) {
        float v[J];
        #pragma unroll
        for (int j = 0; j < J; ++j) {
            const int t = t0 + j * TL;
            v[j] = t < T ? pooled(t) : 0.0f;
        }
        #pragma unroll
        for (int j = 0; j < J; ++j) {
            const int t = t0 + j * TL;
            if (t >= T) continue;
            const float out = w * (((v[j] - first) - mu) * scale) + b;
            yc[(size_t)t * C] = LEAKY && !(out > 0.0f) ? out * slope : out;
        }
    }
"""

_KERNEL: list[object] = []


MAX_BATCH = 65_535  # the grid's y size: one window per block row


def applies(x: mx.array) -> bool:
    """Whether the kernel computes this stage: on CUDA, float32 (batch, time, channels), at most `MAX_BATCH` windows."""
    return conv_kernel.on_cuda() and x.dtype == mx.float32 and x.ndim == 3 and x.shape[0] <= MAX_BATCH


def block_shape(channels: int) -> tuple[int, int]:
    """(CG, TL): the most channels up to `MAX_GROUP` that divide `channels`, and as many lanes as fit in `THREADS`."""
    group = max(d for d in range(1, min(channels, MAX_GROUP) + 1) if channels % d == 0)
    return group, THREADS // group


def pool_norm(
    x: mx.array, weight: mx.array, bias: mx.array, eps: float, pool: int = 1, slope: float | None = None
) -> mx.array:
    """leaky_relu(instance_norm(max_pool(x, pool)), slope) (no LeakyReLU if `slope` is None) of x (batch, time,
    channels), the pool dropping a last partial group, the norm's `weight` and `bias` (channels,)."""
    batch, steps, channels = x.shape
    frames = steps // pool
    if batch * frames * channels == 0:
        return mx.zeros((batch, frames, channels), dtype=mx.float32)
    if not _KERNEL:
        _KERNEL.append(
            mx.fast.cuda_kernel(
                name="sincnet_pool_norm",
                input_names=["x", "weight", "bias", "params", "sizes"],
                output_names=["y"],
                source=SOURCE,
            )
        )
    group, lanes = block_shape(channels)
    (y,) = _KERNEL[0](
        inputs=[
            x,
            weight.astype(mx.float32),
            bias.astype(mx.float32),
            kernel_arguments.float32s(eps, 0.0 if slope is None else slope),
            kernel_arguments.int32s(steps, frames, channels),
        ],
        template=[("CG", group), ("TL", lanes), ("J", J), ("POOL", pool), ("LEAKY", int(slope is not None))],
        grid=(channels // group * group * lanes, batch, 1),
        threadgroup=(group * lanes, 1, 1),
        output_shapes=[(batch, frames, channels)],
        output_dtypes=[mx.float32],
    )
    return y

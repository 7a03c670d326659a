"""SincNet's first stage on CUDA as one kernel: the sinc filters' strided convolution, |.| and the max-pool.

MLX's conv1d writes the filters' whole output (80 values per 10 input samples, the largest activation of
the model) and `pooling.abs_max_pool` reads it back; this kernel keeps each pooled group of outputs in
registers and writes only their maximum. Each thread block holds its filters (tap-major) and its span of
samples in shared memory, the samples laid out by phase of the stride (sample m * STRIDE + r at [r][m]), so
that the threads of a warp, three output frames apart, read 32 different banks. Each thread computes FT
filters at the POOL frames of two pooled outputs; each output is summed in float32 fused multiply-adds, the
STRIDE taps of each phase block apart, then the blocks in order.
"""

from __future__ import annotations

import mlx.core as mx

from . import conv_kernel, kernel_arguments

FB = 40  # filters per thread block
FT = 8  # filters per thread
PB = 64  # pooled outputs per thread block: two per thread, 32 apart

SOURCE = """
    constexpr int GROUPS = FB / FT, THREADS = GROUPS * 32;
    constexpr int SPAN = (POOL * PB - 1) * STRIDE + K;      // samples a block reads
    constexpr int M = (SPAN + STRIDE - 1) / STRIDE;         // samples per phase
    constexpr int BLOCKS = K / STRIDE, REST = K % STRIDE;   // whole phase blocks of taps, taps after them
    __shared__ __align__(16) float ws[K][FB];
    __shared__ float xs[STRIDE][M];
    const int L = sizes[1], P = sizes[2], F = sizes[3];
    const int tid = threadIdx.x, g = tid / 32, lane = tid % 32;
    const int p0 = blockIdx.x * PB, f0 = blockIdx.y * FB, b = blockIdx.z;
    const size_t s0 = (size_t)p0 * POOL * STRIDE;
    for (int i = tid; i < K * FB; i += THREADS) ws[i / FB][i % FB] = wt[(size_t)(i / FB) * F + f0 + i % FB];
    for (int i = tid; i < STRIDE * M; i += THREADS) {
        const size_t s = s0 + i;
        xs[i % STRIDE][i / STRIDE] = s < (size_t)L ? x[(size_t)b * L + s] : 0.0f;
    }
    __syncthreads();
    constexpr int J = 2 * POOL;                             // a thread's frames: POOL for each of its two outputs
    int t[J];
    for (int j = 0; j < J; ++j) t[j] = (lane + (j / POOL) * 32) * POOL + j % POOL;
    float acc[FT][J], part[FT][J];
    for (int f = 0; f < FT; ++f)
        for (int j = 0; j < J; ++j) acc[f][j] = 0.0f;
    auto block = [&](int q, int taps) {
        for (int f = 0; f < FT; ++f)
            for (int j = 0; j < J; ++j) part[f][j] = 0.0f;
        #pragma unroll
        for (int r = 0; r < taps; ++r) {
            float w[FT];
            for (int f = 0; f < FT; f += 4) {
                const float4 v = *reinterpret_cast<const float4*>(&ws[q * STRIDE + r][g * FT + f]);
                w[f] = v.x; w[f + 1] = v.y; w[f + 2] = v.z; w[f + 3] = v.w;
            }
            float v[J];
            for (int j = 0; j < J; ++j) v[j] = xs[r][t[j] + q];
            for (int f = 0; f < FT; ++f)
                for (int j = 0; j < J; ++j) part[f][j] = fmaf(w[f], v[j], part[f][j]);
        }
        for (int f = 0; f < FT; ++f)
            for (int j = 0; j < J; ++j) acc[f][j] += part[f][j];
    };
    for (int q = 0; q < BLOCKS; ++q) block(q, STRIDE);
    if (REST > 0) block(BLOCKS, REST);
    for (int h = 0; h < 2; ++h) {
        const int p = p0 + lane + h * 32;
        if (p >= P) continue;
        float m[FT];
        for (int f = 0; f < FT; ++f) {
            m[f] = fabsf(acc[f][h * POOL]);
            for (int j = 1; j < POOL; ++j) m[f] = fmaxf(m[f], fabsf(acc[f][h * POOL + j]));
        }
        float* out = y + ((size_t)b * P + p) * F + f0 + g * FT;
        for (int f = 0; f < FT; f += 4)
            *reinterpret_cast<float4*>(out + f) = make_float4(m[f], m[f + 1], m[f + 2], m[f + 3]);
    }
"""

_KERNEL: list[object] = []


SHARED_BYTES = 48 * 1024  # what a kernel's static shared memory may hold


def shared_bytes(taps: int, stride: int, pool: int) -> int:
    """The kernel's shared memory: FB filters' taps, and a block's span of samples by phase."""
    span = (pool * PB - 1) * stride + taps
    return 4 * (taps * FB + stride * -(-span // stride))


def applies(x: mx.array, weight: mx.array, stride: int, pool: int) -> bool:
    """Whether the kernel computes this stage: on CUDA, float32, one input channel, filters a multiple of FB, and
    the filters and samples in shared memory (the sinc filters' 251 taps at stride 10 take 48,840 bytes)."""
    return (
        conv_kernel.on_cuda()
        and x.dtype == mx.float32
        and weight.dtype == mx.float32
        and x.ndim == 3
        and weight.ndim == 3
        and x.shape[2] == weight.shape[2] == 1
        and weight.shape[0] % FB == 0
        and shared_bytes(weight.shape[1], stride, pool) <= SHARED_BYTES
    )


def pooled_frames(num_samples: int, kernel: int, stride: int, pool: int) -> int:
    """Max-pooled frames of the strided convolution of `num_samples` samples (the pool drops a partial group)."""
    return max(0, (num_samples - kernel) // stride + 1) // pool


def conv_abs_max_pool(x: mx.array, weight: mx.array, stride: int, pool: int) -> mx.array:
    """max over groups of `pool` frames of |conv1d(x, weight, stride)|, x (batch, samples, 1), weight (filters,
    taps, 1) -> (batch, pooled frames, filters); no bias (the sinc filters have none)."""
    batch, samples, _ = x.shape
    filters, taps, _ = weight.shape
    pooled = pooled_frames(samples, taps, stride, pool)
    if batch * pooled == 0:
        return mx.zeros((batch, pooled, filters), dtype=mx.float32)
    if not _KERNEL:
        _KERNEL.append(
            mx.fast.cuda_kernel(
                name="sinc_conv_abs_max_pool", input_names=["x", "wt", "sizes"], output_names=["y"], source=SOURCE
            )
        )
    threads = FB // FT * 32
    (y,) = _KERNEL[0](
        inputs=[x, weight.reshape(filters, taps).T, kernel_arguments.int32s(batch, samples, pooled, filters)],
        template=[("K", taps), ("STRIDE", stride), ("POOL", pool), ("FB", FB), ("FT", FT), ("PB", PB)],
        grid=(-(-pooled // PB) * threads, filters // FB, batch),
        threadgroup=(threads, 1, 1),
        output_shapes=[(batch, pooled, filters)],
        output_dtypes=[mx.float32],
    )
    return y

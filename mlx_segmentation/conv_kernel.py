"""WeSpeaker's convolutions on CUDA as one custom kernel: an implicit matrix product, float32 throughout.

Each thread block computes a tile of BM output pixels by BN output channels, reading the input's patches
straight from the (batch, height, width, channels) image (zeros outside it, for the padding) and the
weights as (kernel height x kernel width x in channels, out channels). Each step's tiles (BK input
channels of one tap) are copied from global to shared memory by `cp.async`, two steps ahead, into a ring
of three: no registers hold them on the way and one barrier per step suffices (the hour's embeddings on
an H100 7.1 to 7.2 s against 7.9 s when each thread loaded the next step's tiles into registers,
benchmarks/results/h100_pipelined_conv.log). The steps come in order, so each thread keeps the next one's tap,
channels and offsets as counters and pointers advanced by additions: no division per step, as the kernel first
computed them, when it issued an instruction on 73% of its cycles and two in five were not multiply-adds
(Nsight Compute, h100_ncu_conv.txt; 17% faster since, the same sums, h100_nov27u_*). Each output is summed in a
fixed order whatever the batch, in float32 fused multiply-adds: the BK products of each step apart, the steps of
each 3 x 3 tap apart, then the taps (`SUMS`). With these short partial sums the ResNet's deepest layer lands
1.10e-3 from float64 on real speech, closer than pyannote's own float32 (1.63e-3); one running sum of up to 2,304
products drifted to 6.38e-3. Nothing is unfolded in memory, unlike `wespeaker.unfolded_conv2d`, and
MLX's CUDA conv2d (which fails on some shapes, benchmarks/conv2d_oom.py) is not used. Shapes, strides
and padding are arguments, not template parameters: MLX compiles a custom kernel anew in every process
(1.3 to 2 s per instance on an H100), so three instances (two tiles, two sum modes) serve every
convolution of the ResNet.
"""

from __future__ import annotations

from functools import cache

import mlx.core as mx
import mlx.nn as nn

from . import kernel_arguments, recurrence

BK = 16  # input channels per step of the product (the kernel needs in_channels % 16 == 0)
SUMS = 2  # partial sums per step and per tap (2), or per tap only (1, 1 x 1 kernels: twice as fast there, measured)

# The sizes, and each thread's pixels to copy: ROWS of them, KQ threads to a pixel (the constants before it)
PIXELS = """
    const int N = sizes[0], H = sizes[1], W = sizes[2], HO = sizes[3], WO = sizes[4];
    const int CI = sizes[5], CO = sizes[6], KH = sizes[7], KW = sizes[8];
    const int SH = sizes[9], SW = sizes[10], PH = sizes[11], PW = sizes[12];
    const int M = N * HO * WO;
    const int tid = threadIdx.x;
    const int m0 = blockIdx.x * BM;
    const int n0 = blockIdx.y * BN;
    const int kq = (tid % KQ) * 4;
    int row[ROWS], base[ROWS], iy0[ROWS], ix0[ROWS];
    bool valid[ROWS];
    for (int l = 0; l < ROWS; ++l) {
        row[l] = (tid + l * THREADS) / KQ;
        const int m = m0 + row[l];
        valid[l] = m < M;
        const int mm = valid[l] ? m : 0;
        const int n = mm / (HO * WO), rest = mm % (HO * WO);
        base[l] = n * H * W;
        iy0[l] = (rest / WO) * SH - PH;
        ix0[l] = (rest % WO) * SW - PW;
    }
"""

# Each step's tiles into shared memory (As, Bs, declared before): `load()` copies the next step's, by `cp.async`
LOADS = """
    auto copy16 = [](void* dst, const float* src, bool inside) {
        const unsigned at = (unsigned)__cvta_generic_to_shared(dst);
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" :: "r"(at), "l"(src), "r"(inside ? 16 : 0));
    };
    const int steps = KH * KW * (CI / BK);
    long long pixel[ROWS];  // each copied pixel's first channel at tap (0, 0), from x (negative in the padding)
    for (int l = 0; l < ROWS; ++l) pixel[l] = ((long long)base[l] + (long long)iy0[l] * W + ix0[l]) * CI + kq;
    const float* weights = wt + n0;
    int c0 = 0, dy = 0, dx = 0, tap_offset = 0, stage_in = 0;  // the next step's channels, tap and its offset, stage
    auto load = [&]() {  // the next step's tiles (channels c0 of tap dy, dx) into its stage; steps come in order
        for (int l = 0; l < ROWS; ++l) {
            const int iy = iy0[l] + dy, ix = ix0[l] + dx;
            const bool inside = valid[l] && iy >= 0 && iy < H && ix >= 0 && ix < W;
            copy16(&As[stage_in][row[l]][kq], inside ? x + pixel[l] + tap_offset + c0 : x, inside);
        }
        for (int l = 0; l < WLOADS; ++l) {
            const int q = tid + l * THREADS;
            const int k = q / (BN / 4), n = (q % (BN / 4)) * 4;
            if (q < WQ) copy16(&Bs[stage_in][k][n], weights + (size_t)k * CO + n, true);
        }
        weights += (size_t)BK * CO;  // the weights' rows are (tap, channel): step s starts at row s * BK
        stage_in = stage_in + 1 == STAGES ? 0 : stage_in + 1;
        c0 += BK;
        if (c0 == CI) {
            c0 = 0;
            tap_offset += CI;
            if (++dx == KW) {
                dx = 0;
                ++dy;
                tap_offset += (W - KW) * CI;
            }
        }
        asm volatile("cp.async.commit_group;");
    };
"""

SOURCE = (
    """
    constexpr int THREADS = (BM / TM) * (BN / TN);
    constexpr int KQ = BK / 4;                          // 16-byte copies per pixel per step
    constexpr int ROWS = BM * KQ / THREADS;             // pixels each thread copies per step
    constexpr int WQ = BK * BN / 4;                     // 16-byte copies of weights per step
    constexpr int WLOADS = (WQ + THREADS - 1) / THREADS;
    constexpr int STAGES = 3;
    constexpr int LA = BK + 4;                          // As rows: a pixel's BK channels, 16-byte aligned
"""
    + PIXELS
    + """
    __shared__ __align__(16) float As[STAGES][BM][LA];
    __shared__ __align__(16) float Bs[STAGES][BK][BN + 4];
"""
    + LOADS
    + """
    const int ty = tid / (BN / TN), tx = tid % (BN / TN);
    float acc[TM][TN], tap[TM][TN], part[TM][TN];  // the whole sum, this tap's, this step's (SUMS == 2)
    for (int i = 0; i < TM; ++i)
        for (int j = 0; j < TN; ++j) acc[i][j] = tap[i][j] = 0.0f;
    load();
    if (steps > 1) load();
    for (int s = 0; s < steps; ++s) {
        if (s + 1 < steps) asm volatile("cp.async.wait_group 1;");
        else asm volatile("cp.async.wait_group 0;");
        __syncthreads();
        if (s + 2 < steps) load();
        const int stage = s % STAGES;
        if (SUMS == 2) {
            for (int i = 0; i < TM; ++i)
                for (int j = 0; j < TN; ++j) part[i][j] = 0.0f;
        }
        #pragma unroll
        for (int k4 = 0; k4 < BK; k4 += 4) {
            float4 a4[TM];
            #pragma unroll
            for (int i = 0; i < TM; ++i) a4[i] = *reinterpret_cast<const float4*>(&As[stage][ty + i * (BM / TM)][k4]);
            #pragma unroll
            for (int kk = 0; kk < 4; ++kk) {
                float b[TN];
                for (int j = 0; j < TN; j += 4) {
                    const float4 v = *reinterpret_cast<const float4*>(&Bs[stage][k4 + kk][tx * TN + j]);
                    b[j] = v.x; b[j + 1] = v.y; b[j + 2] = v.z; b[j + 3] = v.w;
                }
                for (int i = 0; i < TM; ++i) {
                    const float a = kk == 0 ? a4[i].x : kk == 1 ? a4[i].y : kk == 2 ? a4[i].z : a4[i].w;
                    for (int j = 0; j < TN; ++j) {
                        if (SUMS == 2) part[i][j] = fmaf(a, b[j], part[i][j]);
                        else tap[i][j] = fmaf(a, b[j], tap[i][j]);
                    }
                }
            }
        }
        if (SUMS == 2) {
            for (int i = 0; i < TM; ++i)
                for (int j = 0; j < TN; ++j) tap[i][j] += part[i][j];
        }
        if ((s + 1) % (CI / BK) == 0) {
            for (int i = 0; i < TM; ++i)
                for (int j = 0; j < TN; ++j) {
                    acc[i][j] += tap[i][j];
                    tap[i][j] = 0.0f;
                }
        }
    }
    const int epilogue = sizes[13];  // 0: none, 1: batch norm, 2: then ReLU, 3: batch norm, + shortcut, ReLU
    #pragma unroll
    for (int i = 0; i < TM; ++i) {
        const int m = m0 + ty + i * (BM / TM);  // a thread's rows interleaved: no bank conflicts reading As
        if (m < M) {
            #pragma unroll
            for (int j = 0; j < TN; j += 4) {
                const size_t at = (size_t)m * CO + n0 + tx * TN + j;
                float o[4] = {acc[i][j], acc[i][j + 1], acc[i][j + 2], acc[i][j + 3]};
                if (epilogue > 0) {  // nn.BatchNorm's arithmetic in eval mode
                    float add[4] = {0.0f, 0.0f, 0.0f, 0.0f};
                    if (epilogue == 3) {
                        const float4 s = *reinterpret_cast<const float4*>(shortcut + at);
                        add[0] = s.x; add[1] = s.y; add[2] = s.z; add[3] = s.w;
                    }
                    #pragma unroll
                    for (int q = 0; q < 4; ++q) {
                        const int n = n0 + tx * TN + j + q;
                        const float t = (o[q] - bn_mean[n]) * rsqrtf(bn_var[n] + bn_eps[0]);
                        float out = epilogue == 1  // nn.BatchNorm's own operations round each step, mx.compile's fuse
                            ? __fadd_rn(__fmul_rn(bn_weight[n], t), bn_bias[n]) : bn_weight[n] * t + bn_bias[n];
                        if (epilogue == 3) out += add[q];
                        o[q] = epilogue >= 2 && out < 0.0f ? 0.0f : out;
                    }
                }
                *reinterpret_cast<float4*>(y + at) = make_float4(o[0], o[1], o[2], o[3]);
            }
        }
    }
"""
)

_KERNEL: list[object] = []


def on_cuda() -> bool:
    return recurrence.gpu_backend() == "cuda"


@cache
def has_cp_async() -> bool:
    """Whether the GPU has `cp.async`: compute capability 8.0 or more (Ampere on). Older GPUs convolve otherwise."""
    info = mx.device_info(mx.gpu)
    major = info.get("compute_capability_major")
    if isinstance(major, int):
        return major >= 8
    digits = str(info.get("architecture", "")).removeprefix("sm_").rstrip("abf")  # "sm_90", "sm_120a"
    return digits.isdigit() and int(digits) >= 80


def takes(x: mx.array, weight: mx.array) -> bool:
    """What every use of the kernel needs: CUDA from compute capability 8.0, float32, in channels a multiple of 16."""
    return (
        on_cuda()
        and has_cp_async()
        and x.dtype == mx.float32
        and weight.dtype == mx.float32
        and weight.shape[-1] % BK == 0
    )


def applies(x: mx.array, weight: mx.array) -> bool:
    """Whether the kernel handles this convolution: `takes` it, and out channels a multiple of 32."""
    return takes(x, weight) and weight.shape[0] % 32 == 0 and x.ndim == 4


def tile(out_channels: int) -> tuple[int, int, int, int, int]:
    """(BM, BN, TM, TN, BK): 64 pixels by 64 channels, or 128 by 32 for 32 channels, 8 x 4 per thread.

    The fastest of the tiles `benchmarks/gpu_kernels.py --sweep` tries at the ResNet's shapes, or within a few
    percent of it (on an H100: h100_gpu_kernels_sweep_cp_async.log). Shared memory holds
    3 x 4 x (BM x (BK + 4) + BK x (BN + 4)) bytes: at most 48 KiB.
    """
    return (128, 32, 8, 4, BK) if out_channels == 32 else (64, 64, 8, 4, BK)


def partial_sums(taps: int) -> int:
    """The kernel's `SUMS` for a kernel of `taps` taps: one tap has no taps' sums to keep apart."""
    return SUMS if taps > 1 else 1


def compile_kernel(name: str, weights: str, source: str) -> object:
    """An MLX CUDA kernel of a convolution's `source`: inputs x, the weights (named `weights`), `kernel_sizes` and
    the epilogue's batch norm and shortcut."""
    inputs = ["x", weights, "sizes", *EPILOGUE_INPUTS]
    return mx.fast.cuda_kernel(name=name, input_names=inputs, output_names=["y"], source=source)


EPILOGUES = {(False, False, False): 0, (True, False, False): 1, (True, True, False): 2, (True, True, True): 3}
EPILOGUE_INPUTS = ["bn_mean", "bn_var", "bn_weight", "bn_bias", "bn_eps", "shortcut"]


def epilogue_inputs(norm: nn.BatchNorm | None, shortcut: mx.array | None) -> list[mx.array]:
    """The epilogue's inputs: the batch norm's statistics, affine parameters and eps, and the shortcut (a placeholder
    for each one not given)."""
    none = kernel_arguments.float32s(0.0)
    added = none if shortcut is None else shortcut
    if norm is None:
        return [none] * (len(EPILOGUE_INPUTS) - 1) + [added]
    eps = kernel_arguments.float32s(norm.eps)
    return [norm.running_mean, norm.running_var, norm.weight, norm.bias, eps, added]


def kernel_sizes(x: mx.array, weight: mx.array, stride: tuple[int, int], padding: tuple[int, int]) -> list[int]:
    """The kernels' `sizes`: batch, height, width, out height, out width, in and out channels, kernel height and
    width, strides, paddings, for channels-last x (N, H, W, in) and weight (out, kh, kw, in)."""
    batch, height, width, in_channels = x.shape
    out_channels, kernel_h, kernel_w, _ = weight.shape
    out_h = (height + 2 * padding[0] - kernel_h) // stride[0] + 1
    out_w = (width + 2 * padding[1] - kernel_w) // stride[1] + 1
    return [batch, height, width, out_h, out_w, in_channels, out_channels, kernel_h, kernel_w, *stride, *padding]


def conv2d(
    x: mx.array,
    weight: mx.array,
    stride: tuple[int, int],
    padding: tuple[int, int],
    tiles: tuple[int, int, int, int, int] | None = None,
    sums: int | None = None,
    norm: nn.BatchNorm | None = None,
    relu: bool = False,
    shortcut: mx.array | None = None,
) -> mx.array:
    """mx.conv2d(x, weight, stride, padding) for channels-last x (N, H, W, in) and weight (out, kh, kw, in), then, as
    the kernel writes each output, the eval-mode batch norm `norm`, + `shortcut` and ReLU where given (all three,
    the norm and ReLU, or the norm alone): no pass of their own over the output, which is written once.

    `tiles` overrides `tile(out_channels)`, `sums` the partial sums (benchmarks/gpu_kernels.py compares them).
    """
    epilogue = EPILOGUES.get((norm is not None, relu, shortcut is not None))
    if epilogue is None:
        raise ValueError("the epilogue is a batch norm, optionally ReLU after it, and a shortcut only with both")
    sizes = kernel_sizes(x, weight, stride, padding) + [epilogue]
    batch, out_h, out_w, out_channels, taps = sizes[0], sizes[3], sizes[4], sizes[6], sizes[7] * sizes[8]
    if batch * out_h * out_w == 0:  # no output pixels: no kernel launch
        return mx.zeros((batch, out_h, out_w, out_channels), dtype=mx.float32)
    if not _KERNEL:
        _KERNEL.append(compile_kernel("wespeaker_conv2d", "wt", SOURCE))
    bm, bn, tm, tn, bk = tiles or tile(out_channels)
    threads = (bm // tm) * (bn // tn)
    blocks = -(-batch * out_h * out_w // bm)
    (y,) = _KERNEL[0](
        inputs=[
            x,
            weight.reshape(out_channels, -1).T,
            kernel_arguments.int32s(*sizes),
            *epilogue_inputs(norm, shortcut),
        ],
        template=[
            ("BM", bm),
            ("BN", bn),
            ("TM", tm),
            ("TN", tn),
            ("BK", bk),
            ("SUMS", sums or partial_sums(taps)),
        ],
        grid=(blocks * threads, out_channels // bn, 1),
        threadgroup=(threads, 1, 1),
        output_shapes=[(batch, out_h, out_w, out_channels)],
        output_dtypes=[mx.float32],
    )
    return y


def applies_1d(x: mx.array, weight: mx.array) -> bool:
    """Whether `conv1d` computes this 1-d convolution: x (batch, time, in), weight (out, taps, in), as `applies`
    but for any number of out channels (padded to a multiple of 32)."""
    return (
        x.ndim == weight.ndim == 3
        and takes(x, weight)
        and x.shape[2] == weight.shape[2]
        and x.shape[1] >= weight.shape[1]
    )


def conv1d(x: mx.array, weight: mx.array) -> mx.array:
    """mx.conv1d(x, weight) (stride 1, no padding, no bias) through the kernel, as a convolution of height 1; the
    out channels padded with zero filters to a multiple of 32, their outputs dropped."""
    out_channels = weight.shape[0]
    padded = mx.pad(weight, [(0, -out_channels % 32), (0, 0), (0, 0)])
    return conv2d(x[:, None], padded[:, None], (1, 1), (0, 0))[:, 0, :, :out_channels]

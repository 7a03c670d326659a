"""A model's forward pass evaluated in parts while it is queued, so that a GPU holds a few parts' buffers, not all."""

from __future__ import annotations

from collections import deque

import mlx.core as mx


class Parts:
    """Evaluates forward passes in parts while they are queued: each part queued, then all but `ahead` waited for.

    A GPU keeps every buffer of the work queued together alive until all of it has run (MLX's CUDA
    backend puts up to 100 operations in one graph on an H100), so a forward queued whole holds all
    its intermediates at once: the segmentation model 634 MiB at 32 windows of 5 s, where PyTorch
    holds 273. In parts (the segmentation model's: after the input's normalisation, the sinc filters'
    pooling, each SincNet stage, each stretch of an LSTM layer's steps and each layer; the ResNet's: after
    its stem and each block) at
    most `ahead` + 1 are alive, and the GPU starts on the first while the rest is queued
    (`benchmarks/results/h100_memory_by_part.log`, `ahead` 1: 273 MiB and 5.8 ms instead of 634 MiB
    and 6.9 ms). One `Parts` may serve successive forwards (the recording pipeline's); `ahead=None`
    queues them whole.
    """

    def __init__(self, ahead: int | None = 1) -> None:
        self.ahead = ahead
        self.queued: deque[mx.array] = deque()

    def __call__(self, x: mx.array) -> mx.array:
        if self.ahead is None:
            return x
        mx.async_eval(x)
        self.queued.append(x)
        while len(self.queued) > self.ahead:
            mx.eval(self.queued.popleft())
        return x


WHOLE = Parts(ahead=None)  # queues a forward whole; it keeps nothing, so one instance serves every caller

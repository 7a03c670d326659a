"""Parity checks: the PyTorch reference (genuine pyannote.audio) against mlx_segmentation."""

import mlx_segmentation  # noqa: F401  (first: where installed, it loads MKL for MLX's CPU backend before MLX)

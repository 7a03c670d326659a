"""Parity checks: the PyTorch reference (genuine pyannote.audio) against mlx_segmentation."""

"""Convert pyannote.audio segmentation checkpoints to MLX, check them, and publish them."""

__version__ = "0.1.0"

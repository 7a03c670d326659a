"""Convert pyannote.audio checkpoints (segmentation and embedding models) to MLX, and publish them."""

from mlx_segmentation import __version__

__all__ = ["__version__"]

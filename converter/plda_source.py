"""Read VBx's PLDA (`xvec_transform.npz`, `plda.npz`) without unpickling: names, float dtypes, shapes, finiteness.

Shapes, from pyannote.audio's `utils/vbx.py` `vbx_setup`: x-vectors of dimension D are centred by mean1 (D,),
projected by lda (D, L), centred by mean2 (L,); then mu (L,), tr (L, L) and psi (L,) make the PLDA transform.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from mlx_segmentation.plda import PLDA_FILES, expected_shapes

from .errors import ConverterError

MAX_DIMENSION = 4096


class PLDAError(ConverterError):
    """A PLDA file that is unreadable, pickled, or holds the wrong arrays."""


def read_plda(transform: Path, plda: Path) -> dict[str, np.ndarray]:
    """The six arrays as float64, checked against one another; `check_dimension` ties them to the embeddings."""
    arrays = {**_read_npz(transform, PLDA_FILES["xvec_transform.npz"]), **_read_npz(plda, PLDA_FILES["plda.npz"])}
    expected = expected_shapes(arrays)
    for name, shape in expected.items():
        path = transform if name in PLDA_FILES["xvec_transform.npz"] else plda
        if arrays[name].shape != shape or not 0 < arrays[name].size <= MAX_DIMENSION**2:
            raise PLDAError(
                f"{path}: {name} has shape {arrays[name].shape}; expected {_shapes()} (x-vectors of D, LDA of L dims)"
            )
    return arrays


def check_dimension(arrays: dict[str, np.ndarray], embedding_dimension: int, transform: Path) -> None:
    """Refuse a PLDA made for embeddings of another dimension than the embedding model's."""
    if arrays["mean1"].shape[0] != embedding_dimension:
        raise PLDAError(
            f"{transform}: the PLDA takes {arrays['mean1'].shape[0]}-d x-vectors; "
            f"the embedding model makes {embedding_dimension}-d ones"
        )


def _read_npz(path: Path, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    try:
        npz = np.load(path, allow_pickle=False)
        if not isinstance(npz, np.lib.npyio.NpzFile):
            raise PLDAError(f"{path}: a single array, not an .npz archive of {list(names)}")
        with npz:
            found = set(npz.files)
            if found != set(names):
                raise PLDAError(f"{path}: holds arrays {sorted(found)}; expected exactly {list(names)}")
            arrays = {name: npz[name] for name in names}
    except PLDAError:
        raise
    except ValueError as error:  # numpy refuses object arrays without allow_pickle
        raise PLDAError(f"{path}: holds pickled objects, which are never loaded ({str(error)[:120]})") from None
    except (OSError, EOFError, zipfile.BadZipFile) as error:
        raise PLDAError(f"{path}: not a readable .npz file ({str(error).splitlines()[0][:200]})") from None
    for name, array in arrays.items():
        if array.dtype.kind != "f":
            raise PLDAError(f"{path}: {name} is {array.dtype}, not a floating-point array")
        if not np.isfinite(array).all():
            raise PLDAError(f"{path}: {name} holds NaN or infinite values")
    return {name: array.astype(np.float64) for name, array in arrays.items()}


def _shapes() -> str:
    return "mean1 (D,), lda (D, L), mean2 (L,), mu (L,), tr (L, L), psi (L,)"

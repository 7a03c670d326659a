"""The kernels' small arguments are made once per set of values (so that each moves to a GPU once)."""

import mlx.core as mx
import numpy as np

from mlx_segmentation import kernel_arguments
from mlx_segmentation.config import Specifications
from mlx_segmentation.inference import powerset_mapping_on_device
from mlx_segmentation.wespeaker import nearest_indices


def test_the_same_values_give_the_same_array_and_other_values_another():
    sizes = kernel_arguments.int32s(26, 160_000, 5_333)
    assert kernel_arguments.int32s(26, 160_000, 5_333) is sizes
    assert sizes.dtype == mx.int32 and np.array(sizes).tolist() == [26, 160_000, 5_333]
    assert kernel_arguments.int32s(26, 160_000, 5_334) is not sizes
    params = kernel_arguments.float32s(1e-5, 0.01)
    assert kernel_arguments.float32s(1e-5, 0.01) is params and params.dtype == mx.float32
    np.testing.assert_array_equal(np.array(params), np.array([1e-5, 0.01], np.float32))


def test_the_pooling_indices_and_the_powerset_mapping_are_made_once():
    """The same reasoning for the statistics pooling's resampling indices and the powerset decoding's mapping, both
    handed to the device at every batch: the same sizes (specifications) give the same array, with the same values."""
    indices = nearest_indices(589, 998)
    assert nearest_indices(589, 998) is indices and nearest_indices(589, 997) is not indices
    assert np.array(indices)[[0, 1, 2, -1]].tolist() == [0, 0, 1, 588]
    spec = Specifications(
        problem="MONO_LABEL_CLASSIFICATION",
        resolution="FRAME",
        duration=10.0,
        classes=["a", "b", "c"],
        powerset_max_classes=2,
    )
    mapping = powerset_mapping_on_device(spec.model_dump_json())
    assert powerset_mapping_on_device(spec.model_dump_json()) is mapping
    np.testing.assert_array_equal(np.array(mapping), spec.powerset_mapping())

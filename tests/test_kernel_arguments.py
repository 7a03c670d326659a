"""The kernels' small arguments are made once per set of values (so that each moves to a GPU once)."""

import mlx.core as mx
import numpy as np

from mlx_segmentation import kernel_arguments


def test_the_same_values_give_the_same_array_and_other_values_another():
    sizes = kernel_arguments.int32s(26, 160_000, 5_333)
    assert kernel_arguments.int32s(26, 160_000, 5_333) is sizes
    assert sizes.dtype == mx.int32 and np.array(sizes).tolist() == [26, 160_000, 5_333]
    assert kernel_arguments.int32s(26, 160_000, 5_334) is not sizes
    params = kernel_arguments.float32s(1e-5, 0.01)
    assert kernel_arguments.float32s(1e-5, 0.01) is params and params.dtype == mx.float32
    np.testing.assert_array_equal(np.array(params), np.array([1e-5, 0.01], np.float32))

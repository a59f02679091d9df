import pytest

from dynamic_shapes.gpu import GpuStackMissing, require_gpu_stack


def pytest_collection_modifyitems(items):
    """Skips the tests marked `gpu`, saying why, where TensorRT or a CUDA GPU is missing."""
    try:
        require_gpu_stack()
    except GpuStackMissing as missing:
        reason = "needs TensorRT and a CUDA GPU: " + str(missing).replace("\n", "; ")
        skip = pytest.mark.skip(reason=reason)
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)

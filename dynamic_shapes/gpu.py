"""Whether TensorRT and a CUDA GPU are usable, and the CUDA runtime calls the project makes,
through NVIDIA's cuda-bindings: page-locked memory, free memory, the GPU's name."""

import ctypes
import functools

import numpy as np

TENSORRT_INSTALL = "python3 -m pip install tensorrt"
CUDA_BINDINGS_INSTALL = "python3 -m pip install 'cuda-bindings>=12.8'"


class GpuStackMissing(RuntimeError):
    """TensorRT or a usable CUDA GPU is missing; the message says what and how to get it."""


def require_gpu_stack() -> None:
    """Raises GpuStackMissing, saying what is missing and how to get it, unless TensorRT,
    cuda-bindings and a CUDA GPU are all usable."""
    problems = []
    # Any exception counts: a broken install fails in more ways than ImportError (a missing
    # shared library, an ABI mismatch), and each means the same thing to the user.
    try:
        import tensorrt  # noqa: F401
    except Exception as error:
        problems.append(f"TensorRT is not usable ({error}); install it with: {TENSORRT_INSTALL}")
    try:
        runtime = cudart()
    except Exception as error:
        problems.append(
            f"cuda-bindings is not usable ({error}); install it with: {CUDA_BINDINGS_INSTALL}"
        )
    else:
        problems += cuda_device_problems(runtime)
    if problems:
        raise GpuStackMissing("\n".join(problems))


def cuda_device_problems(runtime) -> list:
    error, count = runtime.cudaGetDeviceCount()
    if error == runtime.cudaError_t.cudaErrorInsufficientDriver:
        return [
            "No usable NVIDIA driver (cudaErrorInsufficientDriver): install one; if yours "
            "predates CUDA 13, run: python3 -m pip install 'cuda-bindings<13'"
        ]
    if error != runtime.cudaError_t.cudaSuccess or count == 0:
        return [
            f"No CUDA GPU is visible ({error.name}, {count} devices): check nvidia-smi "
            "and CUDA_VISIBLE_DEVICES"
        ]
    return []


@functools.cache
def cudart():
    """CUDA's runtime API, through NVIDIA's cuda-bindings (imported on first use)."""
    from cuda.bindings import runtime

    return runtime


def check_cuda(result, what):
    """cuda-bindings calls return (error, *values): raises on an error, returns the values."""
    error, *values = result
    if error != cudart().cudaError_t.cudaSuccess:
        raise RuntimeError(f"{what} failed: {error.name}")
    return values[0] if len(values) == 1 else values


def gpu_name() -> str:
    """The name of CUDA device 0, e.g. 'NVIDIA H100 80GB HBM3'."""
    properties = check_cuda(cudart().cudaGetDeviceProperties(0), "cudaGetDeviceProperties")
    name = properties.name
    return (name.decode() if isinstance(name, bytes) else str(name)).rstrip("\x00")


def device_memory() -> tuple[int, int]:
    """(free, total) bytes of memory on the current GPU."""
    free, total = check_cuda(cudart().cudaMemGetInfo(), "cudaMemGetInfo")
    return free, total


class PinnedBuffer:
    """`nbytes` of page-locked host memory. Copies between the GPU and page-locked memory run
    asynchronously and at full speed; from ordinary (pageable) memory they do neither."""

    def __init__(self, nbytes):
        self.nbytes = nbytes
        self.address = check_cuda(cudart().cudaMallocHost(nbytes), "cudaMallocHost")

    def as_array(self, dtype, shape) -> np.ndarray:
        memory = (ctypes.c_byte * self.nbytes).from_address(self.address)
        return np.frombuffer(memory, dtype, count=int(np.prod(shape))).reshape(shape)

    def free(self):
        if self.address is not None:
            cudart().cudaFreeHost(self.address)
            self.address = None

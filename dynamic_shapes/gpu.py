"""Whether TensorRT, cuda-bindings and a CUDA GPU are usable here (and which version pairs are
known to fail, with the fix), and the CUDA runtime calls the project makes through NVIDIA's
cuda-bindings: page-locked memory, free memory, the GPU's name, whether MPS serves it."""

import contextlib
import functools
import re
import weakref

import numpy as np

TENSORRT_INSTALL = "python3 -m pip install tensorrt"
# What pip installs a library TensorRT loads from: the fix where the library cannot be found.
# TensorRT 8.x links cuDNN 8, and pip resolves its requirement to cuDNN 9 unless told otherwise.
LIBRARY_PACKAGES = {
    "libcudnn.so.8": "'nvidia-cudnn-cu12<9'",
    "libcublas.so.12": "nvidia-cublas-cu12",
    "libcublasLt.so.12": "nvidia-cublas-cu12",
    "libcudart.so.12": "nvidia-cuda-runtime-cu12",
}
# The distributions that install `import tensorrt`, newest naming first.
TENSORRT_DISTRIBUTIONS = ("tensorrt", "tensorrt-cu13", "tensorrt-cu12", "tensorrt-cu11")
CUDA_BINDINGS_INSTALL = "python3 -m pip install 'cuda-bindings>=12.8,<13'"


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
        problems.append(tensorrt_problem(error, installed_tensorrt_version()))
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


def installed_tensorrt_version() -> str | None:
    """The version of the TensorRT distribution pip installed, whether or not it imports."""
    from importlib import metadata

    for name in TENSORRT_DISTRIBUTIONS:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def tensorrt_problem(error: BaseException, installed: str | None) -> str:
    """Why `import tensorrt` failed with `error`, and the fix, where `installed` is the version
    pip installed (None: none). TensorRT missing and TensorRT installed but unable to load a
    library it needs call for different fixes: reinstalling TensorRT fixes neither the second
    nor a NumPy it was not built for."""
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    if isinstance(error, ModuleNotFoundError) and re.match(
        r"tensorrt(\.|$)", error.name or text.removeprefix("No module named ").strip("'")
    ):
        return f"TensorRT is not usable (not installed); install it with: {TENSORRT_INSTALL}"
    what = f"TensorRT {installed}" if installed else "TensorRT"
    library = re.search(r"(lib[\w.+-]+\.so(?:\.\d+)*)", text)
    if library and library.group(1) in LIBRARY_PACKAGES:
        fix = f"python3 -m pip install {LIBRARY_PACKAGES[library.group(1)]}"
        return f"{what} is installed but cannot load {library.group(1)} ({text}); fix: {fix}"
    if library:
        return (
            f"{what} is installed but cannot load {library.group(1)} ({text}): a library it "
            "needs is missing; see that TensorRT version's installation guide"
        )
    if "NumPy" in text or "numpy.core.multiarray" in text:
        return (
            f"{what} is installed but was built for another NumPy ({text}); fix: "
            "python3 -m pip install 'numpy<2'"
        )
    return f"{what} is installed but cannot be imported ({text}); reinstall it with pip"


def cuda_device_problems(runtime) -> list:
    error, count = runtime.cudaGetDeviceCount()
    if error == runtime.cudaError_t.cudaErrorInsufficientDriver:
        return [driver_problem(runtime)]
    if error != runtime.cudaError_t.cudaSuccess or count == 0:
        return [
            f"No CUDA GPU is visible ({error.name}, {count} devices): check nvidia-smi "
            "and CUDA_VISIBLE_DEVICES"
        ]
    return []


def driver_problem(runtime) -> str:
    """Why the driver cannot serve these cuda-bindings, and what to do about it."""
    from cuda import bindings

    error, version = runtime.cudaDriverGetVersion()
    major = bindings.__version__.split(".")[0]
    needs = f"cuda-bindings {bindings.__version__} needs a driver for CUDA {major}"
    if error != runtime.cudaError_t.cudaSuccess or version == 0:
        return f"No NVIDIA driver is usable (cudaErrorInsufficientDriver; {needs}): install one"
    return (
        f"The NVIDIA driver supports CUDA {version // 1000}.{version % 1000 // 10}, and {needs}:"
        f" install cuda-bindings for your driver: {CUDA_BINDINGS_INSTALL} (or update the driver)"
    )


def version_tuple(version: str) -> tuple:
    """(8, 6, 0) for '8.6.0', (0, 53, 6) for '0.53.6.post1': the first three numbers."""
    return tuple(int(number) for number in re.findall(r"\d+", version)[:3])


def installed_polygraphy_problem() -> str | None:
    """polygraphy_problem() for the TensorRT and Polygraphy installed here."""
    import polygraphy
    import tensorrt

    return polygraphy_problem(tensorrt.__version__, polygraphy.__version__)


def polygraphy_problem(tensorrt_version: str, polygraphy_version: str) -> str | None:
    """Why `polygraphy inspect model` fails on this project's engines with this pair of
    versions, and the fix; None where the pair works."""
    tensorrt, polygraphy = version_tuple(tensorrt_version), version_tuple(polygraphy_version)
    if tensorrt < (10,) and polygraphy >= (0, 50):
        return (
            f"Polygraphy {polygraphy_version} cannot `inspect model` a TensorRT "
            f"{tensorrt_version} engine with several profiles; for TensorRT 8, run: "
            "python3 -m pip install -c constraints-tensorrt8.txt -r requirements.txt"
        )
    if tensorrt >= (11,) and polygraphy < (0, 53, 6):
        return (
            f"Polygraphy {polygraphy_version} predates TensorRT {tensorrt_version}: its "
            "`inspect model` reads engine.device_memory_size, which TensorRT 11 removed; run: "
            "python3 -m pip install -U 'polygraphy>=0.53.6'"
        )
    return None


_SUCCESS = None  # cudaError_t.cudaSuccess, once cuda-bindings is imported


@functools.cache
def cudart():
    """CUDA's runtime API, through NVIDIA's cuda-bindings (imported on first use)."""
    global _SUCCESS
    from cuda.bindings import runtime

    _SUCCESS = runtime.cudaError_t.cudaSuccess
    return runtime


def check_cuda(result, what):
    """cuda-bindings calls return (error, *values): raises on an error, returns the values."""
    error = result[0]
    # Enum members are singletons: the identity test is the fast path of every CUDA call.
    if error is not _SUCCESS and error != cudart().cudaError_t.cudaSuccess:
        raise RuntimeError(f"{what} failed: {error.name}")
    return result[1] if len(result) == 2 else list(result[1:])


def capture_graph(stream, enqueue) -> tuple:
    """A CUDA graph of the work `enqueue(stream)` queues on `stream`, as (graph, executable
    graph); RuntimeError where CUDA cannot capture it, with the error cleared so that the stream
    serves on. The capture is thread-local: other threads may use CUDA meanwhile."""
    rt = cudart()
    mode = rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
    check_cuda(rt.cudaStreamBeginCapture(stream, mode), "cudaStreamBeginCapture")
    graph = None
    try:
        try:
            enqueue(int(stream))
        finally:
            graph = check_cuda(rt.cudaStreamEndCapture(stream), "cudaStreamEndCapture")
        return graph, check_cuda(rt.cudaGraphInstantiate(graph, 0), "cudaGraphInstantiate")
    except BaseException:
        rt.cudaGetLastError()
        destroy_graph(graph)
        raise


def destroy_graph(graph=None, graph_exec=None) -> None:
    """Frees a captured CUDA graph and its executable graph, either of which may be None."""
    rt = cudart()
    if graph_exec is not None:
        rt.cudaGraphExecDestroy(graph_exec)
    if graph is not None:
        rt.cudaGraphDestroy(graph)


def gpu_name() -> str:
    """The name of CUDA device 0, e.g. 'NVIDIA H100 80GB HBM3'."""
    properties = check_cuda(cudart().cudaGetDeviceProperties(0), "cudaGetDeviceProperties")
    name = properties.name
    return (name.decode() if isinstance(name, bytes) else str(name)).rstrip("\x00")


def uses_mps() -> bool:
    """Whether this process's work on GPU 0 goes through NVIDIA's Multi-Process Service (MPS),
    which runs the work of several processes on the GPU at once; without it, the GPU serves
    one process's CUDA context at a time, in turns. False where the driver cannot say."""
    rt = cudart()
    error, enabled = rt.cudaDeviceGetAttribute(rt.cudaDeviceAttr.cudaDevAttrMpsEnabled, 0)
    return error == rt.cudaError_t.cudaSuccess and bool(enabled)


def device_memory() -> tuple[int, int]:
    """(free, total) bytes of memory on the current GPU."""
    free, total = check_cuda(cudart().cudaMemGetInfo(), "cudaMemGetInfo")
    return free, total


class PageLockedMemory:
    """`nbytes` of page-locked host memory, freed when the last array over it is collected.
    Copies between the GPU and page-locked memory run asynchronously and at full speed; from
    ordinary (pageable) memory they do neither."""

    def __init__(self, nbytes):
        self.address = check_cuda(cudart().cudaMallocHost(max(nbytes, 1)), "cudaMallocHost")
        # NumPy builds arrays over it through this interface, and keeps this object as their
        # base: every view keeps the memory alive.
        self.__array_interface__ = {
            "data": (self.address, False),
            "shape": (nbytes,),
            "typestr": "|u1",
            "version": 3,
        }

    def __del__(self):
        # At interpreter exit CUDA may be gone already, and the memory with it.
        with contextlib.suppress(Exception):
            cudart().cudaFreeHost(self.address)


# The arrays page_locked_empty() made, by id, with their first byte's address: reading an
# array's address from NumPy costs microseconds, and the same arrays serve request after request.
_page_locked = {}  # id(array) -> (weak reference to the array, address)


def page_locked_empty(shape, dtype) -> np.ndarray:
    """An uninitialized NumPy array in page-locked host memory."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    memory = PageLockedMemory(nbytes)
    array = np.asarray(memory)[:nbytes].view(dtype).reshape(shape)
    key = id(array)
    _page_locked[key] = (weakref.ref(array, lambda _: _page_locked.pop(key, None)), memory.address)
    return array


def page_locked_address(array: np.ndarray) -> int | None:
    """The address of a contiguous array that lies in memory page_locked_empty() allocated (the
    array itself or a view of it); None for any other. Known without asking CUDA, whose answer
    (cudaPointerGetAttributes) costs more than staging a small request."""
    known = _page_locked.get(id(array))
    if known is not None and known[0]() is array:
        return known[1]
    base = array
    while isinstance(base, np.ndarray) and base.base is not None:
        base = base.base
    if not isinstance(base, PageLockedMemory):
        return None
    return array.__array_interface__["data"][0]


def is_page_locked(array: np.ndarray) -> bool:
    """Whether an array lies in memory page_locked_empty() allocated."""
    return page_locked_address(array) is not None

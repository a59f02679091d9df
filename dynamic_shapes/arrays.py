"""The arrays a request may hold, and where each one lives: NumPy arrays in ordinary (pageable)
or page-locked host memory, and GPU arrays of any library that speaks `__cuda_array_interface__`
(CuPy, PyTorch, Numba) or DLPack (JAX and most others). Where an array lives decides how many
times the dispatcher must copy it: pageable memory through a page-locked staging buffer,
page-locked memory straight to the GPU, GPU memory not at all.

Reading an array's description needs no GPU; asking CUDA whether host memory is page-locked
does (gpu.is_page_locked).
"""

import ctypes

import numpy as np

PAGEABLE, PAGE_LOCKED, ON_GPU = "pageable", "page-locked", "GPU"

# DLPack's device types and dtype codes (dlpack.h) that map to this project's tensors.
DLPACK_CPU, DLPACK_CUDA = 1, 2
DLPACK_DTYPE_KINDS = {0: "i", 1: "u", 2: "f", 6: "b"}
# The legacy default stream, as both __cuda_array_interface__ and DLPack number it. CuPy and
# PyTorch name it for work on their default streams; a DLPack producer is asked to order its
# work before it. The dispatcher's streams synchronize with it (see serving/lean_executor.py).
LEGACY_DEFAULT_STREAM = 1


class Tensor:
    """One tensor of a request, or of its outputs: shape, dtype and where its memory is.

    `host` is the NumPy array for host memory. `address` is the first byte of GPU memory, and
    of page-locked host memory once located (None for others, which are staged). `stream` is
    the stream a GPU array's producer queued its work on, which must be waited on before
    reading it (None: ready now). `kind` is PAGEABLE, PAGE_LOCKED or ON_GPU; for host arrays
    the dispatcher sets it, asking CUDA. `owner` keeps a GPU array's memory alive while it is
    used.
    """

    __slots__ = ("address", "dtype", "host", "kind", "owner", "shape", "stream")

    def __init__(self, shape, dtype, host=None, address=None, stream=None, kind=None, owner=None):
        self.shape, self.dtype, self.host = shape, dtype, host
        self.address, self.stream, self.kind, self.owner = address, stream, kind, owner

    @property
    def on_gpu(self) -> bool:
        return self.kind == ON_GPU


def describe(value, what: str, writable=False) -> Tensor:
    """The Tensor for `value`, or ValueError naming what is accepted. Nothing is copied."""
    if isinstance(value, np.ndarray):
        if writable and not value.flags.writeable:
            raise ValueError(f"{what} is a read-only array; outputs need a writable one")
        return Tensor(value.shape, value.dtype, host=value)  # where it lives: see locate()
    interface = getattr(value, "__cuda_array_interface__", None)
    if interface is not None:
        return from_cuda_array_interface(interface, value, what)
    if hasattr(value, "__dlpack__") and hasattr(value, "__dlpack_device__"):
        return from_dlpack(value, what)
    raise ValueError(
        f"expected a NumPy array or a GPU array (__cuda_array_interface__ or DLPack) for "
        f"{what}, got {type(value).__name__}"
    )


def c_strides(shape, itemsize) -> tuple:
    strides, step = [], itemsize
    for size in reversed(shape):
        strides.append(step)
        step *= size
    return tuple(reversed(strides))


def check_gpu_layout(shape, itemsize, strides, what) -> None:
    # The GPU array is bound to TensorRT, or copied, as one block of memory. A dimension of
    # size 1 may carry any stride; no strides at all means C-contiguous.
    if strides is None:
        return
    expected = c_strides(shape, itemsize)
    if any(
        size > 1 and step != want for size, step, want in zip(shape, strides, expected, strict=True)
    ):
        raise ValueError(
            f"{what} is a GPU array with strides {tuple(strides)}; the dispatcher reads GPU "
            "arrays in place and needs them C-contiguous (e.g. cupy.ascontiguousarray)"
        )


def from_cuda_array_interface(interface: dict, owner, what: str) -> Tensor:
    """A Tensor for an object with `__cuda_array_interface__` (version 2 or later)."""
    if interface.get("mask") is not None:
        raise ValueError(f"{what} is a masked GPU array; masks are not supported")
    shape, dtype = tuple(interface["shape"]), np.dtype(interface["typestr"])
    check_gpu_layout(shape, dtype.itemsize, interface.get("strides"), what)
    address, _read_only = interface["data"]
    # Version 3 names the stream its producer's work is queued on; absent or None: ready now.
    return Tensor(
        shape, dtype, address=address, stream=interface.get("stream"), kind=ON_GPU, owner=owner
    )


class DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class DLTensor(ctypes.Structure):
    """The head of dlpack.h's DLManagedTensor, which a "dltensor" capsule points to."""

    _fields_ = [
        ("data", ctypes.c_void_p),
        ("device", DLDevice),
        ("ndim", ctypes.c_int32),
        ("dtype", DLDataType),
        ("shape", ctypes.POINTER(ctypes.c_int64)),
        ("strides", ctypes.POINTER(ctypes.c_int64)),
        ("byte_offset", ctypes.c_uint64),
    ]


_capsule_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_capsule_pointer.restype = ctypes.c_void_p
_capsule_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]


def from_dlpack(value, what: str) -> Tensor:
    """A Tensor for an object that speaks DLPack: host arrays through NumPy, CUDA arrays read
    from the capsule, which stays alive (and with it the memory) as long as the Tensor."""
    device_type, _ = value.__dlpack_device__()
    if device_type == DLPACK_CPU:
        return describe(np.from_dlpack(value), what)
    if device_type != DLPACK_CUDA:
        raise ValueError(f"{what} lives on DLPack device type {device_type}, not a CUDA GPU")
    # The producer orders its pending work before the legacy default stream, after which the
    # dispatcher's streams run. The capsule is not consumed (not renamed): when it is
    # collected, its destructor releases the producer's memory as the protocol says.
    capsule = value.__dlpack__(stream=LEGACY_DEFAULT_STREAM)
    tensor = ctypes.cast(_capsule_pointer(capsule, b"dltensor"), ctypes.POINTER(DLTensor)).contents
    kind = DLPACK_DTYPE_KINDS.get(tensor.dtype.code)
    if kind is None or tensor.dtype.lanes != 1:
        raise ValueError(f"{what} has DLPack dtype code {tensor.dtype.code}, not supported")
    dtype = np.dtype(f"{kind}{tensor.dtype.bits // 8}") if kind != "b" else np.dtype(np.bool_)
    shape = tuple(tensor.shape[i] for i in range(tensor.ndim))
    strides = (
        None
        if not tensor.strides
        else tuple(tensor.strides[i] * dtype.itemsize for i in range(tensor.ndim))
    )
    check_gpu_layout(shape, dtype.itemsize, strides, what)
    return Tensor(
        shape,
        dtype,
        address=tensor.data + tensor.byte_offset,
        stream=LEGACY_DEFAULT_STREAM,
        kind=ON_GPU,
        owner=capsule,
    )

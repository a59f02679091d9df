"""
The scenario every script here shares: the files, the model's input, the three use cases with
their optimization profiles, and how the engine for them is built, saved and loaded.

TensorRT and CUDA are imported only inside the functions that need them, so this module, and
everything that needs no GPU, works on a machine without either.
"""

import os
import tempfile
from pathlib import Path

import numpy as np
from polygraphy.backend.trt import Profile  # Polygraphy itself imports TensorRT lazily.

HERE = Path(__file__).resolve().parent
MODEL_PATH = HERE / "dynamic_identity.onnx"
ENGINE_PATH = HERE / "dynamic_identity.engine"

INPUT_NAME = "X"
OUTPUT_NAME = "Y"
IMAGE_SHAPE = (3, 28, 28)
DTYPE = np.float32

# The scenario table: one optimization profile per use case, in profile-index order.
# `opt` is the shape TensorRT tunes its kernels for; a shape outside [min, max] is refused.
PROFILES = {
    # Online, one image at a time. min == opt == max gives TensorRT the least to cover.
    "low latency": Profile().add(
        INPUT_NAME, min=(1, 3, 28, 28), opt=(1, 3, 28, 28), max=(1, 3, 28, 28)
    ),
    # Requests batched on the fly; batches of 4 are the most common, hence opt.
    "dynamic batching": Profile().add(
        INPUT_NAME, min=(1, 3, 28, 28), opt=(4, 3, 28, 28), max=(32, 3, 28, 28)
    ),
    # Bulk processing, always in full batches of 128.
    "offline": Profile().add(
        INPUT_NAME, min=(128, 3, 28, 28), opt=(128, 3, 28, 28), max=(128, 3, 28, 28)
    ),
}


class GpuStackMissing(RuntimeError):
    """TensorRT or a usable CUDA GPU is missing; the message says what and how to get it."""


def batch_range(profile: Profile) -> tuple[int, int, int]:
    """The (min, opt, max) batch size of a profile of this model."""
    shapes = profile[INPUT_NAME]
    return shapes.min[0], shapes.opt[0], shapes.max[0]


def describe_ranges(profiles=PROFILES) -> str:
    """The batch sizes each profile accepts: 'low latency 1, dynamic batching 1..32, ...'."""
    parts = []
    for use_case, profile in profiles.items():
        low, _, high = batch_range(profile)
        parts.append(f"{use_case} {low}" if low == high else f"{use_case} {low}..{high}")
    return ", ".join(parts)


def check_batch_fits(use_case: str, batch: int, profiles=PROFILES) -> None:
    """Refuses a batch size outside the use case's profile, naming the valid ranges."""
    low, _, high = batch_range(profiles[use_case])
    if not low <= batch <= high:
        raise ValueError(
            f"batch {batch} does not fit the {use_case} profile; "
            f"the profiles accept batch sizes: {describe_ranges(profiles)}"
        )


def random_images(batch: int, seed: int = 0) -> np.ndarray:
    """A batch of random 'images'. Random values, unlike ones, expose misplaced or stale data."""
    return np.random.default_rng(seed).standard_normal((batch, *IMAGE_SHAPE), dtype=DTYPE)


def check_identity(inputs: np.ndarray, outputs: np.ndarray) -> None:
    """Raises unless the outputs are bit-for-bit the inputs: what an identity model must return."""
    if outputs.shape != inputs.shape or not np.array_equal(outputs, inputs):
        raise AssertionError(
            f"output {OUTPUT_NAME} {outputs.shape} differs from input {INPUT_NAME} {inputs.shape}"
        )


def require_gpu_stack() -> None:
    """Raises GpuStackMissing, saying what is missing and how to get it, unless TensorRT and a
    CUDA GPU are both usable."""
    problems = []
    try:
        import tensorrt  # noqa: F401
    except (ImportError, OSError) as error:
        problems.append(
            f"TensorRT is not usable ({error}); install it with: python3 -m pip install tensorrt"
        )

    from cuda.bindings import runtime as cudart

    error, count = cudart.cudaGetDeviceCount()
    if error == cudart.cudaError_t.cudaErrorInsufficientDriver:
        problems.append(
            "No usable NVIDIA driver (cudaErrorInsufficientDriver): install one; if yours "
            "predates CUDA 13, run: python3 -m pip install 'cuda-bindings<13'"
        )
    elif error != cudart.cudaError_t.cudaSuccess or count == 0:
        problems.append(
            f"No CUDA GPU is visible ({error.name}, {count} devices): check nvidia-smi "
            "and CUDA_VISIBLE_DEVICES"
        )
    if problems:
        raise GpuStackMissing("\n".join(problems))


def build_engine(model_path=MODEL_PATH, profiles=PROFILES):
    """Builds a TensorRT engine for the ONNX model with one optimization profile per entry of
    `profiles` (use case -> Profile), in order."""
    from polygraphy.backend.trt import CreateConfig, engine_from_network, network_from_onnx_path

    config = CreateConfig(profiles=list(profiles.values()))
    return engine_from_network(network_from_onnx_path(str(model_path)), config=config)


def save_engine(engine, path=ENGINE_PATH) -> None:
    """Serializes the engine to `path` atomically: a good engine there is only ever replaced by
    another complete one."""
    from polygraphy.backend.trt import bytes_from_engine

    write_atomically(path, bytes_from_engine(engine))


def load_engine(path=ENGINE_PATH):
    """Deserializes an engine that save_engine() wrote."""
    from polygraphy.backend.common import bytes_from_path
    from polygraphy.backend.trt import engine_from_bytes

    return engine_from_bytes(bytes_from_path(str(path)))


def create_contexts(engine, count: int) -> list:
    """Creates `count` execution contexts of the engine, for the caller to own."""
    from polygraphy.logger import G_LOGGER

    # NOTE: On TensorRT 8.x, every new context tries to claim profile 0, and logs an error when
    # an earlier context holds it already. That is expected here: each context is given its
    # own profile before it runs. Silence only these calls, so that any other error still shows.
    with G_LOGGER.verbosity(G_LOGGER.CRITICAL):
        contexts = [engine.create_execution_context() for _ in range(count)]
    if not all(contexts):
        raise RuntimeError("TensorRT could not create an execution context (out of GPU memory?)")
    return contexts


def write_atomically(path, data: bytes) -> None:
    """Writes `data` to `path` through a temporary file in the same folder and a rename, so
    that an interrupted write leaves whatever was at `path` before, and no partial file."""
    path = Path(path)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp makes the file private (0600); give it the mode a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise

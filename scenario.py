"""
The scenario every script here shares: the files, the model's input, the three use cases with
their optimization profiles, and how the engine for them is built, saved and loaded.

TensorRT and CUDA are imported only inside the functions that need them, so this module, and
everything that needs no GPU, works on a machine without either.
"""

import datetime
import hashlib
import json
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from polygraphy.backend.trt import Profile  # Polygraphy itself imports TensorRT lazily.

HERE = Path(__file__).resolve().parent
MODEL_PATH = HERE / "dynamic_identity.onnx"
ENGINE_PATH = HERE / "dynamic_identity.engine"
# Beside each saved engine, a record of what it was built from, by and for: see reuse_verdict().
RECORD_SUFFIX = ".json"

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


@dataclass(frozen=True)
class TensorSpec:
    """An input or output tensor: its name, dtype, and the shape of one item of a batch."""

    name: str
    dtype: np.dtype
    item_shape: tuple

    @property
    def item_nbytes(self) -> int:
        """Bytes per item of a batch."""
        return math.prod(self.item_shape) * self.dtype.itemsize  # math.prod: cheap per request

    def describe(self) -> str:
        """'X float32 [batch, 3, 28, 28]'"""
        return f"{self.name} {self.dtype} [batch, {', '.join(map(str, self.item_shape))}]"


MODEL_INPUT = TensorSpec(INPUT_NAME, np.dtype(DTYPE), IMAGE_SHAPE)


class GpuStackMissing(RuntimeError):
    """TensorRT or a usable CUDA GPU is missing; the message says what and how to get it."""


class EngineLoadError(RuntimeError):
    """A saved engine could not be deserialized."""


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


def read_model_input(model_path) -> TensorSpec:
    """The one input of an ONNX model, whose first dimension must be a dynamic batch and the
    others fixed; ValueError says what does not fit."""
    import onnx

    path = Path(model_path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder, not an ONNX model")
    if not path.is_file():
        raise ValueError(f"no model at {path}")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as error:  # protobuf's DecodeError and others: not ONNX, or cut short
        raise ValueError(f"{path} is not an ONNX model, or is truncated ({error})") from error
    initializers = {init.name for init in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        names = [i.name for i in inputs]
        raise ValueError(f"{path} has {len(inputs)} inputs {names}; one is needed")
    (tensor,) = inputs
    dims = tensor.type.tensor_type.shape.dim
    if not dims or (dims[0].HasField("dim_value") and dims[0].dim_value > 0):
        first = dims[0].dim_value if dims else "none"
        raise ValueError(
            f"input {tensor.name} of {path} has a fixed first dimension ({first}); a dynamic "
            "batch dimension is needed there (export the model with a dynamic axis)"
        )
    if any(not d.HasField("dim_value") or d.dim_value <= 0 for d in dims[1:]):
        raise ValueError(
            f"input {tensor.name} of {path} has dynamic dimensions after the batch "
            f"({[d.dim_param or d.dim_value for d in dims]}); only the batch may be dynamic"
        )
    dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.type.tensor_type.elem_type)
    return TensorSpec(tensor.name, np.dtype(dtype), tuple(d.dim_value for d in dims[1:]))


def check_model_fits_profiles(model_path) -> None:
    """Raises ValueError unless the model's input is the one the profiles are written for."""
    found = read_model_input(model_path)
    if found != MODEL_INPUT:
        raise ValueError(
            f"{model_path} takes {found.describe()}, but the profiles are written for "
            f"{MODEL_INPUT.describe()}"
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


def sha256_of(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def gpu_name() -> str:
    """The name of CUDA device 0, e.g. 'NVIDIA H100 80GB HBM3'."""
    from cuda.bindings import runtime

    error, properties = runtime.cudaGetDeviceProperties(0)
    if error != runtime.cudaError_t.cudaSuccess:
        raise RuntimeError(f"cudaGetDeviceProperties failed: {error.name}")
    name = properties.name
    return (name.decode() if isinstance(name, bytes) else str(name)).rstrip("\x00")


def record_path(engine_path) -> Path:
    return Path(f"{engine_path}{RECORD_SUFFIX}")


def build_record(model_path, profiles=PROFILES) -> dict:
    """What an engine built now would be built from (model bytes, profiles), by (TensorRT
    version) and for (GPU model): an engine saved with the same record can be reused."""
    import tensorrt as trt

    return {
        "model_sha256": sha256_of(model_path),
        "profiles": {
            use_case: {
                name: {key: list(getattr(shapes, key)) for key in ("min", "opt", "max")}
                for name, shapes in profile.items()
            }
            for use_case, profile in profiles.items()
        },
        "tensorrt": trt.__version__,
        "gpu": gpu_name(),
    }


def reuse_verdict(engine_path, wanted: dict) -> str | None:
    """None if the engine saved at `engine_path` was built with the `wanted` record, else the
    reason to rebuild it, in words."""
    engine_path, record = Path(engine_path), record_path(engine_path)
    if not engine_path.is_file():
        return f"there is no {engine_path.name} yet"
    try:
        saved = json.loads(record.read_text())
    except FileNotFoundError:
        return f"{record.name}, which says what the engine was built from, is missing"
    except (OSError, ValueError):
        return f"{record.name}, which says what the engine was built from, is unreadable"
    checks = [
        ("engine_sha256", sha256_of(engine_path), "the engine file is not the one saved with it"),
        ("model_sha256", wanted["model_sha256"], "the model changed since the engine was built"),
        ("profiles", wanted["profiles"], "the profiles changed since the engine was built"),
        (
            "tensorrt",
            wanted["tensorrt"],
            f"it was built by TensorRT {saved.get('tensorrt')}, this is {wanted['tensorrt']}",
        ),
        ("gpu", wanted["gpu"], f"it was built for {saved.get('gpu')}, this is {wanted['gpu']}"),
    ]
    for key, expected, reason in checks:
        if saved.get(key) != expected:
            return reason
    return None


def save_engine(engine, path, record: dict) -> None:
    """Saves the engine and, beside it, its record. Each file is written atomically, the engine
    first: an interrupted save leaves the previous pair, or a record whose engine_sha256 no
    longer matches, so that the engine is rebuilt rather than trusted."""
    from polygraphy.backend.trt import bytes_from_engine

    data = bytes_from_engine(engine)
    write_atomically(path, data)
    built = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    record = {**record, "engine_sha256": hashlib.sha256(data).hexdigest(), "built": built}
    write_atomically(record_path(path), (json.dumps(record, indent=2) + "\n").encode())


def load_or_build_engine(model_path, engine_path, profiles=PROFILES, rebuild=False):
    """Reuses the engine at `engine_path` if it was built from the same model and profiles by
    this TensorRT for this GPU model; otherwise builds and saves one. Returns the engine and a
    line that says which happened, and why."""
    wanted = build_record(model_path, profiles)
    reason = "a rebuild was asked for" if rebuild else reuse_verdict(engine_path, wanted)
    if reason is None:
        try:
            engine = load_engine(engine_path)
        except EngineLoadError as error:
            reason = str(error)
        else:
            return engine, (
                f"Reusing {Path(engine_path).name}: same model and profiles, "
                f"TensorRT {wanted['tensorrt']}, {wanted['gpu']}"
            )
    engine = build_engine(model_path, profiles)
    save_engine(engine, engine_path, wanted)
    return engine, f"Built {Path(engine_path).name} because {reason}"


def load_engine(path=ENGINE_PATH):
    """Deserializes an engine that save_engine() wrote, or raises EngineLoadError."""
    import tensorrt as trt
    from polygraphy.backend.trt import engine_from_bytes
    from polygraphy.exception import PolygraphyException
    from polygraphy.logger import G_LOGGER

    data = Path(path).read_bytes()
    if not data:
        raise EngineLoadError(f"{path} is empty")
    try:
        # TensorRT logs its reasons as errors; the exception below says what they mean.
        with G_LOGGER.verbosity(G_LOGGER.CRITICAL):
            return engine_from_bytes(data)
    except PolygraphyException:
        raise EngineLoadError(
            f"TensorRT {trt.__version__} could not deserialize {path}: it is corrupt or "
            "truncated, or was built by another TensorRT version or for another GPU"
        ) from None


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


def deactivate_runner(runner) -> None:
    """Deactivates a TrtRunner and frees the device buffers its output allocator made.

    Polygraphy (0.49 to 0.53) drops those buffers at deactivation without freeing them: every
    activation that ran inference leaves its outputs' GPU memory behind (stress.py measures
    it). Long-lived code that activates runners often should deactivate them through here."""
    allocator = getattr(runner, "output_allocator", None)
    for buffer in getattr(allocator, "buffers", {}).values():
        buffer.free()
    runner.deactivate()


def print_error(script: str, error) -> None:
    """Prints an error for people on stderr: each of its lines after the script's name."""
    for line in str(error).splitlines():
        print(f"{script}: {line}", file=sys.stderr)


class Progress:
    """One status line on stderr, rewritten in place on a terminal."""

    def __init__(self):
        self.start = time.monotonic()
        self.tty = sys.stderr.isatty()

    def __call__(self, text):
        line = f"[{time.monotonic() - self.start:5.1f} s] {text}"
        if self.tty:
            print(f"\r\033[K{line}", end="", file=sys.stderr, flush=True)
        else:
            print(line, file=sys.stderr, flush=True)

    def done(self):
        if self.tty:
            print(file=sys.stderr)


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

"""An engine's life outside the walkthrough's few lines: built from an ONNX model with one
optimization profile per use case, saved with a record of what it was built from, by and for,
reused only while that record still holds, and served through execution contexts."""

import contextlib
import datetime
import hashlib
import json
import time
from pathlib import Path

from dynamic_shapes.files import check_writable, write_atomically
from dynamic_shapes.gpu import gpu_name

# Beside each saved engine, a record of what it was built from, by and for: see reuse_verdict().
RECORD_SUFFIX = ".json"


class EngineBuildError(RuntimeError):
    """TensorRT could not parse the model or build an engine from it."""


class EngineLoadError(RuntimeError):
    """A saved engine could not be deserialized."""


def share_profiles(builder, network, builder_config) -> None:
    """Lets several execution contexts use one optimization profile at once, so that requests
    for the same profile need not queue behind one context. TensorRT 10 does so by default (and
    11 removed the switch); TensorRT 8.6 only with this preview feature, set at build time."""
    import tensorrt as trt

    feature = getattr(trt.PreviewFeature, "PROFILE_SHARING_0806", None)
    if feature is not None and int(trt.__version__.split(".")[0]) < 10:
        builder_config.set_preview_feature(feature, True)


def build_engine(model_path, profiles: dict):
    """Builds a TensorRT engine for the ONNX model with one optimization profile per entry of
    `profiles` (use case -> Polygraphy Profile), in order, each shareable between contexts."""
    import tensorrt as trt
    from polygraphy.backend.trt import (
        CreateConfig,
        PostprocessConfig,
        engine_from_network,
        network_from_onnx_path,
    )
    from polygraphy.exception import PolygraphyException

    # Polygraphy logs TensorRT's own reasons (each parser or builder error) before it raises;
    # the errors below say which step failed and point to them.
    try:
        network = network_from_onnx_path(str(model_path))
    except PolygraphyException as error:
        raise EngineBuildError(
            f"TensorRT {trt.__version__} could not parse {model_path} ({error}); its ONNX "
            "parser's errors are above"
        ) from error
    try:
        config = PostprocessConfig(CreateConfig(profiles=list(profiles.values())), share_profiles)
        return engine_from_network(network, config=config)
    except PolygraphyException as error:
        raise EngineBuildError(
            f"TensorRT {trt.__version__} could not build an engine from {model_path} ({error}); "
            "its builder's errors are above"
        ) from error


def load_engine(path):
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


def sha256_of(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def record_path(engine_path) -> Path:
    return Path(f"{engine_path}{RECORD_SUFFIX}")


def build_record(model_path, profiles: dict) -> dict:
    """What an engine built now would be built from (model bytes, profiles), by (TensorRT
    version) and for (GPU model): an engine saved with the same record can be reused."""
    import tensorrt as trt

    return {
        "model_sha256": sha256_of(model_path),
        "profiles": profiles_record(profiles),
        "profile_sharing": True,  # see share_profiles()
        "tensorrt": trt.__version__,
        "gpu": gpu_name(),
    }


def profiles_record(profiles: dict) -> dict:
    """{use case: {input: {"min": [...], "opt": [...], "max": [...]}}}, in profile-index order,
    for Polygraphy Profiles: how a record holds them."""
    return {
        use_case: {
            name: {key: list(getattr(shapes, key)) for key in ("min", "opt", "max")}
            for name, shapes in profile.items()
        }
        for use_case, profile in profiles.items()
    }


def read_record(engine_path) -> dict:
    """The record saved beside an engine, checked to describe that very file; ValueError says
    what is wrong and how to get a good pair."""
    engine_path, record = Path(engine_path), record_path(engine_path)
    if not engine_path.is_file():
        raise ValueError(f"no engine at {engine_path}; build one with example.py")
    try:
        saved = json.loads(record.read_text())
    except (OSError, ValueError):
        saved = None
    if not isinstance(saved, dict) or "profiles" not in saved or "engine_sha256" not in saved:
        raise ValueError(
            f"{record} is missing or unreadable: it says what {engine_path.name} was built from; "
            "build the engine again with example.py"
        )
    if saved["engine_sha256"] != sha256_of(engine_path):
        raise ValueError(
            f"{engine_path.name} is not the engine {record.name} was saved with; build it again "
            "with example.py"
        )
    return saved


def reuse_verdict(engine_path, wanted: dict) -> str | None:
    """None if the engine saved at `engine_path` was built with the `wanted` record, else the
    reason to rebuild it, in words."""
    engine_path, record = Path(engine_path), record_path(engine_path)
    about = f"{record.name}, which says what the engine was built from,"
    if not engine_path.is_file():
        return f"there is no {engine_path.name} yet"
    try:
        saved = json.loads(record.read_text())
    except FileNotFoundError:
        return f"{about} is missing"
    except (OSError, ValueError):
        return f"{about} is unreadable"
    if not isinstance(saved, dict):
        return f"{about} is unreadable"
    saved.setdefault("profile_sharing", False)  # records written before it was recorded
    missing = [key for key in ("engine_sha256", *wanted) if key not in saved]
    if missing:
        return f"{about} is incomplete (no {', '.join(missing)})"
    checks = [
        ("engine_sha256", sha256_of(engine_path), "the engine file is not the one saved with it"),
        ("model_sha256", wanted["model_sha256"], "the model changed since the engine was built"),
        ("profiles", wanted["profiles"], "the profiles changed since the engine was built"),
        ("profile_sharing", True, "it was built without profile sharing"),
        (
            "tensorrt",
            wanted["tensorrt"],
            f"it was built by TensorRT {saved['tensorrt']}, this is {wanted['tensorrt']}",
        ),
        ("gpu", wanted["gpu"], f"it was built for {saved['gpu']}, this is {wanted['gpu']}"),
    ]
    for key, expected, reason in checks:
        if saved[key] != expected:
            return reason
    return None


def save_engine(engine, path, record: dict) -> None:
    """Saves the engine and, beside it, its record. Each file is written atomically, the record
    first: an interrupted save leaves the previous pair, or a record whose engine_sha256 does
    not match the file beside it (or that has no file beside it yet). Either way the record
    claims the path for the project, so the next run rebuilds the engine there, neither
    trusting it nor refusing the path as somebody else's file (see check_engine_destination)."""
    from polygraphy.backend.trt import bytes_from_engine

    data = bytes_from_engine(engine)
    built = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    record = {**record, "engine_sha256": hashlib.sha256(data).hexdigest(), "built": built}
    write_atomically(record_path(path), (json.dumps(record, indent=2) + "\n").encode())
    write_atomically(path, data)


def is_project_record(path) -> bool:
    """Whether `path` holds a record that save_engine() wrote: the mark of a path the project
    may write an engine to again."""
    try:
        saved = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(saved, dict) and {"engine_sha256", "model_sha256"} <= saved.keys()


def check_engine_destination(engine_path, model_path=None) -> Path:
    """Returns `engine_path` as a Path if an engine may be saved there, else raises ValueError
    naming the path: the project writes an engine only where there is nothing, or over an
    engine it saved before (its record beside it), never over the model or any other file."""
    engine_path = check_writable(engine_path)
    record = record_path(engine_path)
    if model_path is not None and Path(model_path).resolve() in (
        engine_path.resolve(),
        record.resolve(),
    ):
        raise ValueError(
            f"{engine_path} would overwrite the model {model_path}; name another engine path"
        )
    if record.exists() and not is_project_record(record):
        raise ValueError(
            f"{record} exists and is not an engine record this project wrote; refusing to "
            f"overwrite it: name another engine path than {engine_path}"
        )
    if engine_path.exists() and not record.exists():
        raise ValueError(
            f"{engine_path} exists and is not an engine this project saved (there is no "
            f"{record.name} beside it); refusing to overwrite it: name another engine path, "
            "or delete the file if it is an old engine"
        )
    return engine_path


def load_or_build_engine(model_path, engine_path, profiles: dict, rebuild=False, progress=None):
    """Reuses the engine at `engine_path` if it was built from the same model and profiles by
    this TensorRT for this GPU model; otherwise builds and saves one, saying so through
    `progress` (a cli.Progress) while it builds.
    Returns the engine and a line that says which happened, and why."""
    check_engine_destination(engine_path, model_path)
    wanted = build_record(model_path, profiles)
    name = Path(engine_path).name
    reason = "a rebuild was asked for" if rebuild else reuse_verdict(engine_path, wanted)
    if reason is None:
        try:
            engine = load_engine(engine_path)
        except EngineLoadError as error:
            reason = str(error)
        else:
            return engine, (
                f"Reusing {name}: same model and profiles, "
                f"TensorRT {wanted['tensorrt']}, {wanted['gpu']}"
            )
    start = time.monotonic()
    with progress.ticking(f"building {name}") if progress else contextlib.nullcontext():
        engine = build_engine(model_path, profiles)
    seconds = time.monotonic() - start
    # The build time is kept in the record (reuse_verdict ignores it), so that a planner that
    # reuses the engine can still report what it cost to build.
    save_engine(engine, engine_path, {**wanted, "build_seconds": round(seconds, 3)})
    return engine, f"Built {name} in {seconds:.1f} s because {reason}"


def batch_ranges(engine, input_name) -> tuple:
    """Each profile's (min, max) batch size, as the engine reports it, in profile-index order:
    for a served engine, the source of truth for what each profile accepts."""
    ranges = []
    for index in range(engine.num_optimization_profiles):
        low, _, high = engine.get_tensor_profile_shape(input_name, index)
        ranges.append((int(low[0]), int(high[0])))
    return tuple(ranges)


def context_memory_size(engine) -> int:
    """Bytes of GPU memory each execution context of the engine takes for its activations (the
    most any profile needs). TensorRT 10.1 renamed the attribute; 11 removed the old name."""
    size = getattr(engine, "device_memory_size_v2", None)
    return engine.device_memory_size if size is None else size


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

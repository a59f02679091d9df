"""Model repositories for Triton Inference Server, written for a saved engine: one for Triton's
Python backend, which serves the engine through the dispatcher (triton_model/model.py), and one for
Triton's TensorRT backend, which serves the engine itself.

For the Python backend, one model: the dispatcher splits any batch among the profiles, so the
dynamic batcher may gather any batch up to `max_batch_size` (1024 by default); its preferred
batch sizes are the profiles' opts and maxes, so that it gathers what the profiles run best.

For Triton's TensorRT backend, a model lists the profiles its instances may use
(`instance_group { profile: [...] }`), and the backend gives each instance one context per
listed profile. For each batch it picks, among the contexts whose range covers the batch, the
one whose opt is nearest; a batch no listed profile covers fails with INVALID_ARG ("failed to
find any Optimization Profile ..."), and one above `max_batch_size` is refused by Triton
before the backend sees it. Triton's dynamic batcher may form any batch size up to
`max_batch_size` out of requests that are each fine, so a batcher in front of profiles with a
gap between them (the scenario's 1..32 and 128) would fail good requests. Hence two models:

- NAME: the profiles that cover every batch from 1 up without a gap (low latency and dynamic
  batching: 1..32), `max_batch_size` the top of that run, and the dynamic batcher, its preferred
  batch sizes the opts and maxes of those profiles. Every batch a client may send is served.
- NAME_all_profiles, where some profile lies beyond that run: every profile, `max_batch_size`
  the largest max, no batcher (each request is its own batch). A batch some profile accepts is
  served; any other is refused by the backend with INVALID_ARG, naming the profiles.

CUDA graphs are on in both: for NAME, Triton's default graph batch sizes (1, the preferred
sizes and `max_batch_size`, all inside the profiles); for NAME_all_profiles, the sizes of the
static profiles, where a graph replays what every request of that profile runs.

Configs are built as Triton's own ModelConfig protobuf (tritonclient.grpc.model_config_pb2)
and written in its text format, config.pbtxt.
"""

import ast
import re
import shutil
from pathlib import Path

import numpy as np

from dynamic_shapes.files import check_writable_folder, write_atomically

# NumPy dtypes and the names of Triton's data types.
TRITON_TYPES = {
    np.dtype(np.bool_): "TYPE_BOOL",
    np.dtype(np.uint8): "TYPE_UINT8",
    np.dtype(np.int8): "TYPE_INT8",
    np.dtype(np.int32): "TYPE_INT32",
    np.dtype(np.int64): "TYPE_INT64",
    np.dtype(np.float16): "TYPE_FP16",
    np.dtype(np.float32): "TYPE_FP32",
}
DEFAULT_QUEUE_DELAY_US = 100
DEFAULT_MAX_BATCH_SIZE = 1024  # for the Python backend, which splits any batch
PACKAGE = Path(__file__).resolve().parent
ALL_PROFILES_SUFFIX = "_all_profiles"
# The widths of ModelConfig's fields: max_batch_size and preferred_batch_size are int32,
# max_queue_delay_microseconds uint64, an instance group's count int32.
INT32_MAX, UINT64_MAX = 2**31 - 1, 2**64 - 1
# A model's name is a folder of the repository and a part of every URL that names the model.
MODEL_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
MODEL_NAME_MAX = 100  # and room for ALL_PROFILES_SUFFIX in a file name
MODEL_NAME_RULE = (
    f"letters, digits, '_', '.' and '-', up to {MODEL_NAME_MAX}, the first a letter, digit or '_'"
)
# A repository the project wrote holds this file, so that it alone is ever replaced.
REPOSITORY_MARK = ".dynamic_shapes_repository"


def check_model_name(name: str) -> str:
    """Returns `name` if it can name a model in a repository and in URLs, else ValueError
    saying what a name may hold."""
    if not MODEL_NAME.fullmatch(name) or len(name) > MODEL_NAME_MAX:
        raise ValueError(f"{name!r} cannot name a model: use {MODEL_NAME_RULE}")
    return name


def model_name_for(name, engine_path) -> str:
    """The model's name: `name`, or where it is None the engine's stem, checked as
    check_model_name checks it."""
    try:
        return check_model_name(name or Path(engine_path).name.split(".")[0])
    except ValueError as error:
        raise ValueError(f"{error}{'' if name else ' (the engine name gives it)'}") from None


def check_batching(max_batch_size: int, preferred) -> None:
    """ValueError unless Triton accepts this max_batch_size and these preferred batch sizes:
    each within int32, and none above the max."""
    if not 1 <= max_batch_size <= INT32_MAX:
        raise ValueError(f"max batch size {max_batch_size} is not from 1 to {INT32_MAX}")
    above = [size for size in preferred if size > max_batch_size]
    if above or any(size < 1 for size in preferred):
        raise ValueError(
            f"preferred batch sizes {list(preferred)} must be from 1 to the max batch size "
            f"{max_batch_size}"
        )


def check_built_from(engine_path, record: dict, model_path) -> None:
    """ValueError unless the engine (its `record`, engines.read_record) was built from the
    model at `model_path`, whose tensors a repository declares."""
    from dynamic_shapes.engines import sha256_of

    if sha256_of(model_path) != record["model_sha256"]:
        raise ValueError(
            f"{Path(engine_path).name} was not built from {model_path}: pass the model it was "
            "built from with --model"
        )


def check_repository(folder) -> Path:
    """Returns `folder` as a Path if a repository may be written there: nothing there yet, an
    empty folder, or a repository this project wrote (its mark inside); else ValueError."""
    folder = Path(folder)
    if folder.is_dir() and any(folder.iterdir()) and not (folder / REPOSITORY_MARK).is_file():
        raise ValueError(
            f"{folder} holds files this project did not write; name a new or empty folder"
        )
    return folder


def repository_folder(path) -> Path:
    """A folder a repository may be written to (check_repository) and files written into."""
    return check_repository(check_writable_folder(path))


def replace_repository(folder, writer: str) -> Path:
    """Makes `folder` an empty repository, marked as this project's: what an earlier run
    wrote there is removed, and anything else refused (check_repository)."""
    folder = check_repository(folder)
    folder.mkdir(exist_ok=True)
    for entry in folder.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    text = (
        f"A Triton model repository written by {writer}. This project's scripts replace a folder "
        "that holds this file as a whole, and refuse any other that is not empty.\n"
    )
    write_atomically(folder / REPOSITORY_MARK, text.encode())
    return folder


def batch_ranges_of(record: dict) -> list:
    """Each profile's (min, opt, max) batch size, in profile-index order, from an engine's
    record (engines.read_record): the first dimension of its first input."""
    ranges = []
    for shapes in record["profiles"].values():
        first = next(iter(shapes.values()))
        ranges.append(tuple(first[key][0] for key in ("min", "opt", "max")))
    return ranges


def gapless_top(ranges) -> int:
    """The largest batch B such that every batch from 1 to B is accepted by some profile;
    0 if none accepts batch 1."""
    top = 0
    while any(low <= top + 1 <= high for low, _, high in ranges):
        top = max(high for low, _, high in ranges if low <= top + 1 <= high)
    return top


def tensor_config(message, spec) -> None:
    """Fills a ModelInput or ModelOutput for `spec` (the batch dimension is implicit)."""
    from tritonclient.grpc import model_config_pb2 as mc

    if spec.dtype not in TRITON_TYPES:
        raise ValueError(f"{spec.describe()}: Triton has no type for {spec.dtype}")
    message.name = spec.name
    message.data_type = mc.DataType.Value(TRITON_TYPES[spec.dtype])
    message.dims.extend(spec.item_shape)


def preferred_batch_sizes(ranges) -> list:
    """The batch sizes the profiles are tuned for or top out at, but 1: what a dynamic batcher
    should gather."""
    return sorted({size for _, opt, high in ranges for size in (opt, high)} - {1})


def python_config(
    name,
    ranges,
    inputs,
    outputs,
    engine_file,
    queue_delay_us=DEFAULT_QUEUE_DELAY_US,
    preferred=None,
    max_batch_size=DEFAULT_MAX_BATCH_SIZE,
    contexts_per_profile=1,
    instances=1,
):
    """The ModelConfig of the Python-backend model; `preferred` None takes the profiles' opts
    and maxes up to `max_batch_size`, an empty list turns the dynamic batcher off. Each of the
    `instances` on a GPU is a process of its own with a dispatcher of its own, which Triton
    hands batches to in turn."""
    from tritonclient.grpc import model_config_pb2 as mc

    config = mc.ModelConfig(name=name, backend="python", max_batch_size=max_batch_size)
    for spec in inputs:
        tensor_config(config.input.add(), spec)
    for spec in outputs:
        tensor_config(config.output.add(), spec)
    config.instance_group.add(count=instances, kind=mc.ModelInstanceGroup.KIND_GPU)
    if preferred is None:  # what the profiles run best, where the max batch size allows
        preferred = [size for size in preferred_batch_sizes(ranges) if size <= max_batch_size]
        config.dynamic_batching.SetInParent()
    check_batching(max_batch_size, preferred)
    if preferred:
        config.dynamic_batching.preferred_batch_size.extend(preferred)
    if config.HasField("dynamic_batching"):
        config.dynamic_batching.max_queue_delay_microseconds = queue_delay_us
    config.parameters["engine"].string_value = engine_file
    config.parameters["contexts_per_profile"].string_value = str(contexts_per_profile)
    return config


def package_files(entry) -> list:
    """The files of the dynamic_shapes package that the Python file `entry` imports, directly or
    through them, inside functions too, with the __init__.py of every package on the way: what
    a copy of the package beside `entry` needs, and nothing more."""
    root = PACKAGE.parent
    found, todo = set(), [Path(entry)]
    while todo:
        path = todo.pop()
        for node in ast.walk(ast.parse(path.read_bytes(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                # `from a.b import c` imports a.b, and a.b.c where c is a module.
                names = [f"{node.module}.{alias.name}" for alias in node.names]
            else:
                continue
            for parts in (name.split(".") for name in names):
                if parts[0] != PACKAGE.name:
                    continue
                for depth in range(1, len(parts) + 1):
                    module = root.joinpath(*parts[:depth])
                    for file in (module / "__init__.py", module.with_suffix(".py")):
                        if file.is_file() and file not in found:
                            found.add(file)
                            todo.append(file)
    return sorted(found)


def write_python_repository(folder, config, model_file, engine_path, comment: str) -> Path:
    """Writes the Python-backend model: config.pbtxt, and in version 1 `model_file` as model.py,
    the engine and its record, and the modules of the dynamic_shapes package it imports.
    Returns the model's folder."""
    from dynamic_shapes.engines import record_path

    model = Path(folder) / config.name
    version = model / "1"
    version.mkdir(parents=True, exist_ok=True)
    write_atomically(model / "config.pbtxt", config_text(config, comment).encode())
    write_atomically(version / "model.py", Path(model_file).read_bytes())
    for source in (Path(engine_path), record_path(engine_path)):
        write_atomically(version / source.name, source.read_bytes())
    package = version / PACKAGE.name
    if package.exists():
        shutil.rmtree(package)
    for source in package_files(model_file):
        copy = version / source.relative_to(PACKAGE.parent)
        copy.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(copy, source.read_bytes())
    return model


def tensorrt_configs(name, ranges, inputs, outputs, queue_delay_us=DEFAULT_QUEUE_DELAY_US):
    """{model name: ModelConfig} for Triton's TensorRT backend, as the module says."""
    from tritonclient.grpc import model_config_pb2 as mc

    top = gapless_top(ranges)
    if top == 0:
        raise ValueError(f"no profile accepts batch 1 (profiles {ranges}); nothing to batch")
    batched = [index for index, (low, _, high) in enumerate(ranges) if high <= top]

    def model(model_name, profiles, max_batch_size):
        config = mc.ModelConfig(name=model_name, platform="tensorrt_plan")
        config.max_batch_size = max_batch_size
        for spec in inputs:
            tensor_config(config.input.add(), spec)
        for spec in outputs:
            tensor_config(config.output.add(), spec)
        group = config.instance_group.add(count=1, kind=mc.ModelInstanceGroup.KIND_GPU)
        group.profile.extend(str(index) for index in profiles)
        config.optimization.cuda.graphs = True
        return config

    online = model(name, batched, top)
    preferred = preferred_batch_sizes([ranges[index] for index in batched])
    online.dynamic_batching.preferred_batch_size.extend(preferred)
    online.dynamic_batching.max_queue_delay_microseconds = queue_delay_us
    configs = {name: online}
    if len(batched) < len(ranges):
        everything = model(
            name + ALL_PROFILES_SUFFIX, range(len(ranges)), max(high for _, _, high in ranges)
        )
        for low, _, high in ranges:
            if low == high:
                everything.optimization.cuda.graph_spec.add(batch_size=low)
        configs[everything.name] = everything
    return configs


def config_text(config, comment: str) -> str:
    """A ModelConfig in config.pbtxt form, after `comment` (one or more lines)."""
    from google.protobuf import text_format

    header = "".join(f"# {line}\n" for line in comment.splitlines())
    return header + text_format.MessageToString(config)


def write_tensorrt_repository(folder, engine_bytes: bytes, configs: dict, comment: str) -> list:
    """Writes each model's config.pbtxt and version 1's model.plan under `folder`; returns the
    files written."""
    written = []
    for name, config in configs.items():
        model = Path(folder) / name
        (model / "1").mkdir(parents=True, exist_ok=True)
        write_atomically(model / "1" / "model.plan", engine_bytes)
        write_atomically(model / "config.pbtxt", config_text(config, comment).encode())
        written += [model / "config.pbtxt", model / "1" / "model.plan"]
    return written

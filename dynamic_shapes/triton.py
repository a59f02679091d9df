"""Model repositories for Triton Inference Server, written for a saved engine: one for Triton's
Python backend, which serves the engine through the dispatcher (triton_model/model.py), and one for
Triton's TensorRT backend, which serves the engine itself.

For the Python backend, one model: the dispatcher splits any batch among the profiles, so the
dynamic batcher may gather any batch up to `max_batch_size` (1024 by default); its preferred
batch sizes are the profiles' opts and maxes, so that it gathers what the profiles run best.
A dimension after the batch that is dynamic (a transformer's sequence length) is -1 in the
config. Triton's dynamic batcher gathers into one batch only requests whose shapes after the
batch are equal, unless an input sets `allow_ragged_batch`; the repository leaves it unset, so
requests of different sequence lengths run in batches of their own, never padded to each
other's length: padding them together would make every request pay for the longest one and
work only for models whose mask marks the padding. Where the dispatcher may pad a length no
profile holds, the config's `pad_with_mask` parameter names the mask input (docs/triton.md).

For Triton's TensorRT backend (Triton 2.51 with the backend's release r23.12, run on an H100,
is what these rules were checked against; its src/instance_state.cc and src/model_state.cc are
the reference), a model lists the profiles its instances may use (`instance_group { profile:
[...] }`), and the backend gives each instance one context per listed profile. For each batch it
picks, among the contexts whose range holds the batch, the one whose opt is nearest; where none
holds it, it logs an error, goes on with the FIRST listed profile, and fails the request there
(HTTP 500 / gRPC INTERNAL, "request specifies invalid shape for input 'X' ... model expected
the shape of dimension 0 to be between 1 and 1 but received 33"). A batch above
`max_batch_size` is refused by Triton before the backend sees it (HTTP 400 / gRPC
INVALID_ARGUMENT, "inference request batch-size must be <= 32 for 'dynamic_identity'").
Triton's dynamic batcher may form any batch size up to `max_batch_size` out of requests that are
each fine, so a batcher in front of profiles with a gap between them (the scenario's 1..32 and
128) would fail good requests. Hence two models:

- NAME: the profiles that cover every batch from 1 up without a gap (low latency and dynamic
  batching: 1..32), `max_batch_size` the top of that run, and the dynamic batcher, its preferred
  batch sizes the opts and maxes of those profiles. Every batch a client may send is served.
- NAME_all_profiles, where some profile lies beyond that run: every profile, one request a
  batch. A batch some profile accepts is served; any other is refused by the backend as above.
  It declares `max_batch_size: 0` and the batch dimension in its dims (-1) rather than a
  `max_batch_size` and no scheduler: the backend's config auto-complete, on by default in every
  tritonserver, adds a dynamic batcher to any model whose engine batches and whose config names
  no scheduler (served as `dynamic_batching { preferred_batch_size: [128] }`, queue delay 0),
  and that batcher would gather concurrent requests into the very batches (33 to 127) no
  profile takes. A model Triton does not batch cannot get one. Auto-complete then logs one
  warning for it ("... hints that batching is unavailable"), which is what is meant.

NAME without its batcher (for comparison) is written the same way (max_batch_size 0, one
request a batch), for the same reason: an absent batcher would be put back.

CUDA graphs. The backend captures every graph spec on every context of an instance (one per
listed profile) and logs an error for each spec a context's profile cannot take; without
`graph_spec` it tries 1, the preferred batch sizes and `max_batch_size`, which for NAME put
errors for 4 and 32 in the log (profile 0 takes only batch 1). A graph replays only the exact
batch it was captured at, on the context it was captured on. So each model lists its graphs
explicitly, and only batch sizes that every listed profile takes: the served config then says
which graphs exist, and the log has no error. Per model:

- NAME keeps the low-latency profile (it is what the scenario gives a lone request: kernels
  chosen for batch 1, and the backend picks it for every batch of 1, its opt being nearest) and
  so gets one graph, batch 1, the only size both profiles take. That is where a graph matters
  most: a lone request's time is mostly launch overhead, which a graph replay removes. Listing
  the batching profile alone would buy graphs at 4 and 32 as well, but those replay only for
  batches of exactly 4 or 32, and would cost the lone request its profile.
- NAME_all_profiles gets none: no batch size lies in all three of its profiles (1, 1..32, 128),
  and it serves one request a batch at whatever size the client sends.

Everything else Triton would complete, where it matters to how the model is served, is written
out (the backend, the plan's file name, the version policy, the instance group's kind and
count, pinned input and output memory), so that the config Triton serves
(GET /v2/models/NAME/config) equals the one written, but for what depends on the machine: the
GPUs an instance group is placed on (every visible GPU where none is named) and the group's
name (NAME_0).

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
# The file name of the engine in a TensorRT-backend model's version folder.
TENSORRT_PLAN = "model.plan"


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
    pad_with_mask=None,
):
    """The ModelConfig of the Python-backend model; `preferred` None takes the profiles' opts
    and maxes up to `max_batch_size`, an empty list turns the dynamic batcher off. Each of the
    `instances` on a GPU is a process of its own with a dispatcher of its own, which Triton
    hands batches to in turn. `inputs` and `outputs` hold -1 for their dynamic dimensions after
    the batch; `pad_with_mask` names the attention-mask input where the dispatcher may pad a
    request up to a profile that holds it (the module says what the batcher does)."""
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
    if pad_with_mask is not None:
        if pad_with_mask not in [spec.name for spec in inputs]:
            raise ValueError(f"pad_with_mask {pad_with_mask!r} is not an input of the model")
        config.parameters["pad_with_mask"].string_value = pad_with_mask
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


def common_batches(ranges, profiles) -> range:
    """The batch sizes every one of the listed `profiles` takes (empty where none)."""
    return range(
        max(ranges[index][0] for index in profiles), min(ranges[index][2] for index in profiles) + 1
    )


def graph_batch_sizes(ranges, profiles, max_batch_size, preferred) -> list:
    """The batch sizes to capture CUDA graphs at for a model listing `profiles`: of those the
    backend would pick itself (1, the preferred sizes, the max batch size), the ones every
    listed profile takes, as the module says."""
    wanted = {1, *preferred, max_batch_size}
    return sorted(size for size in wanted if size in common_batches(ranges, profiles))


def tensorrt_model(name, profiles, inputs, outputs, max_batch_size, instances=1):
    """A TensorRT-backend ModelConfig without scheduler or graphs: `max_batch_size` 0 puts
    the batch dimension (-1) into the dims, so that Triton batches nothing."""
    from tritonclient.grpc import model_config_pb2 as mc

    config = mc.ModelConfig(
        name=name,
        platform="tensorrt_plan",
        backend="tensorrt",
        default_model_filename=TENSORRT_PLAN,
        max_batch_size=max_batch_size,
    )
    for specs, field in ((inputs, config.input), (outputs, config.output)):
        for spec in specs:
            message = field.add()
            tensor_config(message, spec)
            if max_batch_size == 0:
                message.dims.insert(0, -1)
    config.version_policy.latest.num_versions = 1  # the repository holds version 1 alone
    group = config.instance_group.add(count=instances, kind=mc.ModelInstanceGroup.KIND_GPU)
    group.profile.extend(str(index) for index in profiles)
    # Triton's defaults, written out: requests are gathered in page-locked host memory, from
    # which the copies to and from the GPU run asynchronously.
    config.optimization.input_pinned_memory.enable = True
    config.optimization.output_pinned_memory.enable = True
    return config


def add_graphs(config, batch_sizes, inputs) -> None:
    """Turns CUDA graphs on in `config` at `batch_sizes`, each an explicit graph_spec; none
    leaves them off. A model Triton does not batch names each input's whole shape."""
    if not batch_sizes:
        return
    cuda = config.optimization.cuda
    cuda.graphs = True
    for size in batch_sizes:
        if config.max_batch_size:
            cuda.graph_spec.add(batch_size=size)
        else:
            spec = cuda.graph_spec.add(batch_size=0)
            for tensor in inputs:
                spec.input[tensor.name].dim.extend([size, *tensor.item_shape])


def tensorrt_configs(
    name,
    ranges,
    inputs,
    outputs,
    queue_delay_us=DEFAULT_QUEUE_DELAY_US,
    instances=1,
    dynamic_batching=True,
    cuda_graphs=True,
):
    """{model name: ModelConfig} for Triton's TensorRT backend, as the module says: NAME, and
    NAME_all_profiles where a profile lies beyond the run from batch 1. `instances` model
    instances of each on every GPU; `dynamic_batching` False serves NAME one request a batch;
    `cuda_graphs` False captures none."""
    top = gapless_top(ranges)
    if top == 0:
        raise ValueError(f"no profile accepts batch 1 (profiles {ranges}); nothing to batch")
    batched = [index for index, (low, _, high) in enumerate(ranges) if high <= top]
    preferred = preferred_batch_sizes([ranges[index] for index in batched])

    if dynamic_batching:
        online = tensorrt_model(name, batched, inputs, outputs, top, instances)
        online.dynamic_batching.preferred_batch_size.extend(preferred)
        online.dynamic_batching.max_queue_delay_microseconds = queue_delay_us
    else:
        online = tensorrt_model(name, batched, inputs, outputs, 0, instances)
    if cuda_graphs:
        add_graphs(online, graph_batch_sizes(ranges, batched, top, preferred), inputs)
    configs = {name: online}
    if len(batched) < len(ranges):
        everything = range(len(ranges))
        offline = tensorrt_model(
            name + ALL_PROFILES_SUFFIX, everything, inputs, outputs, 0, instances
        )
        if cuda_graphs:
            largest = max(high for _, _, high in ranges)
            sizes = graph_batch_sizes(ranges, everything, largest, preferred_batch_sizes(ranges))
            add_graphs(offline, sizes, inputs)
        configs[offline.name] = offline
    return configs


def check_server_tensorrt(engine_path, record: dict, server_tensorrt: str) -> None:
    """ValueError unless the engine (its `record`) was built by the TensorRT version the server
    runs, `server_tensorrt`, compared to the patch release ("8.6.1" is "8.6.1.6"): a plan loads
    only in the TensorRT version that built it."""
    built, served = record["tensorrt"], server_tensorrt

    def release(version):
        return version.split(".")[:3]

    if release(built) != release(served):
        raise ValueError(
            f"{Path(engine_path).name} was built by TensorRT {built}, the server runs TensorRT "
            f"{served}, and a plan loads only in the TensorRT version that built it: build the "
            "engine again inside NVIDIA's Triton container that serves it "
            "(nvcr.io/nvidia/tritonserver:<release>-py3), with `python3 example.py` or trtexec "
            "there, as docs/triton.md shows"
        )


def export_tensorrt_repository(folder, engine_path, model_path, name, writer, **options) -> list:
    """Writes the TensorRT-backend repository for the saved engine (built from the ONNX model at
    `model_path`) into `folder`, replacing what a script of this project wrote there (`writer`
    names the script); `options` go to tensorrt_configs. Returns the files written."""
    from dynamic_shapes.engines import read_record
    from dynamic_shapes.onnx_inputs import read_model_input, read_model_outputs

    record = read_record(engine_path)
    inputs, outputs = [read_model_input(model_path)], read_model_outputs(model_path)
    check_built_from(engine_path, record, model_path)
    configs = tensorrt_configs(name, batch_ranges_of(record), inputs, outputs, **options)
    replace_repository(folder, writer)
    comment = (
        f"Written by {writer} for {Path(engine_path).name}, built by TensorRT "
        f"{record['tensorrt']} for {record['gpu']}:\nTriton must run that TensorRT version."
    )
    return write_tensorrt_repository(folder, Path(engine_path).read_bytes(), configs, comment)


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
        write_atomically(model / "1" / TENSORRT_PLAN, engine_bytes)
        write_atomically(model / "config.pbtxt", config_text(config, comment).encode())
        written += [model / "config.pbtxt", model / "1" / TENSORRT_PLAN]
    return written

"""
Serves a batch of any size on the three-profile engine: each request goes to the profile that
fits it best, a batch no profile covers is split into chunks that do, and every profile runs
on an execution context of its own.

    with Dispatcher(load_engine("dynamic_identity.engine")) as dispatcher:
        outputs = dispatcher.infer(images)      # images: float32 [batch, 3, 28, 28], batch >= 1

The splitting rule: take the largest batch size that some profile accepts and that is no
larger than what remains of the request, and repeat until nothing remains. With the scenario's
profiles, 300 images run as 128 + 128 + 32 + 12. Each chunk then goes to the narrowest profile
that accepts its size: batch 1 to low latency, 2..32 to dynamic batching, 128 to offline.

Two execution paths sit behind the same interface:
- "runner": a Polygraphy TrtRunner per context, as in example.py; simple, and slow per call.
- "lean": per profile, device buffers at the profile's max shape, page-locked host staging
  buffers, tensor addresses bound once and the input shape set only when it changes, one
  stream; each chunk is a host-to-device copy, execute_async_v3, a device-to-host copy and one
  synchronize. Where a profile's shape is static (min == max), that sequence is captured once
  in a CUDA graph and replayed per request.

Thread safety: several threads may call infer() at once. Each context serves one thread at a
time, and different profiles run at the same time, each on its own stream.

TensorRT and CUDA are imported when a Dispatcher is created; planning and request checks work
without them.
"""

import functools
import logging
import threading
import weakref
from collections.abc import Mapping

import numpy as np

from dynamic_shapes.engines import batch_ranges, create_contexts, deactivate_runner
from dynamic_shapes.gpu import PinnedBuffer, check_cuda, cudart
from dynamic_shapes.tensors import TensorSpec
from scenario import MODEL_INPUT, PROFILES

log = logging.getLogger(__name__)

# The engines a Dispatcher serves now. TensorRT lets one live context hold each profile, and
# TensorRT 8.6 crashes, rather than failing, when a context asks for a profile another holds.
_engines_in_use = {}  # id(engine) -> engine, which keeps the id from being reused
_engines_lock = threading.Lock()

PATHS = ("lean", "runner")


def engine_io(engine) -> tuple[TensorSpec, str, np.dtype]:
    """The engine's one input, and its one output's name and dtype; ValueError if the engine
    has other inputs or outputs, or an input dimension other than the batch varies."""
    import tensorrt as trt

    names = [engine.get_tensor_name(index) for index in range(engine.num_io_tensors)]
    inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
    outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
    if len(inputs) != 1 or len(outputs) != 1:
        raise ValueError(
            f"the dispatcher serves engines with one input and one output; this one has "
            f"inputs {inputs} and outputs {outputs}"
        )
    (name,), (output,) = inputs, outputs
    shapes = [
        tuple(shape)
        for index in range(engine.num_optimization_profiles)
        for shape in engine.get_tensor_profile_shape(name, index)
    ]
    if len({shape[1:] for shape in shapes}) != 1:
        raise ValueError(
            f"input {name} has profile shapes {shapes}; the dispatcher needs the batch as the "
            "first dimension and the same fixed dimensions after it in every profile"
        )
    dtype = [np.dtype(trt.nptype(engine.get_tensor_dtype(n))) for n in (name, output)]
    return TensorSpec(name, dtype[0], shapes[0][1:]), output, dtype[1]


def output_spec(context, input_spec, output_name, output_dtype, batch) -> TensorSpec:
    """Sets the context's input shape for `batch` items and returns the output's spec, or
    ValueError unless the output has that batch as its first dimension too."""
    input_shape = (batch, *input_spec.item_shape)
    if not context.set_input_shape(input_spec.name, input_shape):
        raise RuntimeError(f"TensorRT refused input shape {input_shape}")
    shape = tuple(context.get_tensor_shape(output_name))
    if shape[0] != batch:
        raise ValueError(
            f"for input shape {input_shape}, output {output_name} has shape {shape}; the "
            "dispatcher needs outputs whose first dimension is the batch"
        )
    return TensorSpec(output_name, output_dtype, shape[1:])


def choose_profile(batch: int, ranges) -> int | None:
    """The index of the narrowest (min, max) range that accepts `batch`; None if none does.
    Ties go to the lower index."""
    fitting = [
        (high - low, index) for index, (low, high) in enumerate(ranges) if low <= batch <= high
    ]
    return min(fitting)[1] if fitting else None


@functools.lru_cache(maxsize=1024)
def plan_chunks(batch: int, ranges: tuple) -> tuple:
    """Splits a batch into (profile index, start, size) chunks by the splitting rule above.

    `ranges` holds each profile's (min, max) batch size, in profile-index order.
    """
    if batch < 1:
        raise ValueError(f"a request needs at least one image, got batch {batch}")
    chunks, start = [], 0
    while start < batch:
        remaining = batch - start
        size = max((min(high, remaining) for low, high in ranges if low <= remaining), default=0)
        if size == 0:
            accepted = ", ".join(f"{low}..{high}" for low, high in ranges)
            raise ValueError(
                f"batch {batch} cannot be split into chunks the profiles accept: {remaining} "
                f"images would remain, and the profiles accept batch sizes {accepted}"
            )
        chunks.append((choose_profile(size, ranges), start, size))
        start += size
    return tuple(chunks)


def check_request(request, spec: TensorSpec = MODEL_INPUT) -> np.ndarray:
    """Returns the batch of a request, an array or {input name: array}, or raises ValueError
    saying what was expected. Nothing is converted: a wrong dtype is refused, not cast."""
    if type(request) is not np.ndarray and isinstance(request, Mapping):
        unknown = sorted(set(request) - {spec.name})
        if unknown or spec.name not in request:
            raise ValueError(
                f"unknown input name(s) {unknown or sorted(request)}; "
                f"this model has one input, {spec.name!r}"
            )
        request = request[spec.name]
    if not isinstance(request, np.ndarray):
        raise ValueError(f"expected a NumPy array for {spec.name}, got {type(request).__name__}")
    if request.dtype != spec.dtype:
        raise ValueError(
            f"expected {spec.describe()}, got dtype {request.dtype}; "
            f"convert it first, e.g. images.astype(np.{spec.dtype})"
        )
    if request.ndim != 1 + len(spec.item_shape) or request.shape[1:] != spec.item_shape:
        raise ValueError(f"expected {spec.describe()}, got shape {request.shape}")
    if request.shape[0] < 1:
        raise ValueError(f"a request needs at least one image, got batch {request.shape[0]}")
    return request


def available_host_memory() -> int | None:
    """Bytes of host memory available to allocate now (Linux's MemAvailable), or None where
    the system does not say."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


# Outputs smaller than this are allocated without asking the system first: asking costs more
# than a small request takes.
CHECKED_OUTPUT_NBYTES = 256 * 2**20


def check_outputs_fit(batch: int, nbytes: int) -> None:
    """Refuses a request of `batch` items whose outputs, `nbytes` in all, would not fit in the
    host memory available now: a clear error beats an allocation the system kills us for."""
    if nbytes < CHECKED_OUTPUT_NBYTES:
        return
    available = available_host_memory()
    if available is not None and nbytes > available:
        raise MemoryError(
            f"the outputs of a batch of {batch} need {nbytes / 2**30:.1f} GiB of host "
            f"memory, and {available / 2**30:.1f} GiB is available; send it in smaller requests"
        )


class Dispatcher:
    """One execution context per profile of `engine`, serving requests of any batch size.

    The engine needs one input and one output, each with the batch as its first dimension.
    `use_cases` names its profiles, in index order (by default the scenario's, when the engine
    has as many profiles, else "profile 0", "profile 1", ...). `path` is "lean" or "runner";
    `cuda_graphs` applies to the lean path.
    """

    def __init__(self, engine, use_cases=None, path="lean", cuda_graphs=True):
        if path not in PATHS:
            raise ValueError(f"path must be one of {PATHS}, got {path!r}")
        count = engine.num_optimization_profiles
        if use_cases is None:
            use_cases = (
                PROFILES if count == len(PROFILES) else [f"profile {i}" for i in range(count)]
            )
        if len(use_cases) != count:
            raise ValueError(
                f"the engine has {count} profiles, but {len(use_cases)} use cases were named"
            )
        self.use_cases = list(use_cases)
        self.input, output_name, output_dtype = engine_io(engine)
        # The engine is the source of truth for what each profile accepts.
        self.ranges = batch_ranges(engine, self.input.name)
        with _engines_lock:
            if id(engine) in _engines_in_use:
                raise RuntimeError(
                    "another Dispatcher serves this engine: its contexts hold every profile, "
                    "and TensorRT lets one live context hold each; close it, or load the "
                    "engine again for a second one"
                )
            _engines_in_use[id(engine)] = engine
        self.engine = engine  # the contexts need it alive
        self._executors = []
        # Runs once: at close(), or when a dispatcher nobody closed is garbage-collected, so
        # that neither its GPU memory nor its claim on the engine outlives it.
        self._release = weakref.finalize(self, release, self._executors, engine)
        try:
            for index, context in enumerate(create_contexts(engine, count)):
                if path == "runner":
                    executor = RunnerExecutor(
                        context, index, self.ranges[index], self.input, output_name, output_dtype
                    )
                else:
                    executor = LeanExecutor(
                        context,
                        index,
                        self.ranges[index],
                        self.input,
                        output_name,
                        output_dtype,
                        cuda_graphs,
                    )
                self._executors.append(executor)
            outputs = {executor.output for executor in self._executors}
            if len(outputs) != 1:
                raise ValueError(f"the output's shape differs between profiles: {outputs}")
            (self.output,) = outputs
        except BaseException:
            self.close()
            raise

    def infer(self, request, out: np.ndarray | None = None) -> np.ndarray:
        """Runs the request and returns its outputs in an array the caller owns, or in `out`
        (an array of the output's dtype and shape for this batch) when given."""
        if not self._release.alive:
            raise RuntimeError("this Dispatcher is closed; create a new one to serve requests")
        batch = check_request(request, self.input)
        shape = (len(batch), *self.output.item_shape)
        if out is None:
            check_outputs_fit(len(batch), len(batch) * self.output.item_nbytes)
            out = np.empty(shape, self.output.dtype)
        elif out.shape != shape or out.dtype != self.output.dtype:
            raise ValueError(
                f"out must be {self.output.dtype} {shape} for this request, "
                f"got {out.dtype} {out.shape}"
            )
        chunks = plan_chunks(len(batch), self.ranges)
        if len(chunks) == 1:  # the common case, without slicing
            self._executors[chunks[0][0]].run(batch, out)
            return out
        for index, start, size in chunks:
            stop = start + size
            self._executors[index].run(batch[start:stop], out[start:stop])
        return out

    @property
    def graph_use_cases(self) -> list:
        """The use cases whose requests replay a CUDA graph."""
        return [
            use_case
            for use_case, executor in zip(self.use_cases, self._executors, strict=True)
            if getattr(executor, "uses_graph", False)
        ]

    def close(self) -> None:
        """Frees every context, buffer, stream and graph. Safe to call more than once."""
        self._release()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def release(executors: list, engine) -> None:
    """Closes a dispatcher's executors and lets another dispatcher serve its engine."""
    while executors:
        executors.pop().close()
    with _engines_lock:
        if _engines_in_use.get(id(engine)) is engine:
            del _engines_in_use[id(engine)]


class RunnerExecutor:
    """Runs chunks on one profile through a Polygraphy TrtRunner, activated for its lifetime."""

    def __init__(self, context, profile_index, batch_range, input_spec, output_name, output_dtype):
        from polygraphy.backend.trt import TrtRunner

        self.lock = threading.Lock()
        self._input, self._output = input_spec.name, output_name
        self._runner = TrtRunner(context, optimization_profile=profile_index)
        self._runner.activate()
        self.output = output_spec(context, input_spec, output_name, output_dtype, batch_range[1])

    def run(self, batch, out):
        with self.lock:
            outputs = self._runner.infer({self._input: np.ascontiguousarray(batch)})
            np.copyto(out, outputs[self._output])

    def close(self):
        with self.lock:
            if self._runner is not None and self._runner.is_active:
                deactivate_runner(self._runner)
            self._runner = None  # and with it, the context


class LeanExecutor:
    """Runs chunks on one profile with preallocated buffers, one stream and, where the
    profile's shape is static, a CUDA graph."""

    def __init__(
        self,
        context,
        profile_index,
        batch_range,
        input_spec,
        output_name,
        output_dtype,
        cuda_graphs,
    ):
        rt = cudart()
        self.lock = threading.Lock()
        self._context = context
        self._input = input_spec
        self._batch = None  # the batch of the input shape last set on the context
        self._graph = self._graph_exec = self._stream = None
        self._device, self._host = {}, {}
        low, high = batch_range
        try:
            self._stream = check_cuda(
                rt.cudaStreamCreateWithFlags(rt.cudaStreamNonBlocking), "cudaStreamCreate"
            )
            self._stream_handle = int(self._stream)
            if not context.set_optimization_profile_async(profile_index, self._stream_handle):
                raise RuntimeError(
                    f"could not select optimization profile {profile_index}: TensorRT lets only "
                    "one live execution context use a profile, and another one holds it"
                )
            self.output = output_spec(context, input_spec, output_name, output_dtype, high)
            self._batch = high
            for spec in (input_spec, self.output):
                # Page-locked staging on the host, and device memory for the profile's max
                # shape, bound to the context once.
                nbytes = high * spec.item_nbytes
                self._host[spec.name] = PinnedBuffer(nbytes)
                self._device[spec.name] = check_cuda(rt.cudaMalloc(nbytes), "cudaMalloc")
                if not context.set_tensor_address(spec.name, self._device[spec.name]):
                    raise RuntimeError(f"could not bind tensor {spec.name}")
            self._host_in, self._host_out = (
                self._host[spec.name].as_array(spec.dtype, (high, *spec.item_shape))
                for spec in (input_spec, self.output)
            )
            if cuda_graphs and low == high:
                self._capture_graph(high)
        except BaseException:
            self.close()
            raise

    def _enqueue(self, batch):
        """Queues the copies and the inference for `batch` items on the stream."""
        rt = cudart()
        if batch != self._batch:
            shape = (batch, *self._input.item_shape)
            if not self._context.set_input_shape(self._input.name, shape):
                raise RuntimeError(f"TensorRT refused input shape {shape}")
            self._batch = batch
        source, result = self._input.name, self.output.name
        check_cuda(
            rt.cudaMemcpyAsync(
                self._device[source],
                self._host[source].address,
                self._host_in[:batch].nbytes,
                rt.cudaMemcpyKind.cudaMemcpyHostToDevice,
                self._stream,
            ),
            "cudaMemcpyAsync",
        )
        if not self._context.execute_async_v3(self._stream_handle):
            raise RuntimeError("TensorRT's execute_async_v3 failed; see its log above")
        check_cuda(
            rt.cudaMemcpyAsync(
                self._host[result].address,
                self._device[result],
                self._host_out[:batch].nbytes,
                rt.cudaMemcpyKind.cudaMemcpyDeviceToHost,
                self._stream,
            ),
            "cudaMemcpyAsync",
        )

    def _capture_graph(self, batch):
        """Captures the whole round trip for the profile's one batch size in a CUDA graph."""
        rt = cudart()
        # One plain run first: TensorRT sets up shape-dependent state on its first enqueue,
        # and that work must not end up in the graph.
        self._enqueue(batch)
        check_cuda(rt.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")
        # Thread-local capture: other threads may use CUDA meanwhile without breaking it.
        mode = rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        try:
            check_cuda(rt.cudaStreamBeginCapture(self._stream, mode), "cudaStreamBeginCapture")
            try:
                self._enqueue(batch)
            finally:
                self._graph = check_cuda(
                    rt.cudaStreamEndCapture(self._stream), "cudaStreamEndCapture"
                )
            self._graph_exec = check_cuda(
                rt.cudaGraphInstantiate(self._graph, 0), "cudaGraphInstantiate"
            )
        except RuntimeError as error:
            rt.cudaGetLastError()  # clear the failed capture's error, so the stream runs on
            log.warning(
                "CUDA graph capture failed (%s); running batch %d without a graph", error, batch
            )
            self._destroy_graph()

    @property
    def uses_graph(self) -> bool:
        return self._graph_exec is not None

    def run(self, batch, out):
        rt = cudart()
        size = len(batch)
        with self.lock:
            # Staging through page-locked memory also makes any input layout (views, strides)
            # contiguous on the way.
            np.copyto(self._host_in[:size], batch)
            if self._graph_exec is not None:
                check_cuda(rt.cudaGraphLaunch(self._graph_exec, self._stream), "cudaGraphLaunch")
            else:
                self._enqueue(size)
            check_cuda(rt.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")
            np.copyto(out, self._host_out[:size])

    def _destroy_graph(self):
        rt = cudart()
        if self._graph_exec is not None:
            rt.cudaGraphExecDestroy(self._graph_exec)
        if self._graph is not None:
            rt.cudaGraphDestroy(self._graph)
        self._graph = self._graph_exec = None

    def close(self):
        """Frees the graph, buffers and stream, and lets go of the context."""
        rt = cudart()
        with self.lock:
            if self._stream is not None:
                rt.cudaStreamSynchronize(self._stream)
            self._destroy_graph()
            for address in self._device.values():
                rt.cudaFree(address)
            for buffer in self._host.values():
                buffer.free()
            if self._stream is not None:
                rt.cudaStreamDestroy(self._stream)
            self._stream, self._device, self._host = None, {}, {}
            self._host_in = self._host_out = self._context = None

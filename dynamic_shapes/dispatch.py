"""
Serves a batch of any size on an engine's optimization profiles: each request goes to the
profile that fits it best, a batch no profile covers is split into chunks that do, and every
profile runs on execution contexts of its own.

    with Dispatcher(load_engine("dynamic_identity.engine")) as dispatcher:
        outputs = dispatcher.infer(images)      # images: float32 [batch, 3, 28, 28], batch >= 1

The splitting rule: take the largest batch size that some profile accepts and that is no
larger than what remains of the request, and repeat until nothing remains. With the scenario's
profiles, 300 images run as 128 + 128 + 32 + 12. Each chunk then goes to the narrowest profile
that accepts its size: batch 1 to low latency, 2..32 to dynamic batching, 128 to offline.

Where a request's arrays live decides how it travels (dynamic_shapes.arrays):
- ordinary NumPy arrays (pageable memory) are copied through page-locked staging buffers. On
  a profile of one shape, a chunk is copied in once, served by one CUDA graph of its transfers
  and its inference, and copied out once. On a profile of a range, a large chunk goes in parts:
  each part's transfer to the GPU runs while the next part is staged, and on the way back each
  part is copied out while the next one arrives;
- page-locked NumPy arrays (from page_locked_inputs / page_locked_outputs) are copied straight
  to and from the GPU;
- GPU arrays (CuPy, PyTorch, anything with __cuda_array_interface__ or DLPack) are bound to
  TensorRT in place, as are GPU arrays passed as `out`: no copy at all.

Two execution paths sit behind the same interface:
- "runner": a Polygraphy TrtRunner per context, as in example.py; simple, slow per call, and
  for NumPy arrays only.
- "lean": per context, device buffers at the profile's max shape, page-locked staging buffers,
  tensor addresses bound once and set again only when a request's GPU arrays take their place,
  the input shapes set only when they change, one stream; each chunk is its copies,
  execute_async_v3 and one synchronize. Where a profile's shape is static (min == max), the
  inference is captured once in a CUDA graph and replayed.

A caller who serves request after request of one batch size from the same memory prepares the
request once (Dispatcher.prepare): its arrays are checked, its chunks planned and each chunk's
bindings and copies worked out then, so that each PreparedRequest.run() is TensorRT's own loop,
with CUDA graphs a single graph of each chunk's copies and inference. Its chunks run on
execution contexts of its own, one per (profile, chunk size), where the engine shares profiles
(see below): a graph replays the shape it was captured with, and such a context keeps its one
shape, where the dispatcher's contexts for a profile of a range change shape with the requests
they serve; nor does a prepared run wait for a context that infer() is using. They cost their
GPU memory for as long as the prepared request lives. Where the engine does not share
profiles, the chunks run on the dispatcher's contexts, with graphs for profiles of one shape.

Streams: every context has a stream of its own, and a request runs on the stream of the
context that serves it. These are blocking streams: CUDA runs their work after the work queued
before it on the legacy default stream, where CuPy and PyTorch queue theirs by default (and
before which a DLPack producer is asked to order its own). A GPU array that names any other
stream (`__cuda_array_interface__`'s "stream") is read once that stream's work queued so far is
done: the context's stream waits for an event recorded there. infer() and PreparedRequest.run()
return once the outputs are complete: they are ready for any stream and thread.

Thread safety: several threads may call infer() at once. Each context serves one request at a
time; a profile serves as many requests at once as it has contexts (contexts_per_profile).
More than one context per profile needs profile sharing: TensorRT 10 and later share profiles
by default; TensorRT 8.6 only in engines built with its PROFILE_SHARING_0806 preview feature,
as engines.build_engine builds them.

TensorRT and CUDA are imported when a Dispatcher is created; planning and request checks work
without them.
"""

import functools
import itertools
import logging
import queue
import threading
import weakref
from collections.abc import Mapping

import numpy as np

from dynamic_shapes.arrays import (
    LEGACY_DEFAULT_STREAM,
    ON_GPU,
    PAGE_LOCKED,
    PAGEABLE,
    Tensor,
    describe,
)
from dynamic_shapes.engines import batch_ranges, create_contexts, deactivate_runner
from dynamic_shapes.gpu import (
    capture_graph,
    check_cuda,
    cudart,
    destroy_graph,
    page_locked_address,
    page_locked_empty,
)
from dynamic_shapes.tensors import TensorSpec
from scenario import MODEL_INPUT, PROFILES

log = logging.getLogger(__name__)

# The engines a Dispatcher serves now. Its contexts hold every profile; a second dispatcher's
# contexts would ask for them again, which TensorRT 8.6 refuses without profile sharing.
_engines_in_use = {}  # id(engine) -> engine, which keeps the id from being reused
_engines_lock = threading.Lock()

PATHS = ("lean", "runner")
# Staging: a chunk of pageable memory is copied in up to MAX_PARTS parts of at least PART_NBYTES,
# so that the copies on the CPU and the transfers over the GPU's link overlap. Smaller parts
# would overlap more, and cost more calls than they save.
PART_NBYTES = 256 * 1024
MAX_PARTS = 4
PLANS_KEPT = 1024
# TensorRT reads and writes tensors at addresses aligned to 256 bytes; a GPU array that is not
# (a view that starts mid-allocation) is copied on the GPU instead of bound in place.
ALIGNMENT = 256


def engine_io(engine) -> tuple[list, list]:
    """The engine's inputs as TensorSpecs, and its outputs' (name, dtype), in the engine's
    order; ValueError unless every input has the batch as its first dimension, the same batch
    range in every profile as the other inputs, and fixed dimensions after it."""
    import tensorrt as trt

    names = [engine.get_tensor_name(index) for index in range(engine.num_io_tensors)]
    inputs, outputs = [], []
    ranges = {}
    for name in names:
        dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
        if engine.get_tensor_mode(name) != trt.TensorIOMode.INPUT:
            outputs.append((name, dtype))
            continue
        shapes = [
            tuple(shape)
            for index in range(engine.num_optimization_profiles)
            for shape in engine.get_tensor_profile_shape(name, index)
        ]
        if not shapes or len({shape[1:] for shape in shapes}) != 1:
            raise ValueError(
                f"input {name} has profile shapes {shapes}; the dispatcher needs the batch as "
                "the first dimension and the same fixed dimensions after it in every profile"
            )
        inputs.append(TensorSpec(name, dtype, shapes[0][1:]))
        ranges[name] = batch_ranges(engine, name)
    if not inputs or not outputs:
        raise ValueError(f"the engine has inputs {inputs} and outputs {outputs}; it needs both")
    if len(set(ranges.values())) != 1:
        raise ValueError(
            f"the inputs' batch ranges per profile differ ({ranges}); the dispatcher needs one "
            "batch size for all of a request's inputs"
        )
    return inputs, outputs


def output_specs(context, inputs, outputs, batch) -> list:
    """Sets the context's input shapes for `batch` items and returns the outputs' specs;
    ValueError unless every output has that batch as its first dimension too."""
    for spec in inputs:
        shape = (batch, *spec.item_shape)
        if not context.set_input_shape(spec.name, shape):
            raise RuntimeError(f"TensorRT refused input shape {shape} for {spec.name}")
    specs = []
    for name, dtype in outputs:
        shape = tuple(context.get_tensor_shape(name))
        if not shape or shape[0] != batch:
            raise ValueError(
                f"for a batch of {batch}, output {name} has shape {shape}; the dispatcher needs "
                "outputs whose first dimension is the batch"
            )
        specs.append(TensorSpec(name, dtype, shape[1:]))
    return specs


def starts_on_profile_0(context) -> bool:
    """Whether a new execution context started on profile 0, as it does unless another context
    holds that profile and the engine does not share profiles (TensorRT 8.6 without its
    PROFILE_SHARING_0806 preview feature); then it starts on none (-1). TensorRT 8.6 crashes
    when a context asks for a profile another one holds, so the dispatcher finds out here."""
    return context.active_optimization_profile == 0


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


def check_tensor(value, spec: TensorSpec, what: str, writable=False) -> Tensor:
    """The Tensor for one array of a request or its `out`, or ValueError saying what was
    expected. Nothing is converted: a wrong dtype is refused, not cast."""
    if type(value) is np.ndarray and (not writable or value.flags.writeable):
        shape = value.shape  # the common case, a fitting NumPy array, checked at once
        if value.dtype == spec.dtype and shape[1:] == spec.item_shape and shape and shape[0]:
            return Tensor(shape, value.dtype, host=value)
    tensor = describe(value, what, writable)
    if tensor.dtype != spec.dtype:
        raise ValueError(
            f"expected {spec.describe()}, got dtype {tensor.dtype}; "
            f"convert it first, e.g. with .astype(np.{spec.dtype})"
        )
    if len(tensor.shape) != 1 + len(spec.item_shape) or tensor.shape[1:] != spec.item_shape:
        raise ValueError(f"expected {spec.describe()}, got shape {tensor.shape}")
    if tensor.shape[0] < 1:
        raise ValueError(f"a request needs at least one image, got batch {tensor.shape[0]}")
    return tensor


def by_name(value, specs, what: str) -> list:
    """The values of an array (one tensor) or {name: array} (any number), in `specs` order;
    ValueError naming the expected names otherwise."""
    if type(value) is dict and len(value) == len(specs):  # the common case, looked up at once
        try:
            return [value[spec.name] for spec in specs]
        except KeyError:
            pass  # and said below
    names = [spec.name for spec in specs]
    if type(value) is not np.ndarray and isinstance(value, Mapping):
        if len(value) != len(names) or not all(name in value for name in names):
            unknown = sorted(set(value) - set(names))
            missing = [name for name in names if name not in value]
            problem = f"unknown {what} name(s) {unknown}" if unknown else f"no {what} {missing}"
            raise ValueError(f"{problem}; this model has {what}s {names}")
        return [value[name] for name in names]
    if len(specs) > 1:
        raise ValueError(f"this model has {len(specs)} {what}s {names}; pass {{name: array}}")
    return [value]


def check_request(request, specs=(MODEL_INPUT,)) -> list:
    """A request's Tensors in `specs` order, checked: names, dtypes, shapes, and one batch size
    for all of them. ValueError says what was expected."""
    if type(request) is np.ndarray and len(specs) == 1:  # one array for the one input
        return [check_tensor(request, specs[0], specs[0].name)]
    values = by_name(request, specs, "input")
    tensors = [check_tensor(v, s, s.name) for v, s in zip(values, specs, strict=True)]
    if len(tensors) > 1 and len({tensor.shape[0] for tensor in tensors}) > 1:
        found = {spec.name: t.shape[0] for spec, t in zip(specs, tensors, strict=True)}
        raise ValueError(f"the inputs' batch sizes differ: {found}; they must be equal")
    return tensors


def must_wait(stream) -> bool:
    """Whether a context's stream must wait explicitly for the work a GPU array's producer
    queued on `stream` before reading the array: not for None (ready now), nor for the legacy
    default stream, after whose work CUDA runs the contexts' (blocking) streams by itself."""
    return stream is not None and stream != LEGACY_DEFAULT_STREAM


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


def locate(tensor: Tensor) -> None:
    """Sets a host tensor's kind: page-locked (gpu.page_locked_empty's) and contiguous, copied
    straight to and from the GPU, or else pageable, staged."""
    if tensor.kind is None:
        host = tensor.host
        address = page_locked_address(host) if host.flags.c_contiguous else None
        tensor.kind, tensor.address = (
            (PAGEABLE, None) if address is None else (PAGE_LOCKED, address)
        )


class Dispatcher:
    """Execution contexts for every profile of `engine`, serving requests of any batch size.

    Every input and output of the engine needs the batch as its first dimension. `use_cases`
    names its profiles, in index order (by default the scenario's, when the engine has as many
    profiles, else "profile 0", "profile 1", ...). `path` is "lean" or "runner"; `cuda_graphs`
    applies to the lean path. `contexts_per_profile` > 1 needs profile sharing (see above).
    """

    def __init__(
        self,
        engine,
        use_cases=None,
        path="lean",
        cuda_graphs=True,
        contexts_per_profile=1,
    ):
        if path not in PATHS:
            raise ValueError(f"path must be one of {PATHS}, got {path!r}")
        if not isinstance(contexts_per_profile, int) or contexts_per_profile < 1:
            raise ValueError(f"contexts_per_profile must be 1 or more, got {contexts_per_profile}")
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
        self.path = path
        self.closed = False  # a flag: every request reads it, and that must cost little
        self._cuda_graphs = cuda_graphs and path == "lean"
        # Whether the engine lets a prepared request have contexts of its own: None until known.
        self._profiles_shared = None
        self._own_lock = threading.Lock()
        self._plans = {}  # batch -> its chunks: a dict lookup is cheaper than plan_chunks' cache
        self.inputs, outputs = engine_io(engine)
        self._engine_outputs = outputs
        # The engine is the source of truth for what each profile accepts.
        self.ranges = batch_ranges(engine, self.inputs[0].name)
        with _engines_lock:
            if id(engine) in _engines_in_use:
                raise RuntimeError(
                    "another Dispatcher serves this engine: its contexts hold every profile; "
                    "close it, or load the engine again for a second one"
                )
            _engines_in_use[id(engine)] = engine
        self.engine = engine  # the contexts need it alive
        self._executors, self._pools = [], []
        self._by_profile = []  # each profile's executors
        # Runs once: at close(), or when a dispatcher nobody closed is garbage-collected, so
        # that neither its GPU memory nor its claim on the engine outlives it.
        self._release = weakref.finalize(self, release, self._executors, self._pools, engine)
        try:
            contexts = create_contexts(engine, count * contexts_per_profile)
            # The first context claimed profile 0 when it was created, before the second was.
            problem = None
            if not starts_on_profile_0(contexts[0]):
                problem = RuntimeError(
                    "another execution context of this engine holds its profiles, and the "
                    "engine does not share profiles: free that context first, or (on TensorRT "
                    "8.6) build the engine with the PROFILE_SHARING_0806 preview feature"
                )
            elif contexts_per_profile > 1 and not starts_on_profile_0(contexts[1]):
                problem = ValueError(
                    f"contexts_per_profile={contexts_per_profile} needs an engine that shares "
                    "profiles; on TensorRT 8.6, build it with the PROFILE_SHARING_0806 preview "
                    "feature (engines.build_engine does)"
                )
            if problem is not None:
                contexts.clear()  # so that the error's traceback does not keep them alive
                raise problem
            for index in range(count):
                pool = queue.SimpleQueue()  # the profile's free executors
                for context in contexts[index::count]:
                    if path == "runner":
                        executor = RunnerExecutor(
                            context, index, self.ranges[index], self.inputs, outputs
                        )
                    else:
                        executor = LeanExecutor(
                            context, index, self.ranges[index], self.inputs, outputs,
                            cuda_graphs,
                        )  # fmt: skip
                    self._executors.append(executor)
                    pool.put(executor)
                self._pools.append((pool, contexts_per_profile))
                self._by_profile.append(self._executors[-contexts_per_profile:])
            specs = {tuple(executor.outputs) for executor in self._executors}
            if len(specs) != 1:
                raise ValueError(f"the outputs' shapes differ between profiles: {specs}")
            self.outputs = list(specs.pop())
        except BaseException:
            self.close()
            raise

    def infer(self, request, out=None):
        """Runs the request: an array, or {input name: array} (required for several inputs),
        NumPy or GPU arrays. Returns the outputs in arrays the caller owns (NumPy), or in `out`:
        arrays of the output's dtype and shape for this batch, NumPy or GPU, as one array or
        {output name: array}. A model with one output gives an array, with several a dict."""
        if self.closed:
            raise RuntimeError("this Dispatcher is closed; create a new one to serve requests")
        sources = check_request(request, self.inputs)
        batch = sources[0].shape[0]
        targets, result = self._targets(out, batch)
        if self.path == "runner" and any(t.kind == ON_GPU for t in (*sources, *targets)):
            raise ValueError("the runner path serves NumPy arrays; use path='lean' for GPU arrays")
        if self.path == "lean":
            for tensor in (*sources, *targets):
                locate(tensor)
        for index, start, size in self._plan(batch):
            pool = self._pools[index][0]
            executor = take(pool, CLOSED_WHILE_WAITING)
            try:
                executor.run(sources, targets, start, size)
            finally:
                pool.put(executor)
        return result

    def _plan(self, batch) -> tuple:
        """The request's chunks (plan_chunks), kept for the batch sizes that come back."""
        plan = self._plans.get(batch)
        if plan is None:
            plan = plan_chunks(batch, self.ranges)
            if len(self._plans) < PLANS_KEPT:
                self._plans[batch] = plan
        return plan

    def _targets(self, out, batch) -> tuple:
        """The Tensors the outputs go to, and what infer() returns."""
        if out is None:
            check_outputs_fit(batch, batch * sum(spec.item_nbytes for spec in self.outputs))
            arrays = [np.empty((batch, *spec.item_shape), spec.dtype) for spec in self.outputs]
            result = (
                arrays[0] if len(arrays) == 1 else dict(zip(self.output_names, arrays, strict=True))
            )
            targets = [Tensor(a.shape, a.dtype, host=a, kind=PAGEABLE) for a in arrays]
            return targets, result
        targets = []
        for value, spec in zip(by_name(out, self.outputs, "output"), self.outputs, strict=True):
            target = check_tensor(value, spec, f"out {spec.name}", writable=True)
            if target.shape[0] != batch:
                raise ValueError(
                    f"out must be {spec.dtype} {(batch, *spec.item_shape)} for this request, "
                    f"got {target.dtype} {target.shape}"
                )
            targets.append(target)
        return targets, out

    @property
    def output_names(self) -> list:
        """The outputs' names, in the order of `outputs`."""
        return [spec.name for spec in self.outputs]

    def page_locked_inputs(self, batch: int) -> dict:
        """{input name: array} in page-locked memory for a request of `batch` items: fill them
        and pass them to infer(), which copies them straight to the GPU. Keep them for the next
        request: page-locked memory is slow to allocate and scarce."""
        return {s.name: page_locked_empty((batch, *s.item_shape), s.dtype) for s in self.inputs}

    def page_locked_outputs(self, batch: int) -> dict:
        """{output name: array} in page-locked memory, for infer()'s `out`."""
        return {s.name: page_locked_empty((batch, *s.item_shape), s.dtype) for s in self.outputs}

    def prepare(self, batch: int, inputs=None, out=None) -> "PreparedRequest":
        """A request of `batch` items whose arrays stay where they are, for a caller who serves
        request after request from the same memory: `inputs` and `out` as for infer(),
        page-locked or GPU arrays, by default new page-locked ones (`.inputs`, `.outputs`).
        Everything infer() works out per request is worked out here once, so that
        PreparedRequest.run() is TensorRT's own loop: the copies, the inference, one
        synchronize; with CUDA graphs, one graph of a chunk's copies and inference. Its chunks
        run on execution contexts of the request's own (see the module's docstring)."""
        if self.closed:
            raise RuntimeError("this Dispatcher is closed; create a new one to serve requests")
        if type(batch) is not int or batch < 1:
            raise ValueError(f"a request needs at least one image, got batch {batch!r}")
        if self.path != "lean":
            raise ValueError("prepared requests run on the lean path; use path='lean'")
        inputs = self.page_locked_inputs(batch) if inputs is None else inputs
        out = self.page_locked_outputs(batch) if out is None else out
        sources = check_request(inputs, self.inputs)
        if sources[0].shape[0] != batch:
            raise ValueError(f"the inputs hold batch {sources[0].shape[0]}, not {batch}")
        targets, _ = self._targets(out, batch)
        for tensor in (*sources, *targets):
            locate(tensor)
            if tensor.kind == PAGEABLE:
                raise ValueError(
                    "a prepared request needs page-locked arrays (page_locked_inputs, "
                    "page_locked_outputs) or GPU arrays; pass ordinary arrays to infer()"
                )
        chunks = []  # (the pool its executor is taken from, or None: its own; executor, Step)
        owned = {}  # (profile index, chunk size) -> the request's own executor
        try:
            for index, start, size in self._plan(batch):
                executor = owned.get((index, size)) or self._own_executor(index, size)
                if executor is not None:
                    owned[(index, size)] = executor
                    chunks.append((None, executor, executor.step(sources, targets, start, size)))
                    continue
                # The engine does not share profiles: the profile's one context serves the chunk.
                pool = self._pools[index][0]
                executor = take(pool, CLOSED_WHILE_WAITING)
                try:
                    chunks.append((pool, executor, executor.step(sources, targets, start, size)))
                finally:
                    pool.put(executor)
        except BaseException:
            release_prepared([step for *_, step in chunks], list(owned.values()))
            raise
        return PreparedRequest(self, inputs, out, sources, targets, chunks, list(owned.values()))

    def _own_executor(self, index, size):
        """An executor on a context of its own for a prepared chunk of `size` items on profile
        `index`, its shape set once; None where the engine does not share profiles."""
        with self._own_lock:  # one context at a time: TensorRT's log is silenced meanwhile
            if self._profiles_shared is False:
                return None
            (context,) = create_contexts(self.engine, 1)
            # Created while the dispatcher's first context holds profile 0.
            self._profiles_shared = starts_on_profile_0(context)
        if not self._profiles_shared:
            log.info(
                "this engine does not share profiles: prepared requests run on the dispatcher's "
                "contexts, and replay CUDA graphs only for the profiles of one shape"
            )
            return None
        return LeanExecutor(
            context, index, (size, size), self.inputs, self._engine_outputs, self._cuda_graphs,
            staging=False,
        )  # fmt: skip

    @property
    def graph_use_cases(self) -> list:
        """The use cases whose requests replay a CUDA graph."""
        return [
            use_case
            for use_case, executors in zip(self.use_cases, self._by_profile, strict=True)
            if any(getattr(executor, "uses_graph", False) for executor in executors)
        ]

    def close(self) -> None:
        """Waits for the requests in flight, then frees every context, buffer, stream and
        graph; prepared requests free the contexts of their own when they are closed or
        collected. Safe to call more than once."""
        self.closed = True
        self._release()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


DISPATCHER_CLOSED = "its Dispatcher is closed; prepare the request again"
CLOSED_WHILE_WAITING = "this Dispatcher was closed while the request waited"


def take(pool, closed_message: str):
    """An executor from a profile's pool, once one is free; RuntimeError(closed_message) where
    the dispatcher was closed, which leaves None in its pools."""
    executor = pool.get()
    if executor is None:
        pool.put(None)  # for the next request that waits
        raise RuntimeError(closed_message)
    return executor


class PreparedRequest:
    """A request whose arrays, chunks and copies Dispatcher.prepare() worked out once. Fill
    `inputs` and call run() as often as needed; the outputs land in `outputs`. Several threads
    may run different prepared requests at once; one prepared request runs one at a time.
    Where its inputs are GPU arrays, each run first waits for the work queued so far on the
    stream they named when the request was prepared (see Streams above). `uses_graphs` says
    whether every chunk replays a CUDA graph."""

    def __init__(self, dispatcher, inputs, outputs, sources, targets, chunks, owned):
        self.inputs, self.outputs = inputs, outputs  # keep the arrays, and their memory, alive
        self.uses_graphs = all(step.graph_exec is not None for *_, step in chunks)
        self._dispatcher = dispatcher  # whose engine, and closed flag, the request goes by
        self._sources, self._targets = sources, targets  # keep GPU arrays' owners alive
        self._chunks = chunks  # (a pool to take the executor from, or None, executor, Step)
        self._lock = threading.Lock()
        self._closed = False  # a flag: run() reads it on every call, and that must cost little
        # The executors of the request's own are freed with it; the engine they belong to
        # lives until then.
        self._release = weakref.finalize(
            self, release_prepared, [step for *_, step in chunks], owned, dispatcher.engine
        )

    def run(self):
        """Serves the request from `inputs` into `outputs`; returns `outputs` once complete."""
        with self._lock:
            if self._closed:
                raise RuntimeError("this prepared request is closed; prepare the request again")
            if self._dispatcher.closed:
                raise RuntimeError(DISPATCHER_CLOSED)
            for pool, executor, step in self._chunks:
                if pool is None:  # the request's own
                    executor.run_step(step)
                    continue
                take(pool, DISPATCHER_CLOSED)  # the profile's one context: this executor
                try:
                    executor.run_step(step)
                finally:
                    pool.put(executor)
        return self.outputs

    def close(self):
        """Frees the CUDA graphs the request captured and the contexts of its own, once a run
        in progress is done (garbage collection frees them too). Safe to call more than once."""
        with self._lock:
            self._closed = True
            self._release()


def release_prepared(steps: list, owned: list, _engine=None) -> None:
    """Frees a prepared request's graphs, then the executors of its own (`_engine` is only
    kept alive until they are freed)."""
    while steps:
        steps.pop().close()
    while owned:
        owned.pop().close()


def release(executors: list, pools: list, engine) -> None:
    """Closes a dispatcher's executors once no request uses them, and lets another dispatcher
    serve its engine."""
    for pool, count in pools:
        for _ in range(count):
            pool.get()  # each executor, once its request is done
        pool.put(None)  # tells requests that wait now that the dispatcher is closed
    while executors:
        executors.pop().close()
    with _engines_lock:
        if _engines_in_use.get(id(engine)) is engine:
            del _engines_in_use[id(engine)]


class Step:
    """A chunk's work on one context, worked out once: the streams of the GPU inputs' producers
    to wait for, the tensor addresses to bind, the copies in and out, and, where the context's
    shape is static, a CUDA graph of the copies and the inference. Each chunk of a prepared
    request is a Step, and so is a staged chunk on a profile of one shape."""

    def __init__(self, size, waits):
        self.size, self.waits = size, waits
        self.bindings, self.copies_in, self.copies_out = [], [], []
        self.graph = self.graph_exec = None

    def close(self):
        destroy_graph(self.graph, self.graph_exec)
        self.graph = self.graph_exec = None


class RunnerExecutor:
    """Runs chunks on one context through a Polygraphy TrtRunner, activated for its lifetime."""

    def __init__(self, context, profile_index, batch_range, inputs, outputs):
        from polygraphy.backend.trt import TrtRunner

        self._runner = TrtRunner(context, optimization_profile=profile_index)
        self._runner.activate()
        self.outputs = output_specs(context, inputs, outputs, batch_range[1])
        self._inputs = [spec.name for spec in inputs]

    def run(self, sources, targets, start, size):
        stop = start + size
        feed = {
            name: np.ascontiguousarray(source.host[start:stop])
            for name, source in zip(self._inputs, sources, strict=True)
        }
        results = self._runner.infer(feed)
        for spec, target in zip(self.outputs, targets, strict=True):
            np.copyto(target.host[start:stop], results[spec.name])

    def close(self):
        if self._runner is not None and self._runner.is_active:
            deactivate_runner(self._runner)
        self._runner = None  # and with it, the context


class LeanExecutor:
    """Runs chunks on one context with preallocated buffers, one stream and, where the
    profile's shape is static, CUDA graphs. With `staging`, it serves pageable memory too,
    through page-locked staging buffers; a prepared request's own executors need none."""

    def __init__(
        self, context, profile_index, batch_range, inputs, outputs, cuda_graphs, staging=True
    ):
        rt = cudart()
        self._context, self._inputs = context, inputs
        self._batch = None  # the batch of the input shapes last set on the context
        self._graph = self._graph_exec = self._stream = self._capture_stream = None
        self._staged = None  # the Step of a staged chunk, for a profile of one shape
        self._device, self._staging, self._bound = {}, {}, {}  # staging: name -> Tensor
        self._foreign = set()  # tensors bound to a caller's GPU memory, not the context's own
        self._events, self._part_events = [], []
        low, high = batch_range
        try:
            # A blocking stream: CUDA orders its work after the legacy default stream's, where
            # CuPy and PyTorch queue their work by default, so reading their arrays costs no
            # explicit wait.
            self._stream = check_cuda(rt.cudaStreamCreate(), "cudaStreamCreate")
            self._stream_handle = int(self._stream)
            if not context.set_optimization_profile_async(profile_index, self._stream_handle):
                raise RuntimeError(
                    f"TensorRT refused optimization profile {profile_index} for an execution "
                    "context; see its log above"
                )
            self.outputs = output_specs(context, inputs, outputs, high)
            self._batch = high
            for spec in (*inputs, *self.outputs):
                # Device memory for the profile's max shape, bound to the context, and
                # page-locked staging memory on the host.
                nbytes = high * spec.item_nbytes
                self._device[spec.name] = check_cuda(rt.cudaMalloc(nbytes), "cudaMalloc")
                self._bind(spec.name, self._device[spec.name])
                if staging:
                    buffer = page_locked_empty((high, *spec.item_shape), spec.dtype)
                    self._staging[spec.name] = Tensor(
                        buffer.shape, buffer.dtype, host=buffer, address=buffer.ctypes.data,
                        kind=PAGE_LOCKED,
                    )  # fmt: skip
            self._wait_event = self._new_event()
            if cuda_graphs and low == high:
                # Graphs are captured on a non-blocking stream: while a blocking stream is
                # captured, CUDA refuses every use of the legacy default stream, in any thread.
                self._capture_stream = check_cuda(
                    rt.cudaStreamCreateWithFlags(rt.cudaStreamNonBlocking), "cudaStreamCreate"
                )
                self._capture_graphs()
        except BaseException:
            self.close()
            raise

    def _new_event(self):
        rt = cudart()
        event = check_cuda(
            rt.cudaEventCreateWithFlags(rt.cudaEventDisableTiming), "cudaEventCreate"
        )
        self._events.append(event)
        return event

    def _bind(self, name, address):
        """Points the context's tensor at `address`, unless it points there already."""
        if self._bound.get(name) != address:
            if not self._context.set_tensor_address(name, address):
                raise RuntimeError(f"could not bind tensor {name}")
            self._bound[name] = address
            if address == self._device[name]:
                self._foreign.discard(name)
            else:
                self._foreign.add(name)

    def _set_batch(self, batch):
        if batch != self._batch:
            for spec in self._inputs:
                shape = (batch, *spec.item_shape)
                if not self._context.set_input_shape(spec.name, shape):
                    raise RuntimeError(f"TensorRT refused input shape {shape}")
            self._batch = batch

    def _execute(self, stream):
        """Queues the inference on `stream`: its graph where it has one and the context's own
        buffers are bound (the graph holds them), else TensorRT's enqueue."""
        if self._graph_exec is not None and not self._foreign:
            check_cuda(cudart().cudaGraphLaunch(self._graph_exec, stream), "cudaGraphLaunch")
        else:
            self._enqueue(stream)

    def _enqueue(self, stream):
        if not self._context.execute_async_v3(stream):
            raise RuntimeError("TensorRT's execute_async_v3 failed; see its log above")

    def _queue(self, step, stream, execute):
        """Queues a step's copies in, its inference (`execute(stream)`) and its copies out."""
        for copy in step.copies_in:
            self._copy(*copy, stream)
        execute(stream)
        for copy in step.copies_out:
            self._copy(*copy, stream)

    def _capture_graphs(self):
        """Captures the inference for the profile's one batch size in a CUDA graph, and a staged
        chunk, its transfers from and to the staging buffers and its inference, in another."""
        # One plain run first: TensorRT sets up shape-dependent state on its first enqueue,
        # and that work must not end up in the graph.
        self._execute(self._stream_handle)
        self._synchronize()
        captured = self._capture(self._enqueue)
        if captured is None:
            return
        self._graph, self._graph_exec = captured
        if self._staging:
            inputs = [self._staging[spec.name] for spec in self._inputs]
            outputs = [self._staging[spec.name] for spec in self.outputs]
            self._staged = self.step(inputs, outputs, 0, self._batch)

    def _capture(self, enqueue):
        """A CUDA graph of the work `enqueue(stream)` queues, as (graph, executable graph); None
        where capture fails, and the work then runs without a graph."""
        try:
            return capture_graph(self._capture_stream, enqueue)
        except RuntimeError as error:
            log.warning("CUDA graph capture failed (%s); running without a graph", error)
            return None

    @property
    def uses_graph(self) -> bool:
        return self._graph_exec is not None

    def _parts(self, size, item_nbytes) -> list:
        """The (start, stop) item ranges a chunk of `size` items is staged in."""
        count = min(MAX_PARTS, size * item_nbytes // PART_NBYTES)
        if count <= 1:
            return [(0, size)]
        bounds = [size * part // count for part in range(count + 1)]
        return list(itertools.pairwise(bounds))

    def _copy(self, destination, source, nbytes, kind, stream=None):
        stream = self._stream if stream is None else stream
        check_cuda(
            cudart().cudaMemcpyAsync(destination, source, nbytes, kind, stream), "cudaMemcpyAsync"
        )

    def run(self, sources, targets, start, size):
        """Serves items [start, start + size) of a request whose inputs are `sources` and whose
        outputs go to `targets` (arrays.Tensor, kinds set)."""
        if self._staged is not None and all(t.kind == PAGEABLE for t in (*sources, *targets)):
            self._run_staged(sources, targets, start, size)
            return
        self._set_batch(size)
        for spec, source in zip(self._inputs, sources, strict=True):
            self._send(spec, source, start, size)
        copies_out = []
        for spec, target in zip(self.outputs, targets, strict=True):
            if target.kind == PAGEABLE:
                self._bind(spec.name, self._device[spec.name])
                continue
            address, copy = self._placement(spec, target, start, size, into_context=False)
            self._bind(spec.name, address)
            if copy is not None:
                copies_out.append(copy)
        self._execute(self._stream_handle)
        for copy in copies_out:
            self._copy(*copy)
        staged = []  # (event or None, the caller's part, the staged part) of pageable outputs
        for spec, target in zip(self.outputs, targets, strict=True):
            if target.kind == PAGEABLE:
                staged += self._stage_out(spec, target, start, size)
        # Each part of a pageable output is copied out as soon as it has arrived, while the
        # next one is on its way; a part without an event waits for the whole chunk.
        synchronized = False
        for event, destination, part in staged:
            if event is not None:
                check_cuda(cudart().cudaEventSynchronize(event), "cudaEventSynchronize")
            elif not synchronized:
                self._synchronize()
                synchronized = True
            np.copyto(destination, part)
        if not synchronized:
            self._synchronize()

    def _synchronize(self):
        check_cuda(cudart().cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")

    def _run_staged(self, sources, targets, start, size):
        """A pageable chunk of the profile's one shape: one copy into the staging buffers, one
        graph of the transfers and the inference, one copy out. Each of those calls lets go
        of Python's interpreter lock once, where staging in parts takes several calls a part:
        under threads, every such call is a wait to take the lock back."""
        stop = start + size
        for spec, source in zip(self._inputs, sources, strict=True):
            np.copyto(self._staging[spec.name].host, source.host[start:stop])
        self.run_step(self._staged)
        for spec, target in zip(self.outputs, targets, strict=True):
            np.copyto(target.host[start:stop], self._staging[spec.name].host)

    def _placement(self, spec, tensor, start, size, into_context) -> tuple:
        """Where a chunk of a page-locked or GPU tensor meets the context: the address to bind,
        and the copy (destination, source, bytes, kind) that moves the chunk, or None. A GPU
        chunk on TensorRT's 256-byte boundary is bound in place; any other goes through the
        context's own buffer."""
        kinds = cudart().cudaMemcpyKind
        address = tensor.address + start * spec.item_nbytes
        if tensor.on_gpu:
            if address % ALIGNMENT == 0:
                return address, None
            kind = kinds.cudaMemcpyDeviceToDevice
        else:
            kind = kinds.cudaMemcpyHostToDevice if into_context else kinds.cudaMemcpyDeviceToHost
        device, nbytes = self._device[spec.name], size * spec.item_nbytes
        copy = (device, address, nbytes, kind) if into_context else (address, device, nbytes, kind)
        return device, copy

    def _wait_for(self, stream):
        """Orders this context's stream after the work queued on `stream` so far."""
        rt = cudart()
        check_cuda(rt.cudaEventRecord(self._wait_event, stream), "cudaEventRecord")
        check_cuda(rt.cudaStreamWaitEvent(self._stream, self._wait_event, 0), "cudaStreamWaitEvent")

    def _send(self, spec, source, start, size):
        """Gets a chunk of an input where the context reads it: bound in place on the GPU, or
        copied into the context's buffer."""
        if source.on_gpu and must_wait(source.stream):
            self._wait_for(source.stream)
        if source.kind == PAGEABLE:
            device = self._device[spec.name]
            self._bind(spec.name, device)
            self._stage_in(spec, source.host[start : start + size], device)
            return
        address, copy = self._placement(spec, source, start, size, into_context=True)
        self._bind(spec.name, address)
        if copy is not None:
            self._copy(*copy)

    def _stage_out(self, spec, target, start, size) -> list:
        """Queues the copies of a chunk of a pageable output into the staging buffer, and
        returns the staged parts still to be copied on the host."""
        rt = cudart()
        device = self._device[spec.name]
        staging = self._staging[spec.name]
        buffer, address = staging.host, staging.address
        destination = target.host[start : start + size]
        to_host = rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        parts = self._parts(size, spec.item_nbytes)
        staged = []
        for number, (low, high) in enumerate(parts):
            part = low * spec.item_nbytes
            self._copy(address + part, device + part, (high - low) * spec.item_nbytes, to_host)
            event = None
            if len(parts) > 1:
                event = self._part_event(number)
                check_cuda(rt.cudaEventRecord(event, self._stream), "cudaEventRecord")
            staged.append((event, destination[low:high], buffer[low:high]))
        return staged

    def step(self, sources, targets, start, size) -> "Step":
        """Works out, once, how this context serves items [start, start + size) of a prepared
        request (page-locked and GPU tensors only); where the profile's shape is static, as a
        CUDA graph of the copies and the inference."""
        waits = {source.stream for source in sources if source.on_gpu}
        step = Step(size, [stream for stream in waits if must_wait(stream)])
        for spec, source in zip(self._inputs, sources, strict=True):
            address, copy = self._placement(spec, source, start, size, into_context=True)
            step.bindings.append((spec.name, address))
            if copy is not None:
                step.copies_in.append(copy)
        for spec, target in zip(self.outputs, targets, strict=True):
            address, copy = self._placement(spec, target, start, size, into_context=False)
            step.bindings.append((spec.name, address))
            if copy is not None:
                step.copies_out.append(copy)
        if self._graph_exec is not None:  # a static shape, whose inference replays as a graph
            self._apply(step)
            # TensorRT's own enqueue, not the inference graph: a graph is not launched into a
            # stream being captured.
            captured = self._capture(lambda stream: self._queue(step, stream, self._enqueue))
            if captured is not None:
                step.graph, step.graph_exec = captured
        return step

    def _apply(self, step):
        self._set_batch(step.size)
        for name, address in step.bindings:
            self._bind(name, address)

    def run_step(self, step):
        """Runs a chunk worked out by step(), and waits for it."""
        for stream in step.waits:
            self._wait_for(stream)
        if step.graph_exec is not None:
            check_cuda(cudart().cudaGraphLaunch(step.graph_exec, self._stream), "cudaGraphLaunch")
        else:
            self._apply(step)
            self._queue(step, self._stream_handle, self._execute)
        self._synchronize()

    def _part_event(self, number):
        """The event that marks the arrival of staged output part `number`."""
        while len(self._part_events) <= number:
            self._part_events.append(self._new_event())
        return self._part_events[number]

    def _stage_in(self, spec, source, device):
        """Copies pageable `source` through the staging buffer to `device`, part by part: each
        part's transfer runs while the next part is staged."""
        staging = self._staging[spec.name]
        buffer, address = staging.host, staging.address
        to_gpu = cudart().cudaMemcpyKind.cudaMemcpyHostToDevice
        for low, high in self._parts(len(source), spec.item_nbytes):
            np.copyto(buffer[low:high], source[low:high])
            offset = low * spec.item_nbytes
            self._copy(device + offset, address + offset, (high - low) * spec.item_nbytes, to_gpu)

    def _destroy_graph(self):
        destroy_graph(self._graph, self._graph_exec)
        if self._staged is not None:
            self._staged.close()
        self._graph = self._graph_exec = self._staged = None

    def close(self):
        """Frees the graph, buffers, events and stream, and lets go of the context."""
        rt = cudart()
        if self._stream is not None:
            rt.cudaStreamSynchronize(self._stream)
        self._destroy_graph()
        for address in self._device.values():
            rt.cudaFree(address)
        for event in self._events:
            rt.cudaEventDestroy(event)
        for stream in (self._stream, self._capture_stream):
            if stream is not None:
                rt.cudaStreamDestroy(stream)
        self._stream = self._capture_stream = None
        self._device, self._staging = {}, {}
        self._events, self._part_events = [], []
        self._context = None

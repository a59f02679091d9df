"""The Dispatcher: execution contexts for every profile of an engine, serving requests of any
shape, each chunk on the profile that fits it (docs/serving.md is the guide).

An engine whose batch alone is dynamic is served by the batch: its plans are looked up by batch
size. An engine with dynamic dimensions beyond the batch (or a dispatcher that records its
requests) is served by shape: each request's route (routing.py) and the shapes of its outputs
are worked out once per shape and kept. Both ways pick profiles by the same rule.
"""

import logging
import math
import queue
import threading
import weakref

import numpy as np

from dynamic_shapes.arrays import ON_GPU, PAGEABLE, Tensor
from dynamic_shapes.engines import batch_ranges, context_memory_size, create_contexts
from dynamic_shapes.gpu import page_locked_empty
from dynamic_shapes.serving.engine_io import (
    batch_alone_is_dynamic,
    dynamic_engine_io,
    engine_io,
    profile_ranges,
    starts_on_profile_0,
)
from dynamic_shapes.serving.host_memory import check_outputs_fit
from dynamic_shapes.serving.lean_executor import LeanExecutor
from dynamic_shapes.serving.padding import cut, output_cuts, pad, padded_lengths
from dynamic_shapes.serving.planning import plan_chunks
from dynamic_shapes.serving.pools import CLOSED_WHILE_WAITING, take
from dynamic_shapes.serving.prepared import PreparedRequest, prepare_request
from dynamic_shapes.serving.request_checks import (
    by_name,
    check_request,
    check_shaped_request,
    check_tensor,
    locate,
    request_shapes,
)
from dynamic_shapes.serving.routing import check_rule, plan_route
from dynamic_shapes.serving.runner_executor import RunnerExecutor
from dynamic_shapes.serving.shape_graphs import (
    DEFAULT_BYTES,
    DEFAULT_SHAPES,
    ShapeGraphs,
    check_limits,
)
from dynamic_shapes.tensors import TensorSpec

log = logging.getLogger(__name__)

# The engines a Dispatcher serves now. Its contexts hold every profile; a second dispatcher's
# contexts would ask for them again, which TensorRT 8.6 refuses without profile sharing.
_engines_in_use = {}  # id(engine) -> engine, which keeps the id from being reused
# Re-entrant: a collection while it is held may free a dispatcher, whose release() takes it.
_engines_lock = threading.RLock()

PATHS = ("lean", "runner")
PLANS_KEPT = 1024


class Dispatcher:
    """Execution contexts for every profile of `engine`, serving requests of any shape.

    Every input and output of the engine needs the batch as its first dimension; other
    dimensions may be dynamic too. `use_cases` names its profiles, in index order (by default
    "profile 0", "profile 1", ...); the inputs are read from the engine. `path` is "lean" or
    "runner"; `cuda_graphs` applies to the lean path. `contexts_per_profile` > 1 needs profile
    sharing (docs/serving.md). `routing` picks among the profiles that hold a request:
    "nearest-opt" (the default) or "narrowest" (routing.py). `pad_with_mask` names the
    attention-mask input of a model whose requests may be padded up to a profile that holds
    them; without it, a request whose dimensions beyond the batch no profile holds is refused.
    `recorder`, where given, has `.record({input name: shape})` called for every request served
    (planner.recorder.WorkloadRecorder).

    With `graphs_after` set (1: from a shape's second request), on the lean path with CUDA
    graphs, infer() serves a shape it has served `graphs_after` times before from CUDA graphs
    captured for it, on contexts of their own (shape_graphs.py), for at most `graph_shapes`
    shapes holding `graph_bytes` (their contexts' activation memory, inputs and outputs), the
    shapes sent least freed first; `graph_stats()` counts what it did. It is off by default
    (None): docs/serving.md says why.
    """

    def __init__(
        self,
        engine,
        use_cases=None,
        path="lean",
        cuda_graphs=True,
        contexts_per_profile=1,
        routing="nearest-opt",
        pad_with_mask=None,
        recorder=None,
        graphs_after=None,
        graph_shapes=DEFAULT_SHAPES,
        graph_bytes=DEFAULT_BYTES,
    ):
        self.routing = check_rule(routing)
        if recorder is not None and not callable(getattr(recorder, "record", None)):
            raise ValueError(f"recorder must have a record(shapes) method, got {recorder!r}")
        if path not in PATHS:
            raise ValueError(f"path must be one of {PATHS}, got {path!r}")
        if not isinstance(contexts_per_profile, int) or contexts_per_profile < 1:
            raise ValueError(f"contexts_per_profile must be 1 or more, got {contexts_per_profile}")
        count = engine.num_optimization_profiles
        if use_cases is None:
            use_cases = [f"profile {i}" for i in range(count)]
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
        self._served = {}  # shapes -> (Route, layout, outputs' shapes): served by shape
        self._recorder = recorder
        batch_alone = batch_alone_is_dynamic(engine)
        if batch_alone:
            self.inputs, outputs = engine_io(engine)
            self._output_shapes = None
        else:
            self.inputs, outputs, self._output_shapes = dynamic_engine_io(engine)
        names = [spec.name for spec in self.inputs]
        if pad_with_mask is not None and pad_with_mask not in names:
            raise ValueError(
                f"pad_with_mask names {pad_with_mask!r}, which is no input of this engine; its "
                f"inputs are {names}"
            )
        self.pad_with_mask = pad_with_mask
        # Requests go by shape where anything but the batch decides how they are served.
        self._by_shape = not batch_alone or recorder is not None
        self._engine_outputs = outputs
        # The engine is the source of truth for what each profile accepts.
        self.ranges = batch_ranges(engine, self.inputs[0].name)
        self.profiles = profile_ranges(engine, names)
        # The batch path's rule (planning.choose_profile): opts for nearest-opt, none for
        # narrowest, so that it picks the profile routing.choose picks for the same shapes.
        self._batch_opts = (
            tuple(tuple(shape[0] for shape in profile.opt) for profile in self.profiles)
            if self.routing == "nearest-opt"
            else None
        )
        check_limits(graphs_after, graph_shapes, graph_bytes)  # before any work, used or not
        self._graphs = None
        if self._cuda_graphs and graphs_after is not None:
            # Weakly, as its prepared requests hold it: a dispatcher nobody holds is freed.
            this = weakref.proxy(self)
            self._context_bytes = context_memory_size(engine)
            self._graphs = ShapeGraphs(
                lambda shapes: this._prepare_for_graphs(shapes),
                lambda shapes: this._graph_bytes(shapes), names, [name for name, _ in outputs],
                graphs_after, graph_shapes, graph_bytes,
            )  # fmt: skip
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
                profile = self.profiles[index]
                # Buffers for the profile's max shapes; a graph only where its one shape is.
                inputs = [
                    TensorSpec(spec.name, spec.dtype, high[1:])
                    for spec, high in zip(self.inputs, profile.max, strict=True)
                ]
                graphs = cuda_graphs and (batch_alone or profile.min == profile.max)
                for context in contexts[index::count]:
                    if path == "runner":
                        executor = RunnerExecutor(
                            context, index, self.ranges[index], inputs, outputs
                        )
                    else:
                        executor = LeanExecutor(
                            context, index, self.ranges[index], inputs, outputs, graphs
                        )
                    self._executors.append(executor)
                    pool.put(executor)
                self._pools.append((pool, contexts_per_profile))
                self._by_profile.append(self._executors[-contexts_per_profile:])
            if batch_alone:
                specs = {tuple(executor.outputs) for executor in self._executors}
                if len(specs) != 1:
                    raise ValueError(f"the outputs' shapes differ between profiles: {specs}")
                self.outputs = list(specs.pop())
            else:  # their dynamic dimensions -1, as the engine gives them
                self.outputs = [
                    TensorSpec(name, dtype, self._output_shapes[name][1:])
                    for name, dtype in outputs
                ]
        except BaseException:
            self.close()
            raise

    def infer(self, request, out=None):
        """Runs the request: an array, or {input name: array} (required for several inputs),
        NumPy or GPU arrays. Returns the outputs in arrays the caller owns (NumPy), or in `out`:
        arrays of the output's dtype and shape for this request (output_shapes says which),
        NumPy or GPU, as one array or {output name: array}. A model with one output gives an
        array, with several a dict. Which profile serves it, and whether it is split, padded or
        refused: docs/serving.md."""
        if self.closed:
            raise RuntimeError("this Dispatcher is closed; create a new one to serve requests")
        if self._by_shape:
            return self._infer_by_shape(request, out)
        sources = check_request(request, self.inputs)
        batch = sources[0].shape[0]
        targets, result = self._targets(out, batch)
        chunks = self._plan(batch)  # a batch that cannot be split is refused here, before all
        self._check_path(sources, targets)
        if self._graphs is not None and self._graphs.serve(
            tuple(source.shape for source in sources), sources, targets
        ):
            return result
        self._run_chunks(chunks, sources, targets)
        return result

    def _infer_by_shape(self, request, out):
        """infer() for a dispatcher that serves requests by shape."""
        sources = check_shaped_request(request, self.inputs)
        shapes = tuple(source.shape for source in sources)
        if self._recorder is not None:
            self._recorder.record(
                {spec.name: shape for spec, shape in zip(self.inputs, shapes, strict=True)}
            )
        route, layout, cuts = self._served.get(shapes) or self._serve(shapes)
        if route.padded is not None:
            return self._infer_padded(sources, route, layout, cuts, out)
        batch = shapes[0][0]
        targets, result = self._targets(out, batch, layout[1])
        self._check_path(sources, targets)
        if self._graphs is not None and self._graphs.serve(shapes, sources, targets):
            return result
        self._run_chunks(route.chunks, sources, targets, layout)
        return result

    def _check_path(self, sources, targets):
        if self.path == "runner" and any(t.kind == ON_GPU for t in (*sources, *targets)):
            raise ValueError("the runner path serves NumPy arrays; use path='lean' for GPU arrays")
        if self.path == "lean":
            for tensor in (*sources, *targets):
                locate(tensor)

    def _run_chunks(self, chunks, sources, targets, layout=None):
        for index, start, size in chunks:
            pool = self._pools[index][0]
            executor = take(pool, CLOSED_WHILE_WAITING)
            try:
                executor.run(sources, targets, start, size, layout)
            finally:
                pool.put(executor)

    def _serve(self, shapes) -> tuple:
        """How a request of `shapes` is served, worked out once per shape: its Route, its
        layout (the input and output specs of the shapes it runs at, after the batch) and the
        outputs' shapes after the batch it returns (cut back where it is padded)."""
        names = [spec.name for spec in self.inputs]
        route = plan_route(shapes, self.profiles, self.routing, names, self.pad_with_mask)
        runs_at = shapes if route.padded is None else route.padded
        inputs = [
            TensorSpec(spec.name, spec.dtype, shape[1:])
            for spec, shape in zip(self.inputs, runs_at, strict=True)
        ]
        index, _, size = route.chunks[0]
        pool = self._pools[index][0]
        executor = take(pool, CLOSED_WHILE_WAITING)
        try:
            outputs = executor.output_specs(size, inputs)
        finally:
            pool.put(executor)
        cuts = [spec.item_shape for spec in outputs]
        if route.padded is not None:
            cuts = output_cuts(self._output_shapes, outputs, padded_lengths(shapes, route.padded))
        served = (route, (inputs, outputs), cuts)
        if len(self._served) < PLANS_KEPT:
            self._served[shapes] = served
        return served

    def _infer_padded(self, sources, route, layout, cuts, out):
        """Serves a request padded to `route.padded`, on the host, and returns its outputs cut
        back to the request's shapes."""
        if any(source.host is None for source in sources):
            raise ValueError(
                "a request that must be padded is padded on the host: pass NumPy arrays, or "
                "pad the GPU arrays to shapes a profile holds (see the refusal without "
                "pad_with_mask for the ranges)"
            )
        batch = route.padded[0][0]
        specs = [
            TensorSpec(spec.name, spec.dtype, shape)
            for spec, shape in zip(layout[1], cuts, strict=True)
        ]
        # `out` is checked before anything runs, as infer() checks it on the other paths.
        given = [] if out is None else self._padded_out(out, specs, batch)
        padded = [
            Tensor(shape, source.dtype, host=pad(source.host, shape), kind=PAGEABLE)
            for source, shape in zip(sources, route.padded, strict=True)
        ]
        targets, _ = self._targets(None, batch, layout[1])
        self._check_path(padded, targets)
        self._run_chunks(route.chunks, padded, targets, layout)
        outputs = [cut(target.host, shape) for target, shape in zip(targets, cuts, strict=True)]
        if out is None:
            arrays = [np.ascontiguousarray(output) for output in outputs]
            return (
                arrays[0] if len(arrays) == 1 else dict(zip(self.output_names, arrays, strict=True))
            )
        for target, output in zip(given, outputs, strict=True):
            np.copyto(target, output)
        return out

    @staticmethod
    def _padded_out(out, specs, batch) -> list:
        """The NumPy arrays of `out` a padded request's outputs are copied to, checked."""
        arrays = []
        for value, spec in zip(by_name(out, specs, "output"), specs, strict=True):
            target = check_tensor(value, spec, f"out {spec.name}", writable=True)
            if target.shape[0] != batch or target.host is None:
                raise ValueError(
                    f"out must be a NumPy array {spec.dtype} {(batch, *spec.item_shape)} for "
                    f"this request, got {target.dtype} {target.shape}"
                )
            arrays.append(target.host)
        return arrays

    def _plan(self, batch) -> tuple:
        """The request's chunks (plan_chunks), kept for the batch sizes that come back."""
        plan = self._plans.get(batch)
        if plan is None:
            plan = plan_chunks(batch, self.ranges, self._batch_opts)
            if len(self._plans) < PLANS_KEPT:
                self._plans[batch] = plan
        return plan

    def _targets(self, out, batch, specs=None) -> tuple:
        """The Tensors the outputs go to, and what infer() returns; `specs` are the outputs'
        at the request's shapes, by default `outputs`."""
        specs = self.outputs if specs is None else specs
        if out is None:
            check_outputs_fit(batch, batch * sum(spec.item_nbytes for spec in specs))
            arrays = [np.empty((batch, *spec.item_shape), spec.dtype) for spec in specs]
            result = (
                arrays[0] if len(arrays) == 1 else dict(zip(self.output_names, arrays, strict=True))
            )
            targets = [Tensor(a.shape, a.dtype, host=a, kind=PAGEABLE) for a in arrays]
            return targets, result
        targets = []
        for value, spec in zip(by_name(out, specs, "output"), specs, strict=True):
            target = check_tensor(value, spec, f"out {spec.name}", writable=True)
            if target.shape[0] != batch:
                raise ValueError(
                    f"out must be {spec.dtype} {(batch, *spec.item_shape)} for this request, "
                    f"got {target.dtype} {target.shape}"
                )
            targets.append(target)
        return targets, out

    @property
    def input_names(self) -> list:
        """The inputs' names, in the order of `inputs`."""
        return [spec.name for spec in self.inputs]

    @property
    def output_names(self) -> list:
        """The outputs' names, in the order of `outputs`."""
        return [spec.name for spec in self.outputs]

    def page_locked_inputs(self, shapes) -> dict:
        """{input name: array} in page-locked memory for a request of `shapes`: {input name:
        shape}, or a batch size where the inputs' other dimensions are fixed. Fill them and
        pass them to infer(), which copies them straight to the GPU. Keep them for the next
        request: page-locked memory is slow to allocate and scarce."""
        shapes = request_shapes(shapes, self.inputs)
        return {
            spec.name: page_locked_empty(shape, spec.dtype)
            for spec, shape in zip(self.inputs, shapes, strict=True)
        }

    def page_locked_outputs(self, shapes) -> dict:
        """{output name: array} in page-locked memory, for infer()'s `out` of a request of
        `shapes` (as page_locked_inputs takes them)."""
        return {
            name: page_locked_empty(shape, dtype)
            for name, (shape, dtype) in self.output_shapes(shapes).items()
        }

    def output_shapes(self, shapes) -> dict:
        """{output name: (shape, dtype)} of a request of `shapes` (as page_locked_inputs takes
        them); ValueError where no profile serves it."""
        shapes = request_shapes(shapes, self.inputs)
        batch = shapes[0][0]
        if not self._by_shape:
            return {s.name: ((batch, *s.item_shape), s.dtype) for s in self.outputs}
        if self.closed:
            raise RuntimeError("this Dispatcher is closed; create a new one to serve requests")
        _, layout, cuts = self._served.get(shapes) or self._serve(shapes)
        return {
            spec.name: ((batch, *shape), spec.dtype)
            for spec, shape in zip(layout[1], cuts, strict=True)
        }

    def free_graphs(self) -> None:
        """Frees the graphs of the shapes sent again, and what they hold (graph_stats says how
        much); a shape is then served as before `graphs_after` times, and captured again."""
        if self._graphs is not None:
            self._graphs.clear()

    @property
    def graphs_after(self):
        """How many requests of a shape are served as before its graphs are captured, as passed
        to the constructor; None where the shapes sent again replay no graphs of their own: the
        runner path, cuda_graphs=False or graphs_after=None."""
        return None if self._graphs is None else self._graphs.after

    def graph_stats(self):
        """What the graphs of the shapes seen again did so far (shape_graphs.GraphStats), or
        None where there are none: the runner path, cuda_graphs=False or graphs_after=None."""
        return None if self._graphs is None else self._graphs.stats()

    def _prepare_for_graphs(self, shapes) -> "PreparedRequest":
        """A prepared request of `shapes` (a tuple, in input order) for shape_graphs, with
        page-locked arrays of its own; it records nothing, since infer() records each request,
        and holds the dispatcher weakly, since the dispatcher holds it."""
        named = dict(zip(self.input_names, shapes, strict=True))
        return prepare_request(weakref.proxy(self), named, record=False)

    def _graph_bytes(self, shapes) -> int:
        """What a prepared request of `shapes` (a tuple, in input order) holds: a context's
        activation memory per profile and chunk size, and its inputs' and outputs' bytes."""
        if self._by_shape:
            chunks = (self._served.get(shapes) or self._serve(shapes))[0].chunks
        else:
            chunks = self._plan(shapes[0][0])
        contexts = len({(index, size) for index, _, size in chunks})
        named = dict(zip(self.input_names, shapes, strict=True))
        arrays = [
            *((shape, spec.dtype) for spec, shape in zip(self.inputs, shapes, strict=True)),
            *self.output_shapes(named).values(),
        ]
        return contexts * self._context_bytes + sum(
            math.prod(shape) * np.dtype(dtype).itemsize for shape, dtype in arrays
        )

    def prepare(self, shapes, inputs=None, out=None, *, record=True) -> "PreparedRequest":
        """A request of `shapes` ({input name: shape}, or a batch size where the inputs' other
        dimensions are fixed) whose arrays stay where they are, for a caller who serves
        request after request from the same memory: `inputs` and `out` as for infer(),
        page-locked or GPU arrays, by default new page-locked ones (`.inputs`, `.outputs`).
        Everything infer() works out per request is worked out here once, so that
        PreparedRequest.run() is TensorRT's own loop: the copies, the inference, one
        synchronize; with CUDA graphs, one graph of a chunk's copies and inference. Its chunks
        run on execution contexts of the request's own (see docs/serving.md). A request that
        would be padded is refused: prepare the padded shapes, and mask the padding. With
        `record` false, the dispatcher's recorder does not record the request's runs."""
        return prepare_request(self, shapes, inputs, out, record)

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
        try:
            if self._graphs is not None:
                self._graphs.close()
        finally:
            self._release()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


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

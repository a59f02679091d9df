"""Section 6, the cost of convenience: TrtRunner.infer, the dispatcher's paths in every kind
of memory, and the bare loops and copies that are the floors under them."""

import itertools
import time
from functools import partial

import numpy as np

from dynamic_shapes.dispatch import Dispatcher
from dynamic_shapes.engines import create_contexts, deactivate_runner
from dynamic_shapes.measure.engines import Engines, close_all
from dynamic_shapes.measure.timing import interleave, profile_calls, summarize
from dynamic_shapes.serving.planning import choose_profile
from dynamic_shapes.serving.shape_graphs import DEFAULT_AFTER
from dynamic_shapes.tensors import random_batch

BASELINE = "bare loop, page-locked"
# The floors under it: the copies alone, which the link sets, and the inference alone, which
# is all a GPU-resident request needs.
COPIES = "bare copies alone, page-locked (no inference)"
GPU_BASELINE = "bare execute, GPU-resident"
# The host's share of a pageable request: its copies into and out of page-locked memory.
STAGING = "staging copies alone, one thread (no GPU)"
# For a profile of one shape: the bare loop's copies and inference captured once in a CUDA graph
# and replayed, the least a request of that size can cost from Python.
GRAPH_FLOOR = "bare graph replay, page-locked"


def stage(request, staged_request, staged_outputs, out):
    """The host-side work of a staged request, without the GPU: the request copied into
    page-locked memory, and the outputs copied from page-locked memory into the caller's
    array, in one thread."""
    np.copyto(staged_request, request)
    np.copyto(out, staged_outputs)


def gpu_arrays():
    """CuPy, for the GPU-resident rows, or None where it is not installed."""
    try:
        import cupy
    except ImportError:
        return None
    return cupy


GPU_ARRAYS_MISSING = (
    "GPU-resident rows left out: they need CuPy (python3 -m pip install -r "
    "requirements-gpu-arrays.txt)"
)
# Dispatchers measured in section 6, each on an engine of its own.
# The graphs of shapes sent again are measured on: the dispatcher's default leaves them off.
DISPATCHERS = {
    "graphs": {"cuda_graphs": True, "graphs_after": DEFAULT_AFTER},
    "no graphs": {"cuda_graphs": False},
}
# Distinct arrays a request cycles through in the fresh-arrays row.
FRESH_ARRAYS = 8
FRESH = "dispatcher, pageable, fresh arrays, CUDA graph"
# Requests timed that capture their shape's graphs, the graphs freed before each.
CAPTURES = 20
# The infer() rows profiled at batch 1 (cProfile: each function's own time per request).
INFER_PROFILED = (
    "dispatcher, page-locked, CUDA graph",
    "dispatcher, pageable",
    "dispatcher, GPU-resident",
)


class Requests:
    """One request of `batch` images in each kind of memory, with page-locked and GPU arrays
    for its outputs."""

    def __init__(self, dispatcher, spec, batch, cupy):
        self.pageable = random_batch(spec, batch, seed=batch)
        self.fresh = [random_batch(spec, batch, seed=batch * 100 + i) for i in range(FRESH_ARRAYS)]
        self.pageable_out = dispatcher.infer(self.pageable)
        self.page_locked = dispatcher.page_locked_inputs(batch)
        self.page_locked[spec.name][:] = self.pageable
        self.page_locked_out = dispatcher.page_locked_outputs(batch)
        self.on_gpu = self.on_gpu_out = None
        self.prepared = {}  # row name -> PreparedRequest over the arrays above
        if cupy is not None:
            self.on_gpu = cupy.asarray(self.pageable)
            self.on_gpu_out = {
                s.name: cupy.empty((batch, *s.item_shape), s.dtype) for s in dispatcher.outputs
            }


def fresh_arrays(infer, arrays):
    """infer() from another of `arrays` on every call: graphs that served only the arrays they
    were captured from would show here."""
    pending = itertools.cycle(arrays)
    return lambda: infer(next(pending))


def dispatcher_variants(dispatchers, requests) -> dict:
    """The dispatcher's rows for a request, in each memory, with CUDA graphs and without.
    Through infer(), with graphs, a shape sent again replays graphs of its own; a prepared
    request replays its own for every profile (on contexts of its own for a profile of a
    range, see docs/serving.md)."""
    batch = len(requests.pageable)
    memories = {"page-locked": (requests.page_locked, requests.page_locked_out)}
    if requests.on_gpu is not None:
        memories["GPU-resident"] = (requests.on_gpu, requests.on_gpu_out)
    variants = {}
    for name, dispatcher in dispatchers.items():
        suffix = ", CUDA graph" if name == "graphs" else ""
        # The default: the caller's ordinary array in, a new array out.
        variants[f"dispatcher, pageable{suffix}"] = partial(dispatcher.infer, requests.pageable)
        variants[f"dispatcher, page-locked{suffix}"] = partial(
            dispatcher.infer, requests.page_locked, out=requests.page_locked_out
        )
        if name == "graphs":
            variants[FRESH] = fresh_arrays(dispatcher.infer, requests.fresh)
        for memory, (inputs, out) in memories.items():
            prepared = dispatcher.prepare(batch, inputs, out=out)
            if name == "graphs" and not prepared.uses_graphs:  # the same as without graphs
                prepared.close()
                continue
            requests.prepared[f"dispatcher, prepared, {memory}{suffix}"] = prepared
            variants[f"dispatcher, prepared, {memory}{suffix}"] = prepared.run
    plain = dispatchers["no graphs"]
    variants["dispatcher, pageable, out="] = partial(
        plain.infer, requests.pageable, out=requests.pageable_out
    )
    if requests.on_gpu is not None:
        variants["dispatcher, GPU-resident"] = partial(
            plain.infer, requests.on_gpu, out=requests.on_gpu_out
        )
    return variants


def capturing_requests(dispatcher, request, reference, batch) -> dict:
    """What the request that captures its shape's graphs costs, CAPTURES times, every output
    checked: free_graphs() frees the shape's graphs and the cache forgets how often it was
    sent, so its next `dispatcher.graphs_after` requests are served as before, untimed, and the
    one after them, timed, captures. The figures keep that count beside them."""
    samples, before = [], dispatcher.graph_stats().captures
    after = dispatcher.graphs_after
    for number in range(CAPTURES):
        dispatcher.free_graphs()
        for before_capture in range(after):
            outputs = dispatcher.infer(request)
            what = f"request before a capture, batch {batch}, {number + 1}.{before_capture + 1}"
            reference.check(what, request, by_output(dispatcher, outputs))
        start = time.perf_counter_ns()
        outputs = dispatcher.infer(request)
        samples.append(time.perf_counter_ns() - start)
        what = f"capturing request, batch {batch}, {number + 1}"
        reference.check(what, request, by_output(dispatcher, outputs))
    # Each should have captured; one whose capture failed was served as before.
    captured = dispatcher.graph_stats().captures - before
    return {**summarize(samples), "captured": captured, "graphs_after": after}


def check_dispatchers(reference, dispatchers, requests, batch) -> None:
    """Checks every dispatcher's outputs, from every kind of memory, against ONNX Runtime."""
    inputs = requests.pageable
    for name, dispatcher in dispatchers.items():
        what = f"dispatcher ({name}), batch {batch}"
        outputs = dispatcher.infer(inputs)
        reference.check(f"{what}, pageable", inputs, by_output(dispatcher, outputs))
        dispatcher.infer(requests.page_locked, out=requests.page_locked_out)
        reference.check(f"{what}, page-locked", inputs, requests.page_locked_out)
        if requests.on_gpu is not None:
            dispatcher.infer(requests.on_gpu, out=requests.on_gpu_out)
            outputs = {name: array.get() for name, array in requests.on_gpu_out.items()}
            reference.check(f"{what}, GPU-resident", inputs, outputs)
    for number, array in enumerate(requests.fresh):
        outputs = by_output(dispatchers["graphs"], dispatchers["graphs"].infer(array))
        reference.check(f"{FRESH}, batch {batch}, array {number + 1}", array, outputs)
    for name, prepared in requests.prepared.items():
        outputs = prepared.run()
        if "GPU-resident" in name:
            outputs = {key: array.get() for key, array in outputs.items()}
        reference.check(f"{name}, batch {batch}", inputs, outputs)


def by_output(dispatcher, outputs) -> dict:
    """{output name: array} for what Dispatcher.infer returned."""
    return outputs if isinstance(outputs, dict) else {dispatcher.output_names[0]: outputs}


def measure_convenience(engines, reference, settings, progress) -> dict:
    from polygraphy.backend.trt import TrtRunner

    spec, ranges = engines.spec, engines.ranges
    runner_engine = Engines.load(engines.narrow)
    runners = [
        TrtRunner(context, optimization_profile=index)
        for index, context in enumerate(create_contexts(runner_engine, len(ranges)))
    ]
    for runner in runners:
        runner.activate()
    notes, dispatchers = [], {}
    try:
        for name, options in DISPATCHERS.items():
            dispatchers[name] = Dispatcher(Engines.load(engines.narrow), **options)
    except ValueError as unsupported:
        close_all(dispatchers.values())
        dispatchers = {}
        notes.append(f"dispatcher rows left out: {unsupported}")
    cupy = gpu_arrays()
    if cupy is None:
        notes.append(GPU_ARRAYS_MISSING)
    pageable = engines.bare_loops(engines.narrow, pinned=False)
    pinned = engines.bare_loops(engines.narrow, pinned=True)
    by_batch, infer_profile, captures = {}, {}, {}
    try:
        for batch in settings.convenience_batches:
            index = choose_profile(batch, ranges)
            if index is None:
                notes.append(f"batch {batch} left out: no profile accepts it ({engines.accepted})")
                continue
            request = random_batch(spec, batch, seed=batch)
            variants = {"TrtRunner.infer": partial(runners[index].infer, {spec.name: request})}
            if dispatchers:
                requests = Requests(dispatchers["no graphs"], spec, batch, cupy)
                variants.update(dispatcher_variants(dispatchers, requests))
                # What staging costs the CPU: the two copies through page-locked memory.
                staged = requests.page_locked[spec.name], requests.page_locked_out
                out = by_output(dispatchers["no graphs"], requests.pageable_out)
                if len(out) == 1:
                    ((name, array),) = out.items()
                    variants[STAGING] = partial(stage, request, staged[0], staged[1][name], array)
            variants["bare loop, pageable"] = partial(pageable[index].run, batch)
            variants[BASELINE] = partial(pinned[index].run, batch)
            variants[COPIES] = partial(pinned[index].run, batch, inference=False)
            variants[GPU_BASELINE] = partial(pinned[index].run, batch, copies=False)
            if ranges[index][0] == ranges[index][1]:  # one shape: its request can be a graph
                if pinned[index].graph_exec is None:
                    pinned[index].capture(batch)
                variants[GRAPH_FLOOR] = pinned[index].replay
            by_batch[batch] = interleave(variants, settings, progress, f"6. batch {batch}")
            if batch == 1:  # where infer's time goes beyond the floor's, per kind of memory
                progress("6. profiling infer")
                infer_profile = {
                    name: profile_calls(variants[name], settings.reps * 2)
                    for name in INFER_PROFILED
                    if name in variants
                }

            reference.check(f"TrtRunner.infer, batch {batch}", request, runners[index].infer(
                {spec.name: request}))  # fmt: skip
            if dispatchers:
                check_dispatchers(reference, dispatchers, requests, batch)
                close_all(requests.prepared.values())  # and the contexts of their own
                progress(f"6. batch {batch}: requests that capture their graphs")
                captures[batch] = capturing_requests(
                    dispatchers["graphs"], requests.pageable, reference, batch
                )
            reference.check_loop("bare loop, pageable", pageable[index], batch)
            reference.check_loop(BASELINE, pinned[index], batch)
            if GRAPH_FLOOR in variants:
                pinned[index].replay()
                reference.check(f"{GRAPH_FLOOR}, batch {batch}", *pinned[index].last_result())
        progress("6. profiling TrtRunner.infer")
        index = choose_profile(1, ranges)
        feed = {spec.name: random_batch(spec, 1)}
        top = profile_calls(lambda: runners[index].infer(feed), settings.reps * 2)
    finally:
        for runner in runners:
            deactivate_runner(runner)
        close_all([*dispatchers.values(), *pageable, *pinned])
    return {
        "by_batch": by_batch,
        "notes": notes,
        "trtrunner_profile": top,
        "infer_profile": infer_profile,
        "capturing_requests": captures,
    }

"""Section 7: concurrent requests for one profile, served by one execution context or several."""

import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import numpy as np

from dynamic_shapes.dispatch import Dispatcher
from dynamic_shapes.measure.convenience import GPU_ARRAYS_MISSING, by_output, gpu_arrays
from dynamic_shapes.measure.engines import Engines, close_all
from dynamic_shapes.serving.planning import choose_profile
from dynamic_shapes.tensors import random_batch

# Section 7: threads sending requests for one profile at once, to 1 context or to CONTEXTS.
CONTEXTS = 4
CONTEXT_THREADS = 8
CONTEXT_ROUNDS = 3


def serve_concurrently(dispatcher, request, out, threads, count) -> float:
    """Requests per second of `threads` threads, each sending `count` requests with its own
    output arrays (`out()` makes them)."""

    def worker(outputs):
        for _ in range(count):
            dispatcher.infer(request, out=outputs)

    outputs = [out() for _ in range(threads)]
    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        for future in [pool.submit(worker, o) for o in outputs]:
            future.result()
    return threads * count / (time.perf_counter() - start)


def measure_contexts(engines, reference, settings, progress) -> dict:
    """Throughput of concurrent requests for one profile, served by 1 context or several."""
    spec, cupy = engines.spec, gpu_arrays()
    notes = [] if cupy is not None else [GPU_ARRAYS_MISSING]
    by_batch = {}
    for batch in settings.contexts_batches:
        index = choose_profile(batch, engines.ranges)
        if index is None:
            notes.append(f"batch {batch} left out: no profile accepts it ({engines.accepted})")
            continue
        dispatchers = {
            # Without the graphs of shapes sent again, which serve one request of a shape at a
            # time: the contexts are what is measured.
            count: Dispatcher(
                Engines.load(engines.narrow), contexts_per_profile=count, graphs_after=None
            )
            for count in (1, CONTEXTS)
        }
        try:
            request = random_batch(spec, batch, seed=batch)
            kinds = {}
            for count, dispatcher in dispatchers.items():
                kinds[f"page-locked, {count} context{'s' * (count > 1)}"] = (
                    dispatcher, dispatcher.page_locked_inputs(batch),
                    partial(dispatcher.page_locked_outputs, batch),
                )  # fmt: skip
                if cupy is not None:
                    kinds[f"GPU-resident, {count} context{'s' * (count > 1)}"] = (
                        dispatcher, cupy.asarray(request),
                        partial(cupy.empty, (batch, *dispatcher.outputs[0].item_shape),
                                dispatcher.outputs[0].dtype),
                    )  # fmt: skip
            for name, (dispatcher, inputs, _) in kinds.items():
                if isinstance(inputs, dict):
                    for array in inputs.values():
                        array[:] = request
                outputs = dispatcher.infer(inputs)
                reference.check(f"{name}, batch {batch}", request, by_output(dispatcher, outputs))
            rates = {name: [] for name in kinds}
            for round_index in range(CONTEXT_ROUNDS):
                progress(f"7. batch {batch}: round {round_index + 1}/{CONTEXT_ROUNDS}")
                for name, (dispatcher, inputs, out) in kinds.items():
                    count = max(1, settings.reps * 4 // CONTEXT_THREADS)
                    rates[name].append(
                        serve_concurrently(dispatcher, inputs, out, CONTEXT_THREADS, count)
                    )
            medians = {name: float(np.median(r)) for name, r in rates.items()}
            by_batch[batch] = {
                name: {
                    "requests_per_s": rate,
                    "images_per_s": rate * batch,
                    # e.g. "page-locked, 4 contexts" against "page-locked, 1 context"
                    "vs_one_context": rate / medians[f"{name.split(',')[0]}, 1 context"],
                }
                for name, rate in medians.items()
            }
        finally:
            close_all(dispatchers.values())
    return {"by_batch": by_batch, "notes": notes, "threads": CONTEXT_THREADS}

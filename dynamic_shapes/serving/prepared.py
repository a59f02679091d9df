"""Prepared requests: a request's arrays, chunks and copies worked out once by
Dispatcher.prepare() (prepare_request), run again and again from the same memory."""

import logging
import threading
import weakref
from numbers import Integral

from dynamic_shapes.arrays import PAGEABLE
from dynamic_shapes.engines import create_contexts
from dynamic_shapes.serving.engine_io import starts_on_profile_0
from dynamic_shapes.serving.lean_executor import LeanExecutor
from dynamic_shapes.serving.pools import CLOSED_WHILE_WAITING, DISPATCHER_CLOSED, take
from dynamic_shapes.serving.request_checks import (
    check_request,
    check_shaped_request,
    locate,
    request_shapes,
)

log = logging.getLogger(__name__)


class PreparedRequest:
    """A request whose arrays, chunks and copies Dispatcher.prepare() worked out once. Fill
    `inputs` and call run() as often as needed; the outputs land in `outputs`. Several threads
    may run different prepared requests at once; one prepared request runs one at a time.
    Where its inputs are GPU arrays, each run first waits for the work queued so far on the
    stream they named when the request was prepared (see Streams in docs/serving.md).
    `uses_graphs` says whether every chunk replays a CUDA graph; `own_contexts` how many
    execution contexts of its own it holds."""

    def __init__(self, dispatcher, inputs, outputs, sources, targets, chunks, owned, record=True):
        self.inputs, self.outputs = inputs, outputs  # keep the arrays, and their memory, alive
        # Each run is a request served: the dispatcher's recorder, if any, records its shapes
        # (unless the dispatcher records them itself: `record` false).
        self._recorder = dispatcher._recorder if record else None
        self.own_contexts = len(owned)
        self._shapes = {
            spec.name: source.shape for spec, source in zip(dispatcher.inputs, sources, strict=True)
        }
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
            if self._recorder is not None:
                self._recorder.record(self._shapes)
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


def prepare_request(dispatcher, shapes, inputs=None, out=None, record=True) -> PreparedRequest:
    """Dispatcher.prepare(): a request of `shapes` whose arrays, chunks and copies are worked
    out once, on execution contexts of its own where the engine shares profiles."""
    if dispatcher.closed:
        raise RuntimeError("this Dispatcher is closed; create a new one to serve requests")
    # Any integer, NumPy's too, as page_locked_inputs takes it; request_shapes refuses the
    # rest, saying what it expected.
    if isinstance(shapes, Integral) and not isinstance(shapes, bool) and shapes < 1:
        raise ValueError(f"a request needs at least one image, got batch {shapes!r}")
    if dispatcher.path != "lean":
        raise ValueError("prepared requests run on the lean path; use path='lean'")
    shapes = request_shapes(shapes, dispatcher.inputs)
    batch = shapes[0][0]
    named = dict(zip(dispatcher.input_names, shapes, strict=True))
    inputs = dispatcher.page_locked_inputs(named) if inputs is None else inputs
    layout, plan = None, None
    if dispatcher._by_shape:
        route, layout, _ = dispatcher._served.get(shapes) or dispatcher._serve(shapes)
        if route.padded is not None:
            raise ValueError(
                f"a prepared request runs at its own shapes, and no profile holds {shapes}; "
                f"prepare the padded shapes {route.padded} and mark the padding in "
                f"{dispatcher.pad_with_mask}, or serve it with infer(), which pads it"
            )
        plan = route.chunks
        sources = check_shaped_request(inputs, dispatcher.inputs)
    else:
        sources = check_request(inputs, dispatcher.inputs)
    if sources[0].shape[0] != batch:
        raise ValueError(f"the inputs hold batch {sources[0].shape[0]}, not {batch}")
    if tuple(source.shape for source in sources) != shapes:
        found = {s.name: t.shape for s, t in zip(dispatcher.inputs, sources, strict=True)}
        raise ValueError(f"the inputs hold shapes {found}, not {named}")
    if out is None:
        out = dispatcher.page_locked_outputs(named)
    targets, _ = dispatcher._targets(out, batch, None if layout is None else layout[1])
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
        for index, start, size in dispatcher._plan(batch) if plan is None else plan:
            executor = owned.get((index, size)) or own_executor(dispatcher, index, size, layout)
            if executor is not None:
                owned[(index, size)] = executor
                step = executor.step(sources, targets, start, size, layout)
                chunks.append((None, executor, step))
                continue
            # The engine does not share profiles: the profile's one context serves the chunk.
            pool = dispatcher._pools[index][0]
            executor = take(pool, CLOSED_WHILE_WAITING)
            try:
                step = executor.step(sources, targets, start, size, layout)
                chunks.append((pool, executor, step))
            finally:
                pool.put(executor)
    except BaseException:
        release_prepared([step for *_, step in chunks], list(owned.values()))
        raise
    return PreparedRequest(
        dispatcher, inputs, out, sources, targets, chunks, list(owned.values()), record
    )


def own_executor(dispatcher, index, size, layout=None):
    """An executor on a context of its own for a prepared chunk of `size` items on profile
    `index` (of the shapes of `layout`, where given), its shape set once; None where the
    engine does not share profiles."""
    with dispatcher._own_lock:  # one context at a time: TensorRT's log is silenced meanwhile
        if dispatcher._profiles_shared is False:
            return None
        (context,) = create_contexts(dispatcher.engine, 1)
        # Created while the dispatcher's first context holds profile 0.
        dispatcher._profiles_shared = starts_on_profile_0(context)
    if not dispatcher._profiles_shared:
        log.info(
            "this engine does not share profiles: prepared requests run on the dispatcher's "
            "contexts, and replay CUDA graphs only for the profiles of one shape"
        )
        return None
    inputs = dispatcher.inputs if layout is None else layout[0]
    return LeanExecutor(
        context, index, (size, size), inputs, dispatcher._engine_outputs, dispatcher._cuda_graphs,
        staging=False,
    )  # fmt: skip

"""Prepared requests: a request's arrays, chunks and copies worked out once by
Dispatcher.prepare(), run again and again from the same memory."""

import threading
import weakref

from dynamic_shapes.serving.pools import DISPATCHER_CLOSED, take


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

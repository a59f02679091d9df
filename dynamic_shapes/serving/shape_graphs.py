"""CUDA graphs for the shapes a service sees again: Dispatcher.infer() serves a request whose
shapes it has served `after` times before from a prepared request of those shapes
(Dispatcher.prepare: execution contexts of its own, one CUDA graph of each chunk's copies and
inference), instead of working the request out again.

How a request is served from its shape's graphs: its host arrays (pageable or page-locked) are
copied into the prepared request's page-locked inputs, the graphs replay, and the outputs are
copied from its page-locked outputs into the arrays infer() returns (or `out`). The copies on
the host are what infer() did anyway to stage a pageable request; the Python work per request
that prepared requests do once is gone. Requests with GPU arrays, or a GPU `out`, are served as
before.

The capture runs on the thread of the request that triggers it, which pays for it: the
contexts, the buffers and the graphs of one prepared request. A shape whose graphs another
thread is running, or capturing, is served as before meanwhile: no request waits for another's.

The cache is bounded by a count of shapes and by bytes: each prepared request's contexts cost
their activation memory (engines.context_memory_size) and its buffers on the GPU hold its inputs
and outputs. A new shape takes the place of shapes that served fewer than half as many requests
as it was sent (counts halved every so often, so that shapes no longer sent give way), the least
recently used first, and none that is running; where that frees too little, it is not kept this
time, and is tried again once it has been sent that much more often again. So a workload of
more shapes than the cache holds, sent alike, keeps the shapes captured first instead of
capturing anew all along. A shape whose graphs would not fit even alone is never cached;
neither is one where the engine does not share profiles and the profile's one context cannot
replay a graph for it (PreparedRequest.uses_graphs is then false).

Nothing here imports TensorRT or CUDA: the prepared requests come from `prepare`.
"""

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

# The defaults (Dispatcher's graphs_after, graph_shapes, graph_bytes): a shape's second request
# is captured; at most 32 shapes and 1 GiB of GPU memory, about twenty convnet shapes of one
# chunk each.
DEFAULT_AFTER = 1
DEFAULT_SHAPES = 32
DEFAULT_BYTES = 1 << 30
# How many shapes are counted until they are seen again: the oldest are forgotten first.
SHAPES_COUNTED = 4096
# How often every count is halved: after this many lookups per shape the cache holds.
AGE_EVERY = 16


@dataclass(frozen=True)
class GraphStats:
    """What the cache has done so far. Each request with host arrays counts once, as a hit, a
    miss or busy. hits: requests served from their shape's graphs; misses: requests of a shape
    without graphs (yet); busy: requests served as before because their shape's graphs were in
    use or being captured; captures: shapes whose graphs were captured; evictions: shapes freed
    to make room; shapes and bytes: what the cache holds now."""

    hits: int
    misses: int
    captures: int
    evictions: int
    busy: int
    shapes: int
    bytes: int


@dataclass
class _Entry:
    prepared: object  # a PreparedRequest
    inputs: list  # its page-locked inputs, in the engine's input order
    outputs: list  # its page-locked outputs, in the engine's output order
    bytes: int
    lock: threading.Lock
    requests: int  # the shape's requests, those before its capture included (halved by _age)


class ShapeGraphs:
    """The graphs of the shapes a dispatcher has seen again. `prepare(shapes)` returns a
    PreparedRequest of those shapes with page-locked inputs and outputs of its own, recording
    nothing; `context_bytes` is one execution context's activation memory."""

    def __init__(self, prepare, input_names, output_names, context_bytes,
                 after=DEFAULT_AFTER, shapes=DEFAULT_SHAPES, max_bytes=DEFAULT_BYTES):  # fmt: skip
        for name, value, least in (("graphs_after", after, 1), ("graph_shapes", shapes, 1),
                                   ("graph_bytes", max_bytes, 0)):  # fmt: skip
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise ValueError(f"{name} must be an integer of {least} or more, got {value!r}")
        self._prepare = prepare
        self._input_names, self._output_names = list(input_names), list(output_names)
        self._context_bytes = context_bytes
        self.after, self.max_shapes, self.max_bytes = after, shapes, max_bytes
        self._entries = OrderedDict()  # shapes -> _Entry, least recently used first
        self._seen = OrderedDict()  # shapes -> requests served without graphs
        self._refused = set()  # shapes not to capture: too large, or no graph to replay
        self._sizes = {}  # shapes -> bytes, of the captures that did not fit
        self._capturing = set()
        self._lock = threading.Lock()  # the dicts, the sets and the counters
        self._bytes = self._lookups = 0
        self._hits = self._misses = self._captures = self._evictions = self._busy = 0
        self._closed = False

    def serve(self, shapes: tuple, sources: list, targets: list) -> bool:
        """Serves a request of `shapes` from its graphs, its inputs from the host arrays of
        `sources` and its outputs into those of `targets` (arrays.Tensor); False where it is to
        be served as before: GPU arrays, a shape not seen often enough, or its graphs busy."""
        if any(t.host is None for t in sources) or any(t.host is None for t in targets):
            return False
        entry = self._entries.get(shapes)
        if entry is None:
            entry = self._capture(shapes)
            if entry is None:
                return False
        if not entry.lock.acquire(blocking=False):
            with self._lock:
                self._busy += 1
            return False
        try:
            if entry.prepared is None:  # freed since it was looked up
                with self._lock:
                    self._misses += 1
                return False
            for array, source in zip(entry.inputs, sources, strict=True):
                np.copyto(array, source.host, casting="no")
            entry.prepared.run()
            for target, output in zip(targets, entry.outputs, strict=True):
                np.copyto(target.host, output, casting="no")
        finally:
            entry.lock.release()
        with self._lock:
            self._age()
            self._hits += 1
            entry.requests += 1
            if shapes in self._entries:
                self._entries.move_to_end(shapes)
        return True

    def _capture(self, shapes: tuple):
        """The entry of `shapes`, captured now where it has been seen `after` times before and
        there is room for it; None where the request is to be served as before."""
        with self._lock:
            self._age()
            if self._closed or shapes in self._refused:
                self._misses += 1
                return None
            if shapes in self._capturing:
                self._busy += 1
                return None
            count = self._seen.pop(shapes, 0) + 1  # this request included
            self._seen[shapes] = count
            if len(self._seen) > SHAPES_COUNTED:
                self._seen.popitem(last=False)
            if count <= self.after or not self._may_make_room(count, self._sizes.get(shapes)):
                self._misses += 1
                return None
            self._capturing.add(shapes)
        prepared = None
        try:
            try:
                prepared = self._prepare(shapes)
            except Exception as error:  # e.g. no GPU memory left for another context
                log.warning("no CUDA graphs for shapes %s: %s", shapes, error)
                with self._lock:
                    self._refused.add(shapes)
                    self._misses += 1
                return None
            entry = _Entry(
                prepared,
                [prepared.inputs[name] for name in self._input_names],
                [prepared.outputs[name] for name in self._output_names],
                prepared.own_contexts * self._context_bytes
                + sum(a.nbytes for a in prepared.inputs.values())
                + sum(a.nbytes for a in prepared.outputs.values()),
                threading.Lock(),
                count - 1,  # the request that captures it counts once it is served
            )
            with self._lock:
                if not prepared.uses_graphs or entry.bytes > self.max_bytes:
                    self._refused.add(shapes)  # never worth capturing again
                    kept = False
                else:
                    kept = not self._closed and self._make_room(entry.bytes, count)
                if kept:
                    self._seen.pop(shapes, None)
                    self._sizes.pop(shapes, None)
                    self._entries[shapes] = entry
                    self._bytes += entry.bytes
                    self._captures += 1
                else:
                    self._seen[shapes] = 0  # to be seen as often as the others again first
                    self._sizes[shapes] = entry.bytes  # not to be captured until it fits
                    if len(self._sizes) > SHAPES_COUNTED:
                        self._sizes.pop(next(iter(self._sizes)))
                    self._misses += 1
            if not kept:
                prepared.close()
                return None
            return entry
        except BaseException:
            if prepared is not None:
                prepared.close()
            raise
        finally:
            with self._lock:
                self._capturing.discard(shapes)

    def _victims(self, count: int):
        """The entries that may be freed for a shape seen `count` times, least recently used
        first: those that served fewer than half as many requests, so that shapes sent about
        as often do not take each other's place. Holds self._lock."""
        return [(s, e) for s, e in self._entries.items() if 2 * e.requests < count]

    def _may_make_room(self, count: int, needed) -> bool:
        """Whether a shape seen `count` times may be captured: a place is free, or a victim
        (above) could be freed, and, where its size is known (`needed` bytes, from a capture
        that did not fit), the bytes free and the victims' hold it. Holds self._lock."""
        victims = self._victims(count)
        if len(self._entries) >= self.max_shapes and not victims:
            return False
        return (
            needed is None
            or self.max_bytes - self._bytes + sum(entry.bytes for _, entry in victims) >= needed
        )

    def _make_room(self, needed: int, count: int) -> bool:
        """Frees victims (above) that are not running until one more entry of `needed` bytes
        fits; False, freeing nothing, where it cannot. Holds self._lock."""
        free, freed = self.max_bytes - self._bytes, []
        shapes_left = len(self._entries)
        for shapes, entry in self._victims(count):
            if free >= needed and shapes_left < self.max_shapes:
                break
            if entry.lock.acquire(blocking=False):  # released once freed, below
                freed.append(shapes)
                free += entry.bytes
                shapes_left -= 1
        if free < needed or shapes_left >= self.max_shapes:
            for shapes in freed:
                self._entries[shapes].lock.release()
            return False
        for shapes in freed:
            self._free(self._entries.pop(shapes))
            self._evictions += 1
        return True

    def _age(self) -> None:
        """Every AGE_EVERY lookups per shape held, halves every count: a shape no longer sent
        gives way to those sent now. Holds self._lock."""
        self._lookups += 1
        if self._lookups < AGE_EVERY * self.max_shapes:
            return
        self._lookups = 0
        for entry in self._entries.values():
            entry.requests //= 2
        for shapes in list(self._seen):
            self._seen[shapes] //= 2

    def _free(self, entry: _Entry) -> None:
        """Closes an entry whose lock the caller holds, and releases the lock."""
        self._bytes -= entry.bytes
        prepared, entry.prepared = entry.prepared, None
        try:
            prepared.close()
        finally:
            entry.lock.release()

    def stats(self) -> GraphStats:
        with self._lock:
            return GraphStats(self._hits, self._misses, self._captures, self._evictions,
                              self._busy, len(self._entries), self._bytes)  # fmt: skip

    def clear(self) -> None:
        """Frees every shape's graphs, once the run in progress on each is done; shapes sent
        again are captured again."""
        with self._lock:
            entries = list(self._entries.values())
            self._entries.clear()
        for entry in entries:
            entry.lock.acquire()
            with self._lock:
                self._free(entry)

    def close(self) -> None:
        """Frees every shape's graphs, and captures no more."""
        with self._lock:
            self._closed = True
        self.clear()

"""CUDA graphs for the shapes a service sends again: where `graphs_after` turns them on (they are
off by default), Dispatcher.infer() serves a request whose shapes it has served `after` times
before from a prepared request of those shapes
(Dispatcher.prepare: execution contexts of its own, one CUDA graph of each chunk's copies and
inference), instead of working the request out again.

Which requests: those with an ordinary (pageable) NumPy array among their inputs, whose
staging copies on the host infer() makes anyway. The request's host arrays are copied into the
prepared request's page-locked inputs, its graphs replay, and its outputs are copied into the
arrays infer() returns (or `out`): what is gone is the Python work infer() redid per request.
Requests whose inputs are page-locked are copied straight to the GPU, as before; requests with
GPU arrays, and padded ones, are served as before too. A request whose graphs fail to run
raises, as infer() would, and its shape's graphs are freed.

The capture runs on the thread of the request that triggers it, which pays for it: the
contexts, the buffers and the graphs of one prepared request. A request whose shape's graphs
another thread is running, or capturing, is served as before meanwhile: none waits for another.

The cache is bounded by a count of shapes and by bytes: `estimate(shapes)` tells, before any
capture, what a shape's graphs would hold (its contexts' activation memory, and its inputs' and
outputs' bytes, which it holds on the GPU and in page-locked host memory alike). A new shape
takes the place of shapes that served fewer than half as many requests as it was sent (counts
halved every so often, so that shapes no longer sent give way), the least recently used first,
and none that is running; where that frees too little, it waits until it has been sent that
much more often. So a workload of more shapes than the cache holds, sent alike, keeps the
shapes captured first instead of capturing anew all along. A shape larger than the cache is
never captured; one whose prepared request replays no graph (an engine that does not share
profiles, on a profile of a range: PreparedRequest.uses_graphs false) is freed and never
captured again; one whose capture failed is tried again after RETRY_AFTER more requests.

Nothing here imports TensorRT or CUDA: the prepared requests come from `prepare`.
"""

import logging
import threading
from collections import Counter, OrderedDict
from dataclasses import dataclass

import numpy as np

from dynamic_shapes.arrays import PAGEABLE

log = logging.getLogger(__name__)

# The defaults: a shape's second request is captured (the graphs_after a caller turning them on
# passes; the Dispatcher's own default is None, off); at most 32 shapes and 1 GiB of GPU memory,
# about twenty convnet shapes of one chunk each (the Dispatcher's graph_shapes and graph_bytes).
DEFAULT_AFTER = 1
DEFAULT_SHAPES = 32
DEFAULT_BYTES = 1 << 30
# How many shapes are counted, and remembered as not to be captured: the oldest go first.
SHAPES_COUNTED = 4096
# How often every count is halved: after this many lookups per shape the cache holds.
AGE_EVERY = 16
# How many more requests a shape whose capture failed is served as before until it is tried again.
RETRY_AFTER = 100


def check_limits(after, shapes, max_bytes) -> None:
    """ValueError unless the limits are integers in range; `after` may be None (no graphs)."""
    for name, value, least in (("graphs_after", after, 1), ("graph_shapes", shapes, 1),
                               ("graph_bytes", max_bytes, 0)):  # fmt: skip
        if name == "graphs_after" and value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < least:
            raise ValueError(f"{name} must be an integer of {least} or more, got {value!r}")


@dataclass(frozen=True)
class GraphStats:
    """What the cache has done so far. Each request it is asked to serve counts once, as a hit,
    a miss or busy. hits: requests served from their shape's graphs; misses: requests of a
    shape without graphs (yet); busy: requests served as before because their shape's graphs
    were in use or being captured; captures: shapes whose graphs were captured; evictions:
    shapes freed to make room; shapes and bytes: what the cache holds now."""

    hits: int
    misses: int
    captures: int
    evictions: int
    busy: int
    shapes: int
    bytes: int


@dataclass
class _Entry:
    prepared: object  # a PreparedRequest; None once freed
    inputs: list  # its page-locked inputs, in the engine's input order
    outputs: list  # its page-locked outputs, in the engine's output order
    bytes: int
    lock: threading.Lock  # held while it runs, and while it is freed
    requests: int  # the shape's requests, those before its capture included (halved by _count)


class ShapeGraphs:
    """The graphs of the shapes a dispatcher has been sent again. `prepare(shapes)` returns a
    PreparedRequest of those shapes with page-locked inputs and outputs of its own, recording
    nothing; `estimate(shapes)` the bytes its graphs would hold."""

    def __init__(self, prepare, estimate, input_names, output_names,
                 after=DEFAULT_AFTER, shapes=DEFAULT_SHAPES, max_bytes=DEFAULT_BYTES):  # fmt: skip
        check_limits(after, shapes, max_bytes)
        self._prepare, self._estimate = prepare, estimate
        self._input_names, self._output_names = list(input_names), list(output_names)
        self.after, self.max_shapes, self.max_bytes = after, shapes, max_bytes
        self._entries = OrderedDict()  # shapes -> _Entry, least recently used first
        self._seen = OrderedDict()  # shapes -> requests sent without graphs (negative: backoff)
        self._refused = OrderedDict()  # shapes never to capture -> None
        self._capturing = set()
        self._lock = threading.Lock()  # the dicts, the set and the counters
        self._bytes = self._lookups = 0
        self._counts = Counter()  # hits, misses, busy, captures, evictions
        self._closed = False

    def serve(self, shapes: tuple, sources: list, targets: list) -> bool:
        """Serves a request of `shapes` from its graphs, its inputs from the host arrays of
        `sources` and its outputs into those of `targets` (located arrays.Tensors); False where
        it is to be served as before (see the module's docstring), counting nothing where its
        arrays are not the cache's to serve: GPU arrays, or page-locked inputs, which are
        copied straight to the GPU."""
        if any(t.host is None for t in (*sources, *targets)) or all(
            source.kind != PAGEABLE for source in sources
        ):
            return False
        entry = self._entries.get(shapes)
        if entry is None:
            entry = self._capture(shapes)
            if entry is None:
                return False
        if not entry.lock.acquire(blocking=False):
            with self._lock:
                self._count("busy")
            return False
        if entry.prepared is None:  # freed since it was looked up
            entry.lock.release()
            with self._lock:
                self._count("misses")
            return False
        try:
            for array, source in zip(entry.inputs, sources, strict=True):
                np.copyto(array, source.host, casting="no")
            entry.prepared.run()
            for target, output in zip(targets, entry.outputs, strict=True):
                np.copyto(target.host, output, casting="no")
        except BaseException:  # its graphs are not to be run again: freed, and the error raised
            with self._lock:
                self._count("misses")
                if self._entries.get(shapes) is entry:
                    del self._entries[shapes]
                    self._bytes -= entry.bytes
            self._close_entry(entry)
            raise
        entry.lock.release()
        with self._lock:
            self._count("hits")
            entry.requests += 1
            if shapes in self._entries:
                self._entries.move_to_end(shapes)
        return True

    def _capture(self, shapes: tuple):
        """The entry of `shapes`: one there already, or captured now where the shape has been
        sent `after` times before and there is room for it; None where the request is to be
        served as before."""
        with self._lock:
            if shapes in self._entries:  # captured by another thread since it was looked up
                return self._entries[shapes]
            if self._closed or shapes in self._refused:
                self._count("misses")
                return None
            if shapes in self._capturing:
                self._count("busy")
                return None
            count = self._seen.pop(shapes, 0) + 1  # this request included
            self._seen[shapes] = count
            if len(self._seen) > SHAPES_COUNTED:
                self._seen.popitem(last=False)
            if count <= self.after:
                self._count("misses")
                return None
            self._capturing.add(shapes)
        try:
            return self._capture_counted(shapes, count)
        finally:
            with self._lock:
                self._capturing.discard(shapes)

    def _capture_counted(self, shapes: tuple, count: int):
        """_capture() for a shape sent `count` times, marked as being captured."""
        try:
            needed = self._estimate(shapes)
            with self._lock:
                if needed > self.max_bytes:
                    return self._refuse(shapes)
                if not self._may_make_room(count, needed):
                    self._count("misses")
                    return None
            prepared = self._prepare(shapes)
        except Exception as error:  # e.g. no GPU memory left for another context
            if self._closed:  # the dispatcher closed meanwhile: nothing to try again
                with self._lock:
                    self._count("misses")
                return None
            log.warning(
                "no CUDA graphs for shapes %s (tried again after %d more requests): %s",
                shapes, RETRY_AFTER, error,
            )  # fmt: skip
            with self._lock:
                self._seen[shapes] = self.after - RETRY_AFTER  # RETRY_AFTER more, then again
                self._count("misses")
            return None
        try:
            entry = _Entry(
                prepared,
                [prepared.inputs[name] for name in self._input_names],
                [prepared.outputs[name] for name in self._output_names],
                needed,
                threading.Lock(),
                count - 1,  # the request that captures it counts once it is served
            )
        except BaseException:
            prepared.close()
            raise
        victims = []
        with self._lock:
            if not prepared.uses_graphs:
                kept = self._refuse(shapes)
            elif self._closed:
                kept = None
                self._count("misses")
            else:
                victims = self._make_room(needed, count)
                kept = victims is not None
                if kept:
                    self._seen.pop(shapes, None)
                    self._entries[shapes] = entry
                    self._bytes += needed
                    self._counts["captures"] += 1
                else:  # the shapes to free were running: to be sent as often again first
                    self._seen[shapes] = 0
                    self._count("misses")
        for victim in victims or ():
            self._close_entry(victim)
        if not kept:
            entry.lock.acquire()
            self._close_entry(entry)
            return None
        return entry

    def _refuse(self, shapes: tuple) -> None:
        """Remembers `shapes` as never to be captured, and counts its request a miss. Holds
        self._lock."""
        self._refused[shapes] = None
        if len(self._refused) > SHAPES_COUNTED:
            self._refused.popitem(last=False)
        self._seen.pop(shapes, None)
        self._count("misses")

    def _victims(self, count: int) -> list:
        """The entries that may be freed for a shape sent `count` times, least recently used
        first: those that served fewer than half as many requests, so that shapes sent about
        as often do not take each other's place. Holds self._lock."""
        return [(s, e) for s, e in self._entries.items() if 2 * e.requests < count]

    def _may_make_room(self, count: int, needed: int) -> bool:
        """Whether a shape sent `count` times, whose graphs hold `needed` bytes, may be captured:
        a place and the bytes are free, or victims (above) would free them. Holds self._lock."""
        victims = self._victims(count)
        if len(self._entries) >= self.max_shapes and not victims:
            return False
        freeable = sum(entry.bytes for _, entry in victims)
        return self.max_bytes - self._bytes + freeable >= needed

    def _make_room(self, needed: int, count: int):
        """Takes out the victims (above) that are not running until one more entry of `needed`
        bytes fits, and returns them, locked, for the caller to close outside self._lock;
        None, taking nothing, where they would free too little. Holds self._lock."""
        free, taken = self.max_bytes - self._bytes, []
        shapes_left = len(self._entries)
        for shapes, entry in self._victims(count):
            if free >= needed and shapes_left < self.max_shapes:
                break
            if entry.lock.acquire(blocking=False):  # released once closed
                taken.append(shapes)
                free += entry.bytes
                shapes_left -= 1
        if free < needed or shapes_left >= self.max_shapes:
            for shapes in taken:
                self._entries[shapes].lock.release()
            return None
        victims = [self._entries.pop(shapes) for shapes in taken]
        self._bytes -= sum(entry.bytes for entry in victims)
        self._counts["evictions"] += len(victims)
        return victims

    @staticmethod
    def _close_entry(entry: _Entry) -> None:
        """Closes an entry taken out of the cache, whose lock the caller holds, and releases
        the lock, whatever closing raises (it is logged). An entry closed already is left as it
        is: clear() waits on the lock of an entry whose failed run closes it."""
        prepared, entry.prepared = entry.prepared, None
        try:
            if prepared is not None:
                prepared.close()
        except Exception as error:
            log.warning("freeing the CUDA graphs of a shape failed: %s", error)
        finally:
            entry.lock.release()

    def _count(self, kind: str) -> None:
        """Counts a request as a hit, a miss or busy: once for each, and ages the counts every
        AGE_EVERY * graph_shapes requests, halving each shape's: a shape no longer sent gives
        way to those sent now. A count of `after` or less is not aged (nor is a failed capture's
        backoff), so that every shape sent `after` times is tried. Holds self._lock."""
        self._counts[kind] += 1
        self._lookups += 1
        if self._lookups < AGE_EVERY * self.max_shapes:
            return
        self._lookups = 0
        for entry in self._entries.values():
            entry.requests //= 2
        for shapes, count in self._seen.items():
            if count > self.after:
                self._seen[shapes] = max(self.after, count // 2)

    def stats(self) -> GraphStats:
        with self._lock:
            c = self._counts
            return GraphStats(c["hits"], c["misses"], c["captures"], c["evictions"], c["busy"],
                              len(self._entries), self._bytes)  # fmt: skip

    def clear(self) -> None:
        """Frees every shape's graphs, each once the run in progress on it is done; a shape is then
        served as before `after` times, and captured again."""
        with self._lock:
            entries = list(self._entries.values())
            self._entries.clear()
            self._bytes -= sum(entry.bytes for entry in entries)
        for entry in entries:
            entry.lock.acquire()
            self._close_entry(entry)

    def close(self) -> None:
        """Frees every shape's graphs, and captures no more (a capture in progress on another
        thread is freed when it ends)."""
        with self._lock:
            self._closed = True
        self.clear()

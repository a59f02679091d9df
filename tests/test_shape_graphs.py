"""The cache of graphs for the shapes a dispatcher sees again, its rules alone: when a shape is
captured, what is freed to make room, what is never captured, what a running shape does to
another thread's request, and its counters (CPU only). Its prepared requests here are plain
arrays copied input to output: the dispatcher's own, with TensorRT, are tested in
test_dispatch.py on the GPU."""

import threading
import time
from typing import ClassVar

import numpy as np
import pytest

from dynamic_shapes.arrays import PAGE_LOCKED, PAGEABLE, Tensor
from dynamic_shapes.serving.shape_graphs import RETRY_AFTER, GraphStats, ShapeGraphs

ITEM = (3,)
CONTEXT_BYTES = 1000


class Prepared:
    """A prepared request of one input and one output whose run copies the one to the other;
    `hold` (an Event), where set by a test, keeps run() from returning until it is set."""

    made: ClassVar[list] = []  # every one made since the last cache()

    def __init__(self, shapes, uses_graphs=True):
        ((batch, *_),) = shapes
        self.inputs = {"x": np.zeros((batch, *ITEM), np.float32)}
        self.outputs = {"y": np.zeros((batch, *ITEM), np.float32)}
        self.uses_graphs, self.own_contexts = uses_graphs, 1
        self.runs, self.closed, self.hold, self.running = 0, False, None, threading.Event()
        Prepared.made.append(self)

    def run(self):
        assert not self.closed
        self.running.set()
        if self.hold is not None:
            self.hold.wait(5)
        self.runs += 1
        np.copyto(self.outputs["y"], self.inputs["x"])
        return self.outputs

    def close(self):
        self.closed = True


def entry_bytes(batch) -> int:
    return CONTEXT_BYTES + 2 * batch * 3 * 4


def cache(prepare=Prepared, **limits) -> ShapeGraphs:
    Prepared.made = []

    def estimate(shapes):
        ((batch, *_),) = shapes
        return entry_bytes(batch)

    return ShapeGraphs(prepare, estimate, ["x"], ["y"], **limits)


def tensor(array, kind=PAGEABLE) -> Tensor:
    return Tensor(array.shape, array.dtype, host=array, kind=kind)


def request(graphs, batch, seed=0) -> tuple[bool, np.ndarray, np.ndarray]:
    """Serves a request of `batch` items: whether it was served from its graphs, its input and
    its output."""
    images = np.random.default_rng(seed).standard_normal((batch, *ITEM), np.float32)
    out = np.full((batch, *ITEM), np.nan, np.float32)
    return graphs.serve((images.shape,), [tensor(images)], [tensor(out)]), images, out


def test_a_shape_is_captured_at_its_second_request_and_served_from_then_on():
    graphs = cache()
    served, *_ = request(graphs, 4)
    assert not served and not Prepared.made
    for seed in range(3):
        served, images, out = request(graphs, 4, seed)
        assert served and np.array_equal(out, images)
    assert len(Prepared.made) == 1 and Prepared.made[0].runs == 3
    assert graphs.stats() == GraphStats(
        hits=3, misses=1, captures=1, evictions=0, busy=0, shapes=1, bytes=entry_bytes(4)
    )


def test_the_count_before_a_capture_is_the_callers():
    graphs = cache(after=3)
    assert [request(graphs, 2)[0] for _ in range(5)] == [False, False, False, True, True]


def test_a_shape_sent_more_often_takes_the_place_of_the_least_recently_used():
    graphs = cache(shapes=2)
    for batch in (1, 1, 2, 2, 1):  # 1 served 3 requests, 2 served 2, and 2 was used last
        request(graphs, batch)
    # 3 takes a place once sent more than twice as often as a shape in the cache served.
    assert [request(graphs, 3)[0] for _ in range(6)] == [False] * 4 + [True] * 2
    first, second, third = Prepared.made
    assert second.closed and not first.closed and not third.closed
    stats = graphs.stats()
    assert (stats.captures, stats.evictions, stats.shapes) == (3, 1, 2)
    assert stats.bytes == entry_bytes(1) + entry_bytes(3)
    assert request(graphs, 1)[0] and not request(graphs, 2)[0]


def test_shapes_sent_alike_keep_their_places_instead_of_taking_each_others():
    graphs = cache(shapes=2)
    for _ in range(200):
        for batch in (1, 2, 3, 4):
            request(graphs, batch)
    stats = graphs.stats()
    assert (stats.captures, stats.evictions) == (2, 0) and stats.hits == 2 * 199


def test_shapes_are_freed_to_fit_the_bytes():
    graphs = cache(max_bytes=entry_bytes(8) + entry_bytes(1))
    for batch in (8, 8, 1, 1):
        request(graphs, batch)
    # 4 does not fit beside them: it is captured once it may take the place of 8, the least
    # recently used, which is freed for it; nothing is captured before.
    assert [request(graphs, 4)[0] for _ in range(5)] == [False] * 4 + [True]
    big, small, medium = Prepared.made
    assert big.closed and not small.closed and not medium.closed
    assert graphs.stats().bytes == entry_bytes(1) + entry_bytes(4) <= graphs.max_bytes


def test_a_shape_too_large_alone_is_never_captured_and_one_without_graphs_neither():
    graphs = cache(max_bytes=entry_bytes(4))
    served = [request(graphs, 5)[0] for _ in range(4)]
    assert served == [False] * 4 and not Prepared.made  # known too large before any capture
    without = cache(prepare=lambda shapes: Prepared(shapes, uses_graphs=False))
    assert [request(without, 2)[0] for _ in range(4)] == [False] * 4
    assert len(Prepared.made) == 1 and Prepared.made[0].closed
    assert without.stats().misses == 4 and without.stats().captures == 0


def test_a_shape_that_could_not_be_captured_is_tried_again_much_later(caplog):
    calls = []

    def prepare(shapes):
        calls.append(shapes)
        if len(calls) == 1:
            raise RuntimeError("out of memory")
        return Prepared(shapes)

    graphs = cache(prepare=prepare)
    served = [request(graphs, 2)[0] for _ in range(RETRY_AFTER + 3)]
    assert served == [False] * (RETRY_AFTER + 2) + [True]
    assert len(calls) == 2 and "out of memory" in caplog.text


def test_a_shape_whose_graphs_fail_to_close_does_not_keep_the_others():
    graphs = cache(shapes=1)
    request(graphs, 1)
    request(graphs, 1)

    def fail():
        raise RuntimeError("cannot free")

    Prepared.made[0].close = fail
    assert [request(graphs, 2)[0] for _ in range(5)] == [False] * 4 + [True]
    graphs.close()  # returns: the failed entry's lock was released
    assert Prepared.made[1].closed and graphs.stats().shapes == 0


def test_page_locked_inputs_are_left_to_the_direct_copies():
    graphs = cache()
    images = np.zeros((2, *ITEM), np.float32)
    for out in (PAGE_LOCKED, PAGEABLE):
        locked = [tensor(images, PAGE_LOCKED)], [tensor(np.empty_like(images), out)]
        for _ in range(3):
            assert not graphs.serve((images.shape,), *locked)
    assert graphs.stats() == GraphStats(0, 0, 0, 0, 0, 0, 0) and not Prepared.made


def test_graphs_that_fail_to_run_raise_and_are_freed():
    graphs = cache()
    request(graphs, 2)
    request(graphs, 2)
    (prepared,) = Prepared.made

    def fail():
        raise RuntimeError("the graph failed")

    prepared.run = fail
    with pytest.raises(RuntimeError, match="the graph failed"):
        request(graphs, 2)
    assert prepared.closed and graphs.stats().shapes == graphs.stats().bytes == 0
    stats = graphs.stats()
    assert stats.hits + stats.misses + stats.busy == 3


def test_graphs_that_fail_to_run_while_being_freed_are_closed_once(caplog):
    graphs = cache()
    request(graphs, 2)
    request(graphs, 2)
    (prepared,) = Prepared.made
    hold, closes = threading.Event(), []

    def fail():
        prepared.running.set()
        hold.wait(5)
        raise RuntimeError("the graph failed")

    prepared.run, prepared.close = fail, lambda: closes.append(True)
    prepared.running.clear()
    errors = []

    def serve():
        try:
            request(graphs, 2)
        except RuntimeError as error:
            errors.append(error)

    failing = threading.Thread(target=serve)
    failing.start()
    assert prepared.running.wait(5)
    # free_graphs() takes the shape out and waits for its run, which then fails.
    freeing = threading.Thread(target=graphs.clear)
    freeing.start()
    while graphs.stats().shapes:
        time.sleep(0.001)
    hold.set()
    failing.join()
    freeing.join()
    assert len(errors) == 1 and closes == [True]
    assert "failed" not in caplog.text  # no second close, of what was freed already


def test_a_count_larger_than_ageing_keeps_is_still_reached():
    # Counts halve every 16 requests here; a shape's count up to graphs_after is not halved.
    graphs = cache(after=31, shapes=1)
    served = []
    for _ in range(40):
        served.append(request(graphs, 1)[0])
        request(graphs, 2)
    assert served.index(True) == 31


def test_a_running_shape_is_not_waited_for_nor_freed():
    graphs = cache(shapes=1)
    request(graphs, 2)
    request(graphs, 2)
    (prepared,) = Prepared.made
    prepared.hold = threading.Event()
    prepared.running.clear()  # set by the run of the request that captured it
    first = threading.Thread(target=request, args=(graphs, 2))
    first.start()
    try:
        assert prepared.running.wait(5)
        assert not request(graphs, 2)[0]  # the other thread runs it: served as before
        # 3, sent often enough to take 2's place, finds it running: not freed, 3 not kept.
        assert not any(request(graphs, 3)[0] for _ in range(5))
        assert not prepared.closed and Prepared.made[1].closed
    finally:
        prepared.hold.set()
        first.join()
    stats = graphs.stats()
    assert stats.busy == 1 and stats.hits + stats.misses + stats.busy == 1 + 2 + 1 + 5
    # 2 served 3 requests: 3 is kept once sent 7 times more, and 2 is freed for it.
    assert [request(graphs, 3)[0] for _ in range(7)] == [False] * 6 + [True]
    assert prepared.closed


def test_gpu_arrays_are_served_as_before_without_counting():
    graphs = cache()
    images = np.zeros((2, *ITEM), np.float32)
    on_gpu = Tensor(images.shape, images.dtype, host=None)
    host = tensor(images)
    for sources, targets in (([on_gpu], [host]), ([host], [on_gpu])):
        assert not graphs.serve((images.shape,), sources, targets)
    assert graphs.stats() == GraphStats(0, 0, 0, 0, 0, 0, 0)


def test_clear_frees_every_shape_and_forgets_how_often_it_was_sent():
    # benchmark.py's capturing requests rely on this: after clear(), a shape is served as
    # before `after` times again, and the request after those captures.
    graphs = cache(after=2)
    assert [request(graphs, 2)[0] for _ in range(4)] == [False, False, True, True]
    graphs.clear()
    assert Prepared.made[0].closed and graphs.stats().shapes == graphs.stats().bytes == 0
    assert [request(graphs, 2)[0] for _ in range(4)] == [False, False, True, True]
    assert len(Prepared.made) == 2 and graphs.stats().captures == 2


def test_close_frees_every_shape_and_captures_none_after():
    graphs = cache()
    for batch in (1, 1, 2, 2):
        request(graphs, batch)
    graphs.close()
    assert all(prepared.closed for prepared in Prepared.made)
    assert graphs.stats().shapes == graphs.stats().bytes == 0
    assert not request(graphs, 3)[0] and not request(graphs, 3)[0] and len(Prepared.made) == 2


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        ({"after": 0}, "graphs_after must be an integer of 1 or more, got 0"),
        ({"after": 1.5}, "graphs_after must be an integer of 1 or more, got 1.5"),
        ({"shapes": True}, "graph_shapes must be an integer of 1 or more, got True"),
        ({"max_bytes": -1}, "graph_bytes must be an integer of 0 or more, got -1"),
    ],
)
def test_limits_are_checked(limits, message):
    with pytest.raises(ValueError, match=message):
        cache(**limits)

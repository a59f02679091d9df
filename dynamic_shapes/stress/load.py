"""One process's share of the load: a Dispatcher, threads sending requests of random batch
sizes from pageable, page-locked or GPU memory, every output compared with its input, and the
memory figures before and after."""

import dataclasses
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from dynamic_shapes.gpu import page_locked_empty, uses_mps
from dynamic_shapes.serving.engine_io import engine_io
from dynamic_shapes.stress.memory_use import (
    MIB,
    device_memory_in_use,
    resident_host_memory,
    settled,
)
from dynamic_shapes.tensors import random_batch


class Memory:
    """Where the load's requests and outputs live: `images` (NumPy, the truth) copied into
    `kind` memory, and each thread's output array there; None for pageable outputs, which the
    dispatcher allocates per request, as it does by default."""

    def __init__(self, kind, dispatcher, images, max_batch):
        self.kind, self.host = kind, images
        self.to_host = np.asarray  # an output as NumPy, to check
        if kind == "pageable":
            self.requests = images
        elif kind == "page-locked":
            self.requests = page_locked_empty(images.shape, images.dtype)
            self.requests[:] = images
        else:
            cupy = gpu_arrays()
            self.requests, self.to_host = cupy.asarray(images), cupy.asnumpy
        self._dispatcher, self._max_batch = dispatcher, max_batch

    def outputs(self):
        """One thread's output array, for up to max_batch images."""
        if self.kind == "pageable":
            return None
        if self.kind == "page-locked":
            outputs = self._dispatcher.page_locked_outputs(self._max_batch)
            return outputs[self._dispatcher.output_names[0]]
        return gpu_arrays().empty_like(self.requests[: self._max_batch])


def gpu_arrays():
    import cupy

    return cupy


def send_requests(dispatcher, memory, threads, requests, max_batch, seed, every=None, report=None):
    """Each thread sends `requests` requests, windows of random size and place in `memory`'s
    images, and checks each output; `report(requests served)` is called every `every`
    requests. Returns (requests served, images served, errors, seconds in infer() over all
    threads, seconds checking outputs over all threads)."""
    errors, lock = [], threading.Lock()
    counts = [0, 0, 0.0, 0.0]
    images = memory.host

    def worker(thread):
        rng = random.Random(seed * 1000 + thread)
        out = memory.outputs()
        for _ in range(requests):
            batch = rng.randint(1, max_batch)
            start = rng.randrange(len(images) - batch + 1)
            window = slice(start, start + batch)
            sent = time.perf_counter()
            checked = None
            try:
                if out is None:
                    output = dispatcher.infer(memory.requests[window])
                else:
                    output = dispatcher.infer(memory.requests[window], out=out[:batch])
                checked = time.perf_counter()
                same = np.array_equal(memory.to_host(output), images[window])
                problem = None if same else f"batch {batch} differs"
            except Exception as error:
                problem = f"batch {batch}: {error!r}"
            done = time.perf_counter()
            with lock:
                counts[0] += 1
                counts[1] += batch
                if checked is not None:
                    counts[2] += checked - sent
                    counts[3] += done - checked
                if problem:
                    errors.append(problem)
                if report and counts[0] % every == 0:
                    report(counts[0])

    with ThreadPoolExecutor(threads) as pool:
        for future in [pool.submit(worker, thread) for thread in range(threads)]:
            future.result()
    return counts[0], counts[1], errors, counts[2], counts[3]


class NoBarrier:
    """The barrier of a load served by one process: nothing to wait for."""

    def wait(self):
        pass


def serve_load(engine, args, progress, barrier=None, seed=1) -> dict:
    """One process's share of the load: a Dispatcher, `args.threads` threads and its own memory
    figures. Processes sharing a load meet at `barrier` after the warm-up, so that they measure
    memory while all are idle and send their requests at the same time."""
    from dynamic_shapes.dispatch import Dispatcher

    barrier = barrier or NoBarrier()
    inputs, _ = engine_io(engine)
    images = random_batch(inputs[0], 4096 + args.max_batch, seed=1)
    total = args.threads * args.requests
    checkpoints = []  # (requests served, resident host MiB): growth that goes on is a leak

    def report(done):
        checkpoints.append((done, resident_host_memory() / MIB))
        progress(f"load: {done}/{total} requests" + (" per process" if args.processes > 1 else ""))

    with Dispatcher(
        engine,
        path=args.path,
        contexts_per_profile=args.contexts_per_profile,
        graphs_after=args.graphs_after,
    ) as dispatcher:
        memory = Memory(args.memory, dispatcher, images, args.max_batch)
        # Warm-up: thread stacks, allocator pools and the plan cache settle here.
        progress(f"load: warm-up, {args.threads} x {args.warmup} requests")
        send_requests(dispatcher, memory, args.threads, args.warmup, args.max_batch, seed=0)
        # Where the graphs of the shapes sent again are on, they hold memory by design, within
        # their limits: they are freed where memory is measured, so that what grows between is
        # what a leak is.
        dispatcher.free_graphs()
        barrier.wait()
        device_before, host_before = settled(device_memory_in_use), settled(resident_host_memory)
        barrier.wait()
        started, cpu_started = time.monotonic(), time.process_time()
        served, images_served, errors, in_infer, checking = send_requests(
            dispatcher,
            memory,
            args.threads,
            args.requests,
            args.max_batch,
            seed=seed,
            every=max(1, total // 10),
            report=report,
        )
        finished, cpu_seconds = time.monotonic(), time.process_time() - cpu_started
        graphs = dispatcher.graph_stats()
        dispatcher.free_graphs()
        barrier.wait()
        device_after, host_after = settled(device_memory_in_use), settled(resident_host_memory)
        barrier.wait()  # nobody frees its memory before all have measured theirs
    return {
        "requests_served": served,
        "images_served": images_served,
        "errors": errors,
        "started": started,
        "finished": finished,
        "cpu_seconds": cpu_seconds,
        "seconds_in_infer": in_infer,
        "seconds_checking": checking,
        "device_mib_before": device_before / MIB,
        "device_mib_after": device_after / MIB,
        "host_rss_mib_before": host_before / MIB,
        "host_rss_mib_after": host_after / MIB,
        "host_rss_mib_checkpoints": checkpoints,
        "graphs": None if graphs is None else dataclasses.asdict(graphs),
        "mps": uses_mps(),
    }

#!/usr/bin/env python3
"""
Puts the dispatcher under load and through many lifecycles, and checks that every output is
exact and that no memory leaks:

  load        THREADS threads each send REQUESTS requests of random batch sizes (1..MAX_BATCH);
              every output is compared with its input, and the GPU memory in use and the
              process's resident host memory are compared before and after (after a warm-up).
              With PROCESSES > 1, as many processes do so at once, each with its own Dispatcher
              and THREADS threads: one interpreter's threads take turns holding its lock
  lifecycle   a Dispatcher created, used and closed DISPATCHERS times, PREPARED prepared
              requests (each with its CUDA graphs) prepared, run and closed, and a TrtRunner
              over an owned context activated, used and deactivated ACTIVATIONS times; GPU
              memory compared (and reported, unchecked, for Polygraphy's own deactivate(),
              which leaves each activation's output buffers behind)

    python3 stress.py            # 8 x 10,000 requests, 200 dispatchers, 300 prepared requests
                                 # of each size, 1,000 activations
    python3 stress.py --quick    # the same checks, smaller, in well under a minute
    python3 stress.py --processes 4 --threads 4    # the load from 4 processes of 4 threads

Exits with 1 if any output differs or any request fails, if the GPU memory in use changes by
1 MiB or more, or if the resident host memory of a process grows by more than 16 MiB after the
warm-up.
"""

import gc
import importlib.util
import json
import multiprocessing
import os
import queue
import random
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from build_model import ensure_model
from dynamic_shapes import cli
from dynamic_shapes.engines import create_contexts, deactivate_runner, load_or_build_engine
from dynamic_shapes.files import write_atomically
from dynamic_shapes.gpu import device_memory, page_locked_empty, require_gpu_stack, uses_mps
from scenario import (
    ENGINE_PATH,
    INPUT_NAME,
    MODEL_PATH,
    OUTPUT_NAME,
    PROFILES,
    check_identity,
    random_images,
)

MIB = 1024.0**2
# Requests for one profile are served by this many contexts at once (profile sharing).
CONTEXTS_PER_PROFILE = 4
DEVICE_LEAK_LIMIT_MIB = 1.0
HOST_GROWTH_LIMIT_MIB = 16.0
# How long a load process that has reported may take to exit before it is killed.
PROCESS_EXIT_SECONDS = 60


def device_memory_in_use() -> int:
    free, total = device_memory()
    return total - free


def resident_host_memory() -> int:
    """The process's resident set size, from /proc (Linux)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def settled(measure):
    """Measures after the garbage collector has freed what it can."""
    gc.collect()
    return measure()


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
            return self._dispatcher.page_locked_outputs(self._max_batch)[OUTPUT_NAME]
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
    images = random_images(4096 + args.max_batch, seed=1)
    total = args.threads * args.requests
    checkpoints = []  # (requests served, resident host MiB): growth that goes on is a leak

    def report(done):
        checkpoints.append((done, resident_host_memory() / MIB))
        progress(f"load: {done}/{total} requests" + (" per process" if args.processes > 1 else ""))

    with Dispatcher(
        engine, path=args.path, contexts_per_profile=args.contexts_per_profile
    ) as dispatcher:
        memory = Memory(args.memory, dispatcher, images, args.max_batch)
        # Warm-up: thread stacks, allocator pools and the plan cache settle here.
        progress(f"load: warm-up, {args.threads} x {args.warmup} requests")
        send_requests(dispatcher, memory, args.threads, args.warmup, args.max_batch, seed=0)
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
        "mps": uses_mps(),
    }


ANOTHER_PROCESS_FAILED = "stopped because another load process failed"


def load_process(args, number, barrier, results, progress):
    """A load process: the engine loaded again, its own Dispatcher and threads; its share of
    the load, or what went wrong, goes to `results`."""
    try:
        from dynamic_shapes.engines import load_engine

        engine = load_engine(args.engine)
        share = serve_load(engine, args, progress or (lambda text: None), barrier, seed=1 + number)
    except threading.BrokenBarrierError:
        share = ANOTHER_PROCESS_FAILED
    except BaseException as error:
        barrier.abort()  # the others stop waiting for this one
        share = f"load process {number}: {type(error).__name__}: {error}"
    results.put(share)


def serve_load_in_processes(args, progress) -> list:
    """The load, sent by `args.processes` processes at once: each has its own interpreter, so
    the threads of one do not wait for the interpreter lock of another."""
    # A fresh interpreter each, not a fork: CUDA does not survive fork().
    spawn = multiprocessing.get_context("spawn")
    barrier, results = spawn.Barrier(args.processes), spawn.Queue()
    processes = [
        spawn.Process(
            target=load_process,
            args=(args, number, barrier, results, progress if number == 0 else None),
        )
        for number in range(args.processes)
    ]
    for process in processes:
        process.start()
    try:
        shares = []
        while len(shares) < len(processes):
            try:
                shares.append(results.get(timeout=1.0))
            except queue.Empty:
                crashed = [p.exitcode for p in processes if p.exitcode not in (None, 0)]
                if crashed:
                    barrier.abort()
                    raise RuntimeError(
                        f"a load process exited with code {crashed[0]} before it reported"
                    ) from None
    finally:
        for process in processes:
            process.join(timeout=PROCESS_EXIT_SECONDS)
            if process.is_alive():
                process.kill()
    failures = [share for share in shares if isinstance(share, str)]
    if failures:
        failures.sort(key=lambda failure: failure == ANOTHER_PROCESS_FAILED)
        raise RuntimeError(failures[0])
    return shares


def run_load(engine, args, progress) -> dict:
    if args.processes == 1:
        shares = [serve_load(engine, args, progress)]
    else:
        progress(f"load: starting {args.processes} processes")
        shares = serve_load_in_processes(args, progress)
    return combine_shares(shares, args)


def combine_shares(shares, args) -> dict:
    """The load's figures from each process's share: counts summed, time from the first start
    to the last finish, and the host memory of the process whose memory grew most (each
    process's own is in per_process). GPU memory is the device's, the same for all."""
    served = sum(share["requests_served"] for share in shares)
    errors = [error for share in shares for error in share["errors"]]
    seconds = max(share["finished"] for share in shares) - min(share["started"] for share in shares)
    grown = max(
        shares, key=lambda share: share["host_rss_mib_after"] - share["host_rss_mib_before"]
    )
    return {
        "processes": args.processes,
        "threads": args.threads,
        "requests_per_thread": args.requests,
        "max_batch": args.max_batch,
        "path": args.path,
        "memory": args.memory,
        "contexts_per_profile": args.contexts_per_profile,
        # Whether the processes' work ran on the GPU at once, through MPS, or in turns.
        "mps": all(share["mps"] for share in shares),
        "requests_served": served,
        "images_served": sum(share["images_served"] for share in shares),
        "errors": len(errors),
        "first_errors": errors[:5],
        "seconds": seconds,
        # CPU time of the senders' processes (user and system, every thread) over the load's
        # time: how many of the machine's cores the load kept busy.
        "cpu_cores_busy": sum(share["cpu_seconds"] for share in shares) / seconds,
        "cpu_cores": len(os.sched_getaffinity(0)),
        # Per request, the mean time in Dispatcher.infer() and in checking its outputs: with
        # more threads, what one request waits for grows.
        "infer_us_per_request": sum(s["seconds_in_infer"] for s in shares) / max(1, served) * 1e6,
        "check_us_per_request": sum(s["seconds_checking"] for s in shares) / max(1, served) * 1e6,
        "device_mib_before": shares[0]["device_mib_before"],
        "device_mib_after": shares[0]["device_mib_after"],
        "host_rss_mib_before": grown["host_rss_mib_before"],
        "host_rss_mib_after": grown["host_rss_mib_after"],
        "host_rss_mib_checkpoints": grown["host_rss_mib_checkpoints"],
        "per_process": [
            {
                key: share[key]
                for key in (
                    "requests_served",
                    "images_served",
                    "host_rss_mib_before",
                    "host_rss_mib_after",
                )
            }
            for share in shares
        ],
    }


def run_lifecycles(engine, args, progress) -> dict:
    from polygraphy.backend.trt import TrtRunner

    from dynamic_shapes.dispatch import Dispatcher

    requests = [random_images(batch, seed=batch) for batch in (1, 77, 128)]

    def dispatcher_lifecycle():
        with Dispatcher(engine) as dispatcher:
            for request in requests:
                check_identity(request, dispatcher.infer(request))

    def device_growth(lifecycle, count, label):
        lifecycle()  # the first one sets up what CUDA and TensorRT keep for the process
        before = settled(device_memory_in_use)
        for done in range(1, count + 1):
            lifecycle()
            if done % max(1, count // 10) == 0:
                progress(f"lifecycle: {label} {done}/{count}")
        return (settled(device_memory_in_use) - before) / MIB

    dispatchers_delta = device_growth(dispatcher_lifecycle, args.dispatchers, "dispatchers")

    with Dispatcher(engine) as dispatcher:

        def prepared_lifecycle():
            for request in requests:
                prepared = dispatcher.prepare(len(request))
                prepared.inputs[INPUT_NAME][:] = request
                check_identity(request, prepared.run()[OUTPUT_NAME])
                prepared.close()

        prepared_delta = device_growth(prepared_lifecycle, args.prepared, "prepared requests")

    # Only now, with every dispatcher closed: this context takes profile 0.
    (context,) = create_contexts(engine, 1)
    runner, request = TrtRunner(context), requests[0]

    def runner_lifecycle(deactivate):
        runner.activate()
        check_identity(request, runner.infer({INPUT_NAME: request})[OUTPUT_NAME])
        deactivate(runner)

    return {
        "dispatchers": args.dispatchers,
        "dispatchers_device_mib_delta": dispatchers_delta,
        "prepared": args.prepared,
        "prepared_batches": [len(request) for request in requests],
        "prepared_device_mib_delta": prepared_delta,
        "activations": args.activations,
        "activations_device_mib_delta": device_growth(
            lambda: runner_lifecycle(deactivate_runner), args.activations, "activations"
        ),
        # The same, with Polygraphy's own deactivate(): reported, not checked (see
        # dynamic_shapes.engines.deactivate_runner for why it keeps growing).
        "activations_plain_deactivate_device_mib_delta": device_growth(
            lambda: runner_lifecycle(TrtRunner.deactivate), args.activations, "activations"
        ),
    }


def verdicts(load, lifecycle) -> list:
    """(passed, line) for each check."""
    device = load["device_mib_after"] - load["device_mib_before"]
    host = load["host_rss_mib_after"] - load["host_rss_mib_before"]
    rate = load["requests_served"] / load["seconds"]
    senders = f"{load['threads']} threads"
    host_owner = "resident host memory"
    if load["processes"] > 1:
        senders = f"{load['processes']} processes{' under MPS' * load['mps']} x {senders}"
        host_owner = "resident host memory of the process whose memory grew most"
    return [
        (
            load["errors"] == 0,
            f"load: {senders} x {load['requests_per_thread']} requests of batch "
            f"1..{load['max_batch']} ({load['path']} path, {load['memory']} memory, "
            f"{load['contexts_per_profile']} context(s) per profile): {load['requests_served']} "
            f"served ({load['images_served']} images) in {load['seconds']:.1f} s, {rate:.0f} "
            f"requests/s, {load['images_served'] / load['seconds']:.0f} images/s; per request "
            f"{load['infer_us_per_request']:.0f} us in infer(), "
            f"{load['check_us_per_request']:.0f} us checking; CPU cores busy "
            f"{load['cpu_cores_busy']:.1f} of {load['cpu_cores']}; {load['errors']} errors",
        ),
        (
            abs(device) < DEVICE_LEAK_LIMIT_MIB,
            f"load: GPU memory in use {load['device_mib_before']:.1f} MiB before, "
            f"{load['device_mib_after']:.1f} MiB after ({device:+.1f} MiB)",
        ),
        (
            host <= HOST_GROWTH_LIMIT_MIB,
            f"load: {host_owner} {load['host_rss_mib_before']:.1f} MiB after warm-up, "
            f"{load['host_rss_mib_after']:.1f} MiB after the load ({host:+.1f} MiB)",
        ),
        (
            abs(lifecycle["dispatchers_device_mib_delta"]) < DEVICE_LEAK_LIMIT_MIB,
            f"lifecycle: {lifecycle['dispatchers']} dispatchers created, used and closed: GPU "
            f"memory in use {lifecycle['dispatchers_device_mib_delta']:+.1f} MiB",
        ),
        (
            abs(lifecycle["prepared_device_mib_delta"]) < DEVICE_LEAK_LIMIT_MIB,
            f"lifecycle: {lifecycle['prepared']} prepared requests of each batch size "
            f"{lifecycle['prepared_batches']} prepared, run and closed: GPU memory in use "
            f"{lifecycle['prepared_device_mib_delta']:+.1f} MiB",
        ),
        (
            abs(lifecycle["activations_device_mib_delta"]) < DEVICE_LEAK_LIMIT_MIB,
            f"lifecycle: {lifecycle['activations']} TrtRunner activations with an inference "
            f"each, deactivated with engines.deactivate_runner(): GPU memory in use "
            f"{lifecycle['activations_device_mib_delta']:+.1f} MiB",
        ),
    ]


def notes(lifecycle) -> list:
    """What is measured and reported, but not the project's to pass or fail."""
    return [
        f"lifecycle: the same {lifecycle['activations']} activations, deactivated with "
        f"Polygraphy's own TrtRunner.deactivate(): GPU memory in use "
        f"{lifecycle['activations_plain_deactivate_device_mib_delta']:+.1f} MiB "
        "(its output buffers are never freed)"
    ]


def parse_args(argv=None):
    parser = cli.make_parser(__file__, __doc__)
    counts = [
        ("--processes", 1, "processes sending requests, each with its own Dispatcher and threads"),
        ("--threads", 8, "threads sending requests at once, in each process"),
        ("--requests", 10_000, "requests per thread"),
        ("--max-batch", 300, "largest batch size of a request"),
        ("--dispatchers", 200, "dispatchers created, used and closed"),
        ("--prepared", 300, "prepared requests of each size prepared, run and closed"),
        ("--activations", 1000, "TrtRunner activations, each deactivation style"),
    ]
    for flag, default, help_ in counts:
        parser.add_argument(flag, type=cli.positive, default=default, help=f"{help_} (%(default)s)")
    parser.add_argument(
        "--warmup",
        type=cli.non_negative,
        default=1000,
        help="requests per thread before anything is measured (%(default)s)",
    )
    parser.add_argument("--path", choices=("lean", "runner"), default="lean")
    parser.add_argument(
        "--memory",
        choices=("pageable", "page-locked", "gpu"),
        default="pageable",
        help="where the load's requests and outputs live (lean path; gpu needs CuPy): %(default)s",
    )
    parser.add_argument(
        "--contexts-per-profile",
        type=cli.positive,
        default=CONTEXTS_PER_PROFILE,
        help="execution contexts serving each profile (%(default)s)",
    )
    parser.add_argument(
        "--engine",
        type=cli.output_file,
        default=ENGINE_PATH,
        help="the engine to serve, built and saved there when missing or stale "
        "(default: %(default)s)",
    )
    parser.add_argument("--json", type=cli.output_file, help="also write every figure here")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="8 x 250 requests after 8 x 100, 20 dispatchers, 30 prepared requests of each "
        "size, 100 activations",
    )
    args = parser.parse_args(argv)
    cli.check_engine_argument(parser, args.engine, MODEL_PATH)
    if args.memory != "pageable" and args.path == "runner":
        parser.error(f"--memory {args.memory} needs --path lean; the runner path is for NumPy")
    if args.memory == "gpu" and importlib.util.find_spec("cupy") is None:
        parser.error(
            "--memory gpu needs CuPy: python3 -m pip install -r requirements-gpu-arrays.txt"
        )
    if args.quick:
        args.requests, args.warmup, args.dispatchers, args.activations = 250, 100, 20, 100
        args.prepared = 30
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    return cli.run(args, lambda: run(args))


def run(args) -> int:
    ensure_model(MODEL_PATH)
    require_gpu_stack()
    engine, how = load_or_build_engine(MODEL_PATH, args.engine, PROFILES)
    print(how)
    progress = cli.Progress()
    load = run_load(engine, args, progress)
    lifecycle = run_lifecycles(engine, args, progress)
    progress.done()
    results = verdicts(load, lifecycle)
    for passed, line in results:
        print(f"{'PASS' if passed else 'FAIL'}  {line}")
    for line in notes(lifecycle):
        print(f"NOTE  {line}")
    if args.json:
        write_atomically(
            args.json, json.dumps({"load": load, "lifecycle": lifecycle}, indent=2).encode()
        )
    return 0 if all(passed for passed, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())

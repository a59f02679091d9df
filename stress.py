#!/usr/bin/env python3
"""
Puts the dispatcher under load and through many lifecycles, and checks that every output is
exact and that no memory leaks:

  load        THREADS threads each send REQUESTS requests of random batch sizes (1..MAX_BATCH);
              every output is compared with its input, and the GPU memory in use and the
              process's resident host memory are compared before and after (after a warm-up)
  lifecycle   a Dispatcher created and closed DISPATCHERS times, and a TrtRunner over an owned
              context activated, used and deactivated ACTIVATIONS times; GPU memory compared

    python3 stress.py            # 8 x 10,000 requests, 200 dispatchers, 1,000 activations
    python3 stress.py --quick    # the same checks, smaller, in well under a minute

Exits with 1 if any output differs or any request fails, if the GPU memory in use changes by
1 MiB or more, or if resident host memory grows by more than 16 MiB after the warm-up.
"""

import argparse
import gc
import json
import os
import random
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from scenario import (
    ENGINE_PATH,
    MODEL_PATH,
    PROFILES,
    GpuStackMissing,
    create_contexts,
    load_or_build_engine,
    random_images,
    require_gpu_stack,
    write_atomically,
)

MIB = 1024.0**2
DEVICE_LEAK_LIMIT_MIB = 1.0
HOST_GROWTH_LIMIT_MIB = 16.0


def device_memory_in_use() -> int:
    from dispatch import check_cuda, cudart

    free, total = check_cuda(cudart().cudaMemGetInfo(), "cudaMemGetInfo")
    return total - free


def resident_host_memory() -> int:
    """The process's resident set size, from /proc (Linux)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def settled(measure):
    """Measures after the garbage collector has freed what it can."""
    gc.collect()
    return measure()


def send_requests(dispatcher, images, threads, requests, max_batch, seed, progress=None):
    """Each thread sends `requests` requests, windows of random size and place in `images`,
    and checks each output. Returns (requests served, images served, errors)."""
    errors, lock = [], threading.Lock()
    counts = [0, 0]

    def worker(thread):
        rng = random.Random(seed * 1000 + thread)
        for _ in range(requests):
            batch = rng.randint(1, max_batch)
            start = rng.randrange(len(images) - batch + 1)
            request = images[start : start + batch]
            try:
                output = dispatcher.infer(request)
                problem = None if np.array_equal(output, request) else f"batch {batch} differs"
            except Exception as error:
                problem = f"batch {batch}: {error!r}"
            with lock:
                counts[0] += 1
                counts[1] += batch
                if problem:
                    errors.append(problem)
                if progress and counts[0] % 1000 == 0:
                    progress(counts[0])

    with ThreadPoolExecutor(threads) as pool:
        for future in [pool.submit(worker, thread) for thread in range(threads)]:
            future.result()
    return counts[0], counts[1], errors


def run_load(engine, args) -> dict:
    from dispatch import Dispatcher

    images = random_images(4096 + args.max_batch, seed=1)
    total = args.threads * args.requests
    with Dispatcher(engine, path=args.path) as dispatcher:
        # Warm-up: thread stacks, allocator pools and the plan cache settle here.
        send_requests(dispatcher, images, args.threads, args.warmup, args.max_batch, seed=0)
        device_before, host_before = settled(device_memory_in_use), settled(resident_host_memory)
        start = time.monotonic()
        served, images_served, errors = send_requests(
            dispatcher,
            images,
            args.threads,
            args.requests,
            args.max_batch,
            seed=1,
            progress=lambda done: print(
                f"\rload: {done}/{total} requests", end="", file=sys.stderr, flush=True
            ),
        )
        seconds = time.monotonic() - start
        print(file=sys.stderr)
        device_after, host_after = settled(device_memory_in_use), settled(resident_host_memory)
    return {
        "threads": args.threads,
        "requests_per_thread": args.requests,
        "max_batch": args.max_batch,
        "path": args.path,
        "requests_served": served,
        "images_served": images_served,
        "errors": len(errors),
        "first_errors": errors[:5],
        "seconds": seconds,
        "device_mib_before": device_before / MIB,
        "device_mib_after": device_after / MIB,
        "host_rss_mib_before": host_before / MIB,
        "host_rss_mib_after": host_after / MIB,
    }


def run_lifecycles(engine, args) -> dict:
    from polygraphy.backend.trt import TrtRunner

    from dispatch import Dispatcher

    requests = [random_images(batch, seed=batch) for batch in (1, 77, 128)]

    def dispatcher_lifecycle():
        with Dispatcher(engine) as dispatcher:
            for request in requests:
                if not np.array_equal(dispatcher.infer(request), request):
                    raise AssertionError(f"batch {len(request)} differs")

    dispatcher_lifecycle()  # the first one sets up what CUDA and TensorRT keep for the process
    before = settled(device_memory_in_use)
    for done in range(1, args.dispatchers + 1):
        dispatcher_lifecycle()
        print(f"\rlifecycle: {done}/{args.dispatchers} dispatchers", end="", file=sys.stderr)
    print(file=sys.stderr)
    dispatchers_delta = settled(device_memory_in_use) - before

    (context,) = create_contexts(engine, 1)
    runner = TrtRunner(context)
    request = requests[0]

    def runner_lifecycle():
        with runner:
            if not np.array_equal(runner.infer({"X": request})["Y"], request):
                raise AssertionError("TrtRunner output differs")

    runner_lifecycle()
    before = settled(device_memory_in_use)
    for _ in range(args.activations):
        runner_lifecycle()
    activations_delta = settled(device_memory_in_use) - before
    return {
        "dispatchers": args.dispatchers,
        "dispatchers_device_mib_delta": dispatchers_delta / MIB,
        "activations": args.activations,
        "activations_device_mib_delta": activations_delta / MIB,
    }


def verdicts(load, lifecycle) -> list:
    """(passed, line) for each check."""
    device = load["device_mib_after"] - load["device_mib_before"]
    host = load["host_rss_mib_after"] - load["host_rss_mib_before"]
    rate = load["requests_served"] / load["seconds"]
    return [
        (
            load["errors"] == 0,
            f"load: {load['threads']} threads x {load['requests_per_thread']} requests of batch "
            f"1..{load['max_batch']} ({load['path']} path): {load['requests_served']} served "
            f"({load['images_served']} images) in {load['seconds']:.1f} s, {rate:.0f} requests/s;"
            f" {load['errors']} errors",
        ),
        (
            abs(device) < DEVICE_LEAK_LIMIT_MIB,
            f"load: GPU memory in use {load['device_mib_before']:.1f} MiB before, "
            f"{load['device_mib_after']:.1f} MiB after ({device:+.1f} MiB)",
        ),
        (
            host <= HOST_GROWTH_LIMIT_MIB,
            f"load: resident host memory {load['host_rss_mib_before']:.1f} MiB after warm-up, "
            f"{load['host_rss_mib_after']:.1f} MiB after the load ({host:+.1f} MiB)",
        ),
        (
            abs(lifecycle["dispatchers_device_mib_delta"]) < DEVICE_LEAK_LIMIT_MIB,
            f"lifecycle: {lifecycle['dispatchers']} dispatchers created, used and closed: GPU "
            f"memory in use {lifecycle['dispatchers_device_mib_delta']:+.1f} MiB",
        ),
        (
            abs(lifecycle["activations_device_mib_delta"]) < DEVICE_LEAK_LIMIT_MIB,
            f"lifecycle: {lifecycle['activations']} TrtRunner activations with an inference "
            f"each: GPU memory in use {lifecycle['activations_device_mib_delta']:+.1f} MiB",
        ),
    ]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--requests", type=int, default=10_000, help="per thread")
    parser.add_argument("--warmup", type=int, default=200, help="requests per thread, untimed")
    parser.add_argument("--max-batch", type=int, default=300)
    parser.add_argument("--path", choices=("lean", "runner"), default="lean")
    parser.add_argument("--dispatchers", type=int, default=200)
    parser.add_argument("--activations", type=int, default=1000)
    parser.add_argument("--json", type=Path, help="also write every figure here")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="8 x 250 requests, 20 dispatchers, 100 activations",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.requests, args.warmup, args.dispatchers, args.activations = 250, 50, 20, 100
    for name in ("threads", "requests", "max_batch", "dispatchers", "activations"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be 1 or more")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        require_gpu_stack()
    except GpuStackMissing as missing:
        for problem in str(missing).splitlines():
            print(f"stress.py: {problem}", file=sys.stderr)
        return 1
    engine, how = load_or_build_engine(MODEL_PATH, ENGINE_PATH, PROFILES)
    print(how)
    load = run_load(engine, args)
    lifecycle = run_lifecycles(engine, args)
    results = verdicts(load, lifecycle)
    for passed, line in results:
        print(f"{'PASS' if passed else 'FAIL'}  {line}")
    if args.json:
        write_atomically(
            args.json, json.dumps({"load": load, "lifecycle": lifecycle}, indent=2).encode()
        )
    return 0 if all(passed for passed, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())

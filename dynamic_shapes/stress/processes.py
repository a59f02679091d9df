"""The load from one process or several at once, each with its own interpreter and Dispatcher,
and the figures of their shares combined."""

import multiprocessing
import os
import queue
import threading

from dynamic_shapes.stress.load import serve_load

# How long a load process that has reported may take to exit before it is killed.
PROCESS_EXIT_SECONDS = 60
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
        "graphs_after": args.graphs_after,  # None: no graphs of the shapes sent again
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
                    "graphs",  # what the graphs of the shapes sent again did (graph_stats)
                )
            }
            for share in shares
        ],
    }

#!/usr/bin/env python3
"""
Puts a served identity model under load with Triton's own client, as perf_analyzer does: for
each concurrency, that many clients, each in a process of its own (one Python process's
threads stop at a few thousand requests per second, whatever the server can do), send
requests back to back for a while. Every response is checked bit for bit against its request.

    python3 serve.py &                                   # then:
    python3 loadgen.py                                   # batch 1 at concurrency 1, 4, 16, 64
    python3 loadgen.py --batch-sizes 1,4,13,32,77,128,300 --concurrency 16

Reports, per concurrency, requests/s, images/s, p50/p90/p99 latency, and from the server's
metrics (nv_inference_request_success over nv_inference_exec_count) how many requests each
model execution served: what the dynamic batcher gathered. Like perf_analyzer, it splits the
server's average request time into queue and compute (input, infer, output); what the client
measures beyond that is the client's own work and the network stack.
"""

import argparse
import json
import multiprocessing
import os
import random
import re
import signal
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

from dynamic_shapes import cli, options
from dynamic_shapes.environment import environment
from dynamic_shapes.files import write_atomically
from dynamic_shapes.triton import check_model_name
from scenario import IMAGE_SHAPE, INPUT_NAME, OUTPUT_NAME

# Each level's clients start (a process each, with its imports), then warm up; timing starts
# after both.
STARTUP_S = 5.0
WARMUP_S = 1.0
PORTS = ("--grpc-port", "--http-port", "--metrics-port")
NOT_MEASURED = "not measured"


def concurrency_list(text) -> list:
    return [cli.positive(part) for part in text.split(",")]


def process_id(text) -> int:
    """The id of a running process, whose memory can be read from /proc (Linux)."""
    pid = cli.positive(text)
    if not Path(f"/proc/{pid}/statm").is_file():
        raise argparse.ArgumentTypeError(f"no process {pid} is running")
    return pid


def parse_args(argv=None):
    parser = cli.make_parser(__file__, __doc__)
    options.add_host(parser, "(%(default)s)")
    parser.add_argument("--protocol", choices=("grpc", "http"), default="grpc")
    options.add_ports(parser, PORTS)
    parser.add_argument(
        "--model", type=cli.checked(check_model_name), default="dynamic_identity",
        help="(%(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--concurrency",
        type=concurrency_list,
        default=[1, 4, 16, 64],
        help="clients at once, one process each; comma-separated for a sweep (1,4,16,64)",
    )
    parser.add_argument(
        "--batch-sizes",
        type=concurrency_list,
        default=[1],
        help="each request's batch, drawn at random from these (1)",
    )
    parser.add_argument(
        "--seconds",
        type=cli.seconds,
        default=10.0,
        help="measured time per concurrency (%(default)s)",
    )
    parser.add_argument(
        "--server-pid",
        type=process_id,
        help="also report the resident memory of this process and its children before and "
        "after each concurrency (serve.py prints tritonserver's)",
    )
    options.add_json(parser, "also write every figure here")
    args = parser.parse_args(argv)
    options.check_ports(parser, args, PORTS)
    return args


def client(url, protocol, model, batch_sizes, seed, start_at, stop_at, results):
    """One client: requests back to back until `stop_at`, those sent after `start_at` timed.
    Puts (latencies in ns and images of the timed requests that succeeded, the first errors,
    the number of errors) on `results`."""
    if protocol == "grpc":
        import tritonclient.grpc as triton
    else:
        import tritonclient.http as triton
    connection = triton.InferenceServerClient(url)
    rng, latencies, images, errors = random.Random(seed), [], 0, []
    requests = {batch: request_for(triton, batch, seed) for batch in batch_sizes}
    while time.time() < stop_at:
        batch = rng.choice(batch_sizes)
        data, inputs, outputs = requests[batch]
        timed = time.time() >= start_at  # sent after the warm-up
        begin = time.perf_counter_ns()
        try:
            response = connection.infer(model, inputs, outputs=outputs)
            elapsed = time.perf_counter_ns() - begin
            if not np.array_equal(response.as_numpy(OUTPUT_NAME), data):
                errors.append(f"batch {batch}: {OUTPUT_NAME} differs from {INPUT_NAME}")
                continue
        except Exception as error:  # the server's refusal, or the connection's failure
            errors.append(f"batch {batch}: {error}")
            continue
        # Only a request served right counts: a refusal is quick, and no throughput.
        if timed:
            latencies.append(elapsed)
            images += batch
    results.put((latencies, images, errors[:5], len(errors)))


def request_for(triton, batch, seed):
    data = np.random.default_rng(seed * 1000 + batch).standard_normal(
        (batch, *IMAGE_SHAPE), dtype=np.float32
    )
    tensor = triton.InferInput(INPUT_NAME, list(data.shape), "FP32")
    tensor.set_data_from_numpy(data)
    return data, [tensor], [triton.InferRequestedOutput(OUTPUT_NAME)]


METRIC = re.compile(r"^(nv_\w+)\{([^}]*)\} (\S+)$")
MODEL_COUNTERS = ("nv_inference_request_success", "nv_inference_exec_count")
# Cumulative microseconds over the model's successful requests (a batched execution's time
# counts once for each of its requests), in perf_analyzer's split of a request's server time.
SERVER_TIMES = {
    "server_us": "nv_inference_request_duration_us",
    "queue_us": "nv_inference_queue_duration_us",
    "compute_input_us": "nv_inference_compute_input_duration_us",
    "compute_infer_us": "nv_inference_compute_infer_duration_us",
    "compute_output_us": "nv_inference_compute_output_duration_us",
}
GPU_MEMORY = "nv_gpu_memory_used_bytes"  # per GPU; Triton reports it where NVML works


def model_counters(metrics_text: str, model: str) -> dict:
    """{counter: value} for the model's counters (summed over its versions) and the GPU memory
    in use (summed over the GPUs; None where the server reports none), from Prometheus text."""
    counters = dict.fromkeys((*MODEL_COUNTERS, *SERVER_TIMES.values()), 0.0)
    counters[GPU_MEMORY] = None
    for line in metrics_text.splitlines():
        match = METRIC.match(line)
        if not match or match.group(1) not in counters:
            continue
        if match.group(1) == GPU_MEMORY or f'model="{model}"' in match.group(2):
            counters[match.group(1)] = (counters[match.group(1)] or 0.0) + float(match.group(3))
    return counters


def resident_memory(pid: int) -> int | None:
    """Bytes resident of a process and its children (the server and its Python backend's
    stubs), from /proc (Linux); None if the process is not running."""
    if not Path(f"/proc/{pid}/statm").is_file():
        return None
    total, pending = 0, [pid]
    while pending:
        current = pending.pop()
        try:
            with open(f"/proc/{current}/statm") as statm:
                total += int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as children:
                    pending += [int(child) for child in children.read().split()]
        except OSError:  # gone meanwhile
            continue
    return total


def read_counters(args) -> dict:
    url = f"http://{cli.url_host(args.host)}:{args.metrics_port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return model_counters(response.read().decode(), args.model)
    except OSError as error:  # URLError and the connection's own errors
        raise RuntimeError(
            f"no Triton metrics at {url} ({error}); start the server first (serve.py)"
        ) from None


def server_times(before: dict, after: dict) -> dict:
    """The server's average microseconds per request over a level, in perf_analyzer's split."""
    served = after["nv_inference_request_success"] - before["nv_inference_request_success"]
    return {
        key: (after[counter] - before[counter]) / served if served else 0.0
        for key, counter in SERVER_TIMES.items()
    }


def summarize(level, latencies_ns, images, seconds, errors, per_execution, server) -> dict:
    """One concurrency's figures, from the requests that succeeded (`latencies_ns`, `images`),
    with the number that failed; `server` holds the server's times and the memory readings
    before and after (None where not measured). No request served: no latencies (None)."""
    latencies = np.asarray(latencies_ns, dtype=np.float64) / 1000.0
    p50, p90, p99 = (
        (float(p) for p in np.percentile(latencies, [50, 90, 99]))
        if len(latencies)
        else (None, None, None)
    )
    return {
        "concurrency": level,
        "requests": len(latencies),
        "requests_per_s": len(latencies) / seconds,
        "images_per_s": images / seconds,
        "p50_us": p50,
        "p90_us": p90,
        "p99_us": p99,
        "requests_per_execution": per_execution,
        "errors": errors,
        **server,
    }


def report(levels: list) -> str:
    header = ["concurrency", "requests/s", "images/s", "p50 us", "p90 us", "p99 us",
              "server us", "queue us", "compute us", "requests/exec", "errors", "GPU MiB +/-",
              "server RSS MiB +/-"]  # fmt: skip
    rows = [
        [str(r["concurrency"]), f"{r['requests_per_s']:.0f}", f"{r['images_per_s']:.0f}",
         *(figure(r[key]) for key in ("p50_us", "p90_us", "p99_us")),
         f"{r['server_us']:.0f}", f"{r['queue_us']:.0f}",
         f"{r['compute_input_us'] + r['compute_infer_us'] + r['compute_output_us']:.0f}",
         f"{r['requests_per_execution']:.2f}", str(r["errors"]),
         change(r, "gpu_memory_mib"), change(r, "server_rss_mib")]
        for r in levels
    ]  # fmt: skip
    widths = [max(len(c) for c in column) for column in zip(header, *rows, strict=True)]
    lines = [
        "  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in [header, *rows]
    ]
    return "\n".join(lines)


def figure(value) -> str:
    return "-" if value is None else f"{value:.0f}"


def change(level: dict, what: str) -> str:
    """'+1.0' for a reading's growth over the level, '-' where it was not asked for, 'not
    measured' where it could not be read."""
    if f"{what}_before" not in level:
        return "-"
    before, after = level[f"{what}_before"], level[f"{what}_after"]
    if before is None or after is None:
        return NOT_MEASURED
    return f"{after - before:+.1f}"


def not_measured(args, levels: list) -> list:
    """What was asked for and could not be measured, a phrase each."""
    missing = []
    if any(None in (r["gpu_memory_mib_before"], r["gpu_memory_mib_after"]) for r in levels):
        missing.append(f"GPU memory in use (the server's metrics have no {GPU_MEMORY})")
    if args.server_pid and any(
        None in (r["server_rss_mib_before"], r["server_rss_mib_after"]) for r in levels
    ):
        missing.append(f"server RSS (no process {args.server_pid} to read, --server-pid)")
    return missing


def mib(value) -> float | None:
    return None if value is None else value / 2**20


def check_model_ready(args, url) -> None:
    """RuntimeError unless the server at `url` has the model ready: every request would fail."""
    if args.protocol == "grpc":
        import tritonclient.grpc as triton
    else:
        import tritonclient.http as triton
    try:
        ready = triton.InferenceServerClient(url).is_model_ready(args.model)
    except Exception as error:  # the connection's failure, in the protocol's own words
        raise RuntimeError(f"no Triton server answers {args.protocol} at {url} ({error})") from None
    if not ready:
        raise RuntimeError(f"the server at {url} has no model {args.model} ready (--model)")


def start_clients(clients) -> None:
    """Starts the client processes with Ctrl-C (SIGINT) blocked, as they inherit it: a Ctrl-C,
    which the terminal sends to every process of the group, is this process's to handle (it
    stops them), rather than a traceback from each of them."""
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        for process in clients:
            process.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)  # a Ctrl-C meanwhile lands here


def measure_level(args, url, context, level) -> tuple[dict, list]:
    """One concurrency: its figures, and the first errors its clients met."""
    before = read_counters(args)
    rss_before = resident_memory(args.server_pid) if args.server_pid else None
    results = context.Queue()
    start_at = time.time() + STARTUP_S + WARMUP_S
    stop_at = start_at + args.seconds
    clients = [
        context.Process(
            target=client,
            args=(url, args.protocol, args.model, args.batch_sizes, seed, start_at, stop_at,
                  results),
        )
        for seed in range(level)
    ]  # fmt: skip
    try:
        start_clients(clients)
        gathered = [results.get(timeout=args.seconds + 120) for _ in clients]
        for process in clients:
            process.join()
    finally:
        for process in clients:  # after Ctrl-C or a failure: none left running
            if process.is_alive():
                process.terminate()
                process.join()
    after = read_counters(args)
    server = {
        **server_times(before, after),
        "gpu_memory_mib_before": mib(before[GPU_MEMORY]),
        "gpu_memory_mib_after": mib(after[GPU_MEMORY]),
    }
    if args.server_pid:
        server["server_rss_mib_before"] = mib(rss_before)
        server["server_rss_mib_after"] = mib(resident_memory(args.server_pid))
    executions = after["nv_inference_exec_count"] - before["nv_inference_exec_count"]
    served = after["nv_inference_request_success"] - before["nv_inference_request_success"]
    latencies = [ns for latencies, _, _, _ in gathered for ns in latencies]
    errors = sum(count for *_, count in gathered)
    first_errors = [line for _, _, first, _ in gathered for line in first]
    figures = summarize(
        level, latencies, sum(g[1] for g in gathered), args.seconds, errors,
        served / executions if executions else 0.0, server,
    )  # fmt: skip
    return figures, first_errors


def run(args) -> int:
    port = args.grpc_port if args.protocol == "grpc" else args.http_port
    url = f"{cli.url_host(args.host)}:{port}"
    read_counters(args)  # the server's metrics answer, before any client starts
    check_model_ready(args, url)
    context = multiprocessing.get_context("spawn")
    levels, failures = [], []
    try:
        for level in args.concurrency:
            figures, first_errors = measure_level(args, url, context, level)
            levels.append(figures)
            failures += first_errors
            # A table line per concurrency as it is measured, under one header.
            table = report(levels).splitlines()
            print("\n".join(table if len(levels) == 1 else table[-1:]), flush=True)
    finally:
        # What was measured is written, also when a level fails or Ctrl-C stops the run.
        if args.json and levels:
            figures = {
                "model": args.model,
                "protocol": args.protocol,
                "complete": len(levels) == len(args.concurrency),
                "levels": levels,
                # This machine's: the server's too, where both run on one machine.
                "environment": environment(),
            }
            write_atomically(args.json, json.dumps(figures, indent=2).encode())
    for line in failures[:5]:
        print(f"error: {line}", file=sys.stderr)
    missing = not_measured(args, levels)
    if missing:
        cli.print_error(args.prog, f"{NOT_MEASURED}: {'; '.join(missing)}")
    return 1 if failures or missing else 0


def main(argv=None) -> int:
    return cli.main(parse_args, run, argv)


if __name__ == "__main__":
    sys.exit(main())

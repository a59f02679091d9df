#!/usr/bin/env python3
"""
Measures the trade-offs the walkthrough states, on this GPU, for the scenario's model or yours:

  1. narrow vs wide profiles      latency on the three-profile engine vs one wide profile (1..128)
  2. shape switching              alternating batch sizes in one profile vs a fixed size
  3. profile switching            one context switching profiles vs one context per profile
  4. memory                       what the engine and each execution context take on the GPU
  5. runner activation            a TrtRunner over an owned context vs one that creates its own
  6. the cost of convenience      TrtRunner.infer, the dispatcher's paths and bare TensorRT loops

Every latency is one request, end to end: host-to-device copy, inference, device-to-host copy
and a synchronize before the clock is read. Variants compared with each other run in
alternating rounds, so that drift in the machine's speed affects them alike.

    python3 benchmark.py                      # dynamic_identity.onnx, about 1-2 minutes
    python3 benchmark.py --quick              # a smoke run, well under 30 s
    python3 benchmark.py --model yours.onnx --json yours.json --plot yours.png
"""

import argparse
import cProfile
import ctypes
import datetime
import json
import platform
import pstats
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np

from dispatch import (
    Dispatcher,
    PinnedBuffer,
    check_cuda,
    choose_profile,
    cudart,
    profile_batch_ranges,
)
from scenario import (
    MODEL_PATH,
    PROFILES,
    GpuStackMissing,
    Progress,
    TensorSpec,
    batch_range,
    gpu_name,
    print_error,
    read_model_input,
    require_gpu_stack,
)

SECTIONS = (
    "narrow_vs_wide",
    "shape_switching",
    "profile_switching",
    "memory",
    "runner_activation",
    "convenience",
)
NARROW_VS_WIDE_BATCHES = (1, 4, 16, 32, 128)
CONVENIENCE_BATCHES = (1, 4, 32, 128)
WIDE_RANGE = (1, 4, 128)  # min, opt, max batch of the single wide profile
BASELINE = "bare loop, page-locked"


# ---------------------------------------------------------------------------------------------
# The model's input and the profiles for it (no GPU needed)


def profile_for(spec: TensorSpec, low: int, opt: int, high: int):
    from polygraphy.backend.trt import Profile

    return Profile().add(
        spec.name,
        min=(low, *spec.item_shape),
        opt=(opt, *spec.item_shape),
        max=(high, *spec.item_shape),
    )


def scenario_profiles(spec: TensorSpec) -> dict:
    """The scenario's three use cases, with their batch ranges, for this input."""
    return {name: profile_for(spec, *batch_range(p)) for name, p in PROFILES.items()}


def sample_batch(spec: TensorSpec, batch: int) -> np.ndarray:
    rng = np.random.default_rng(batch)
    shape = (batch, *spec.item_shape)
    if np.issubdtype(spec.dtype, np.floating):
        return rng.standard_normal(shape).astype(spec.dtype)
    return rng.integers(0, 2, shape).astype(spec.dtype)


# ---------------------------------------------------------------------------------------------
# Statistics and reports (no GPU needed)


def summarize(samples_ns) -> dict:
    """Median, p90 and p99 of samples in nanoseconds, in microseconds."""
    samples = np.asarray(samples_ns, dtype=np.float64) / 1000.0
    median, p90, p99 = np.percentile(samples, [50, 90, 99])
    return {"median_us": median, "p90_us": p90, "p99_us": p99, "samples": len(samples)}


def latency_rows(stats: dict, baseline: str) -> list:
    """Table rows of latency statistics, with each median's ratio to the baseline's."""
    rows = []
    for variant, s in stats.items():
        ratio = s["median_us"] / stats[baseline]["median_us"]
        rows.append(
            [variant, f"{s['median_us']:.1f}", f"{s['p90_us']:.1f}", f"{s['p99_us']:.1f}",
             f"{ratio:.2f}x"]
        )  # fmt: skip
    return rows


def format_table(title: str, header: list, rows: list) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]

    def line(cells):
        first, *rest = cells
        return "  ".join(
            [str(first).ljust(widths[0])]
            + [str(c).rjust(w) for c, w in zip(rest, widths[1:], strict=True)]
        )

    rule = "-" * len(line(header))
    return "\n".join([f"=== {title}", line(header), rule, *map(line, rows), ""])


LATENCY_HEADER = ["variant", "median us", "p90 us", "p99 us", "vs first"]


def report(results: dict) -> str:
    """The human-readable tables for whatever sections the results hold."""
    out = []
    if "narrow_vs_wide" in results:
        for batch, stats in results["narrow_vs_wide"]["by_batch"].items():
            out.append(
                format_table(
                    f"1. Narrow vs wide profiles, batch {batch}: per-request latency",
                    LATENCY_HEADER,
                    latency_rows(stats, "three narrow profiles"),
                )
            )
    for key, title, what in [
        ("shape_switching", "2. Shape switching inside the dynamic-batching profile", "shape"),
        (
            "profile_switching",
            "3. Low-latency and offline requests, alternating (one pair per sample)",
            "profile",
        ),
    ]:
        if key in results:
            section = results[key]
            table = format_table(
                title, LATENCY_HEADER, latency_rows(section["stats"], section["baseline"])
            )
            out.append(table + f"cost per {what} switch: {section['cost_per_switch_us']:.1f} us\n")
    if "memory" in results:
        m = results["memory"]
        rows = [
            ["engine (deserialized)", m["engine_measured_mib"], m["engine_reported_mib"]],
            *[
                [f"execution context {i}", measured, m["context_reported_mib"]]
                for i, measured in enumerate(m["contexts_measured_mib"])
            ],
        ]
        out.append(
            format_table(
                "4. GPU memory (MiB): measured as free memory lost, and as TensorRT reports it",
                ["what", "measured", "reported"],
                [[what, f"{a:.2f}", "n/a" if b is None else f"{b:.2f}"] for what, a, b in rows],
            )
        )
    if "runner_activation" in results:
        out.append(
            format_table(
                "5. TrtRunner activate + deactivate",
                LATENCY_HEADER,
                latency_rows(
                    results["runner_activation"]["stats"], results["runner_activation"]["baseline"]
                ),
            )
        )
    if "convenience" in results:
        section = results["convenience"]
        for batch, stats in section["by_batch"].items():
            out.append(
                format_table(
                    f"6. The cost of convenience, batch {batch}: per-request latency",
                    [*LATENCY_HEADER[:-1], "vs bare"],
                    latency_rows(stats, BASELINE),
                )
            )
        rows = [
            [item["function"], f"{item['us_per_infer']:.1f}", f"{item['calls_per_infer']:.0f}"]
            for item in section["trtrunner_profile"]
        ]
        out.append(
            format_table(
                "Where TrtRunner.infer spends its time, batch 1 (own time per call)",
                ["function", "us per infer", "calls per infer"],
                rows,
            )
        )
    return "\n".join(out)


def plot(results: dict, path) -> None:
    """A bar chart of the median latencies of each latency section."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = []
    for key, title in [("narrow_vs_wide", "1. narrow vs wide"), ("convenience", "6. convenience")]:
        for batch, stats in results.get(key, {}).get("by_batch", {}).items():
            panels.append((f"{title}, batch {batch}", stats))
    for key, title in [
        ("shape_switching", "2. shape switching"),
        ("profile_switching", "3. profile switching"),
        ("runner_activation", "5. runner activation"),
    ]:
        if key in results:
            panels.append((title, results[key]["stats"]))
    figure, axes = plt.subplots(
        len(panels), 1, figsize=(9, 1.2 + 1.1 * sum(len(s) for _, s in panels) / 2)
    )
    for axis, (title, stats) in zip(np.atleast_1d(axes), panels, strict=True):
        names = list(stats)
        axis.barh(names, [stats[n]["median_us"] for n in names])
        axis.set_title(title, fontsize=9, loc="left")
        axis.set_xlabel("median latency, us", fontsize=8)
        axis.tick_params(labelsize=8)
        axis.invert_yaxis()
    figure.suptitle(results["environment"]["summary"], fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


# ---------------------------------------------------------------------------------------------
# Measuring (needs TensorRT and a GPU)


class BareLoop:
    """The baseline: TensorRT's own API and nothing more. Buffers for the largest batch,
    addresses bound once, the shape set when it changes; per request a host-to-device copy,
    execute_async_v3, the device-to-host copies and a synchronize. The request's data already
    sits in the host buffer: page-locked, or ordinary pageable memory."""

    def __init__(self, context, profile_index, spec, max_batch, pinned):
        import tensorrt as trt

        rt = cudart()
        engine = context.engine
        self.context, self.spec = context, spec
        self.outputs = {
            name: np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
            for name in map(engine.get_tensor_name, range(engine.num_io_tensors))
            if engine.get_tensor_mode(name) == trt.TensorIOMode.OUTPUT
        }
        self.stream = check_cuda(rt.cudaStreamCreate(), "cudaStreamCreate")
        self.device, self.host, self._host_buffers = {}, {}, []
        self.select_profile(profile_index)
        self.resize(max_batch)
        for name, nbytes in self.nbytes.items():
            self.device[name] = check_cuda(rt.cudaMalloc(nbytes), "cudaMalloc")
            buffer = PinnedBuffer(nbytes) if pinned else np.empty(nbytes, np.uint8)
            self._host_buffers.append(buffer)
            self.host[name] = buffer.address if pinned else buffer.ctypes.data
        request = sample_batch(spec, max_batch)
        ctypes.memmove(self.host[spec.name], request.ctypes.data, request.nbytes)
        self.bind()

    def resize(self, batch):
        """Sets the input shape, and with it how many bytes each copy moves."""
        shape = (batch, *self.spec.item_shape)
        if not self.context.set_input_shape(self.spec.name, shape):
            raise RuntimeError(f"TensorRT refused input shape {shape}")
        self.batch = batch
        self.nbytes = {self.spec.name: batch * self.spec.item_nbytes}
        for name, dtype in self.outputs.items():
            volume = int(np.prod(tuple(self.context.get_tensor_shape(name))))
            self.nbytes[name] = volume * dtype.itemsize

    def bind(self):
        for name, address in self.device.items():
            self.context.set_tensor_address(name, address)

    def select_profile(self, index):
        """Switches the context to another profile; shapes and addresses are set again."""
        if not self.context.set_optimization_profile_async(index, int(self.stream)):
            raise RuntimeError(f"could not select optimization profile {index}")
        self.batch = None
        self.bind()

    def run(self, batch):
        rt = cudart()
        if batch != self.batch:
            self.resize(batch)
        name = self.spec.name
        rt.cudaMemcpyAsync(
            self.device[name], self.host[name], self.nbytes[name],
            rt.cudaMemcpyKind.cudaMemcpyHostToDevice, self.stream,
        )  # fmt: skip
        self.context.execute_async_v3(int(self.stream))
        for name in self.outputs:
            rt.cudaMemcpyAsync(
                self.host[name], self.device[name], self.nbytes[name],
                rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, self.stream,
            )  # fmt: skip
        check_cuda(rt.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")

    def close(self):
        rt = cudart()
        rt.cudaStreamSynchronize(self.stream)
        for address in self.device.values():
            rt.cudaFree(address)
        for buffer in self._host_buffers:
            if isinstance(buffer, PinnedBuffer):
                buffer.free()
        rt.cudaStreamDestroy(self.stream)


def interleave(variants: dict, settings, progress, label) -> dict:
    """Times each variant's calls, in rounds that rotate the order of the variants, and
    returns each one's statistics. Every call synchronizes before it returns."""
    for call in variants.values():
        for _ in range(settings.warmup):
            call()
    samples = {name: [] for name in variants}
    names = list(variants)
    for round_index in range(settings.rounds):
        progress(f"{label}: round {round_index + 1}/{settings.rounds}")
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            call = variants[name]
            for _ in range(settings.reps):
                start = time.perf_counter_ns()
                call()
                samples[name].append(time.perf_counter_ns() - start)
    return {name: summarize(values) for name, values in samples.items()}


class Engines:
    """Fresh copies of the built engines. TensorRT lets only one live execution context use
    each profile of an engine, so every variant that needs contexts gets an engine of its own."""

    def __init__(self, model, spec):
        from polygraphy.backend.trt import bytes_from_engine

        from scenario import build_engine

        self.spec = spec
        self.profiles = scenario_profiles(spec)
        self.narrow = bytes_from_engine(build_engine(model, self.profiles))
        self.wide = bytes_from_engine(build_engine(model, {"wide": profile_for(spec, *WIDE_RANGE)}))

    @staticmethod
    def load(serialized):
        from polygraphy.backend.trt import engine_from_bytes

        return engine_from_bytes(serialized)

    def bare_loops(self, serialized, pinned) -> list:
        """A BareLoop per profile of a fresh engine, each on a context of its own."""
        from scenario import create_contexts

        engine = self.load(serialized)
        contexts = create_contexts(engine, engine.num_optimization_profiles)
        return [
            BareLoop(context, index, self.spec, high, pinned)
            for index, (context, (_, high)) in enumerate(
                zip(contexts, profile_batch_ranges(engine, self.spec.name), strict=True)
            )
        ]


def scenario_ranges():
    return tuple((low, high) for low, _, high in map(batch_range, PROFILES.values()))


def measure_narrow_vs_wide(engines, settings, progress) -> dict:
    narrow = engines.bare_loops(engines.narrow, pinned=True)
    (wide,) = engines.bare_loops(engines.wide, pinned=True)
    by_batch, skipped = {}, []
    try:
        for batch in settings.narrow_vs_wide_batches:
            index = choose_profile(batch, scenario_ranges())
            if index is None or not WIDE_RANGE[0] <= batch <= WIDE_RANGE[2]:
                skipped.append(batch)
                continue
            variants = {
                "three narrow profiles": partial(narrow[index].run, batch),
                "one wide profile (1..128)": partial(wide.run, batch),
            }
            by_batch[batch] = interleave(variants, settings, progress, f"1. batch {batch}")
    finally:
        for loop in [*narrow, wide]:
            loop.close()
    return {"by_batch": by_batch, "skipped_batches": skipped}


def measure_shape_switching(engines, settings, progress) -> dict:
    loops = engines.bare_loops(engines.narrow, pinned=True)
    dynamic = loops[1]  # the dynamic-batching profile
    low, high = scenario_ranges()[1]
    small, large = f"fixed batch {low}", f"fixed batch {high}"
    variants = {
        small: lambda: dynamic.run(low),
        large: lambda: dynamic.run(high),
        f"alternating {low} and {high} (two requests)": lambda: (
            dynamic.run(low),
            dynamic.run(high),
        ),
    }
    try:
        stats = interleave(variants, settings, progress, "2. shape switching")
    finally:
        for loop in loops:
            loop.close()
    alternating = list(stats.values())[2]["median_us"]
    cost = (alternating - stats[small]["median_us"] - stats[large]["median_us"]) / 2
    return {"stats": stats, "baseline": small, "cost_per_switch_us": cost}


def measure_profile_switching(engines, settings, progress) -> dict:
    from scenario import create_contexts

    (low_latency, _), _, (offline, _) = scenario_ranges()
    dedicated = engines.bare_loops(engines.narrow, pinned=True)
    # One context of another engine copy, switching between the two profiles per request.
    (context,) = create_contexts(Engines.load(engines.narrow), 1)
    switching = BareLoop(context, 2, engines.spec, offline, pinned=True)

    def switch_and_run():
        switching.select_profile(0)
        switching.run(low_latency)
        switching.select_profile(2)
        switching.run(offline)

    variants = {
        "one context per profile": lambda: (
            dedicated[0].run(low_latency),
            dedicated[2].run(offline),
        ),
        "one context, switching profiles": switch_and_run,
    }
    try:
        stats = interleave(variants, settings, progress, "3. profile switching")
    finally:
        for loop in [*dedicated, switching]:
            loop.close()
    medians = [s["median_us"] for s in stats.values()]
    return {
        "stats": stats,
        "baseline": "one context per profile",
        "cost_per_switch_us": (medians[1] - medians[0]) / 2,
        "ratio": medians[1] / medians[0],
    }


def free_device_memory() -> int:
    free, _ = check_cuda(cudart().cudaMemGetInfo(), "cudaMemGetInfo")
    return free


def measure_memory(engines, settings, progress) -> dict:
    from scenario import create_contexts

    progress("4. memory")
    mib = 1024.0**2
    before = free_device_memory()
    engine = Engines.load(engines.narrow)
    engine_measured = (before - free_device_memory()) / mib
    contexts, contexts_measured = [], []
    for _ in range(engine.num_optimization_profiles):
        before = free_device_memory()
        contexts += create_contexts(engine, 1)
        contexts_measured.append((before - free_device_memory()) / mib)
    # TensorRT 10.1 added the _v2 name, and 11 removed the old one.
    reported = getattr(engine, "device_memory_size_v2", None)
    if reported is None:
        reported = engine.device_memory_size
    return {
        "engine_measured_mib": engine_measured,
        "engine_reported_mib": None,  # TensorRT reports no figure for the engine itself
        "plan_mib": len(engines.narrow) / mib,
        "contexts_measured_mib": contexts_measured,
        "context_reported_mib": reported / mib,
    }


def measure_runner_activation(engines, settings, progress) -> dict:
    from polygraphy.backend.trt import TrtRunner

    from scenario import create_contexts

    (context,) = create_contexts(Engines.load(engines.narrow), 1)
    owned = TrtRunner(context)
    creating = TrtRunner(Engines.load(engines.narrow))

    def cycle(runner):
        runner.activate()
        runner.deactivate()

    variants = {
        "over an owned context": lambda: cycle(owned),
        "creating its own context": lambda: cycle(creating),
    }
    stats = interleave(variants, settings, progress, "5. runner activation")
    return {"stats": stats, "baseline": "over an owned context"}


def profile_calls(call, count) -> list:
    """The functions `call` spends the most own time in, per call, with cProfile."""
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(count):
        call()
    profiler.disable()
    top = sorted(pstats.Stats(profiler).stats.items(), key=lambda item: item[1][2], reverse=True)
    rows = []
    for (file, line, function), (_, calls, own_time, _, _) in top[:8]:
        where = function if file == "~" else f"{Path(file).name}:{line} {function}"
        rows.append(
            {
                "function": where,
                "us_per_infer": own_time / count * 1e6,
                "calls_per_infer": calls / count,
            }
        )
    return rows


def stage(request, staging, out):
    """The host-side work of a staged request, without the GPU: the request copied into
    page-locked memory, and as many bytes copied out into the caller's array."""
    np.copyto(staging, request)
    np.copyto(out, staging)


def measure_convenience(engines, settings, progress) -> dict:
    from polygraphy.backend.trt import TrtRunner

    from scenario import create_contexts

    spec, ranges = engines.spec, scenario_ranges()
    runner_engine = Engines.load(engines.narrow)
    runners = [
        TrtRunner(context, optimization_profile=index)
        for index, context in enumerate(create_contexts(runner_engine, len(ranges)))
    ]
    for runner in runners:
        runner.activate()
    notes, dispatchers = [], {}
    try:
        dispatchers["lean"] = Dispatcher(Engines.load(engines.narrow), cuda_graphs=False)
        dispatchers["graphs"] = Dispatcher(Engines.load(engines.narrow), cuda_graphs=True)
    except ValueError as unsupported:
        notes.append(f"dispatcher rows left out: {unsupported}")
    pageable = engines.bare_loops(engines.narrow, pinned=False)
    pinned = engines.bare_loops(engines.narrow, pinned=True)
    staging_buffer = PinnedBuffer(max(settings.convenience_batches) * spec.item_nbytes)
    by_batch, skipped = {}, []
    try:
        for batch in settings.convenience_batches:
            index = choose_profile(batch, ranges)
            if index is None:
                skipped.append(batch)
                continue
            request = sample_batch(spec, batch)
            feed = {spec.name: request}
            variants = {"TrtRunner.infer": partial(runners[index].infer, feed)}
            if dispatchers:
                lean, graphs = dispatchers["lean"], dispatchers["graphs"]
                out = graphs.infer(request)
                variants["dispatcher, lean"] = partial(lean.infer, request)
                variants["dispatcher, CUDA graphs"] = partial(graphs.infer, request)
                variants["dispatcher, CUDA graphs, out="] = partial(graphs.infer, request, out=out)
                # What the dispatcher adds to a bare loop at large batches: the host copies
                # between the caller's arrays and the page-locked staging buffers.
                staging = staging_buffer.as_array(spec.dtype, request.shape)
                variants["staging copies alone (no GPU)"] = partial(stage, request, staging, out)
            variants["bare loop, pageable"] = partial(pageable[index].run, batch)
            variants[BASELINE] = partial(pinned[index].run, batch)
            by_batch[batch] = interleave(variants, settings, progress, f"6. batch {batch}")
        progress("6. profiling TrtRunner.infer")
        index = choose_profile(1, ranges)
        feed = {spec.name: sample_batch(spec, 1)}
        top = profile_calls(lambda: runners[index].infer(feed), settings.reps * 2)
    finally:
        for runner in runners:
            runner.deactivate()
        for closable in [*dispatchers.values(), *pageable, *pinned]:
            closable.close()
        staging_buffer.free()
    return {
        "by_batch": by_batch,
        "skipped_batches": skipped,
        "notes": notes,
        "trtrunner_profile": top,
    }


MEASURE = {
    "narrow_vs_wide": measure_narrow_vs_wide,
    "shape_switching": measure_shape_switching,
    "profile_switching": measure_profile_switching,
    "memory": measure_memory,
    "runner_activation": measure_runner_activation,
    "convenience": measure_convenience,
}


def environment() -> dict:
    import cuda.bindings
    import polygraphy
    import tensorrt as trt

    gpu = gpu_name()
    try:
        driver = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader", "-i", "0"],
            capture_output=True, text=True, check=True, timeout=30,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        driver = None
    cuda_version = check_cuda(cudart().cudaDriverGetVersion(), "cudaDriverGetVersion")
    date = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    return {
        "gpu": gpu,
        "driver": driver,
        "driver_cuda": f"{cuda_version // 1000}.{cuda_version % 1000 // 10}",
        "tensorrt": trt.__version__,
        "polygraphy": polygraphy.__version__,
        "cuda_bindings": cuda.bindings.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "date": date,
        "summary": f"{gpu}, TensorRT {trt.__version__}, {date[:10]}",
    }


def batch_sizes(text) -> tuple:
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a comma-separated list of integers: {text!r}"
        ) from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"batch sizes must be 1 or more: {text!r}")
    return sizes


def section_names(text) -> tuple:
    names = tuple(text.split(","))
    unknown = [name for name in names if name not in SECTIONS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown section(s) {unknown}; choose from {list(SECTIONS)}"
        )
    return names


def positive(text) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more: {text}")
    return value


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model",
        type=Path,
        default=MODEL_PATH,
        help="ONNX model with one input whose first dimension is a dynamic batch "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--batch-sizes",
        type=batch_sizes,
        help="comma-separated batch sizes for sections 1 and 6 "
        "(default: 1,4,16,32,128 and 1,4,32,128)",
    )
    parser.add_argument(
        "--rounds", type=positive, default=10, help="rounds per comparison (default: %(default)s)"
    )
    parser.add_argument(
        "--reps",
        type=positive,
        default=200,
        help="timed calls per variant and round (default: %(default)s)",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=50,
        help="untimed calls per variant first (default: %(default)s)",
    )
    parser.add_argument(
        "--sections",
        type=section_names,
        default=SECTIONS,
        help=f"comma-separated subset of: {','.join(SECTIONS)}",
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=Path("benchmark.json"),
        help="where to write every figure and the environment (default: %(default)s)",
    )
    parser.add_argument(
        "--plot", type=Path, help="also draw the latencies as a PNG chart (needs matplotlib)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: 3 rounds of 20 calls, 5 warm-up calls"
    )
    args = parser.parse_args(argv)  # fmt: skip
    if args.quick:
        args.rounds, args.reps, args.warmup = 3, 20, 5
    args.narrow_vs_wide_batches = args.batch_sizes or NARROW_VS_WIDE_BATCHES
    args.convenience_batches = args.batch_sizes or CONVENIENCE_BATCHES
    return args


def main(argv=None) -> int:
    import importlib.util

    from scenario import write_atomically

    args = parse_args(argv)
    if args.plot and importlib.util.find_spec("matplotlib") is None:
        print_error("benchmark.py", "--plot needs matplotlib: python3 -m pip install matplotlib")
        return 2
    try:
        spec = read_model_input(args.model)
    except ValueError as error:
        print_error("benchmark.py", error)
        return 2
    try:
        require_gpu_stack()
    except GpuStackMissing as missing:
        print_error("benchmark.py", missing)
        return 1

    progress = Progress()
    progress(f"building engines for {args.model.name}")
    engines = Engines(args.model, spec)
    results = {
        "environment": environment(),
        "model": str(args.model),
        "input": {"name": spec.name, "dtype": str(spec.dtype), "item_shape": spec.item_shape},
        "settings": {"rounds": args.rounds, "reps": args.reps, "warmup": args.warmup},
    }
    for section in args.sections:
        results[section] = MEASURE[section](engines, args, progress)
    progress.done()

    print(
        f"{results['environment']['summary']}; {args.model.name}, input {spec.describe()}; "
        f"{args.rounds} rounds x {args.reps} calls\n"
    )
    print(report(results))
    write_atomically(args.json, json.dumps(results, indent=2, default=float).encode())
    print(f"Wrote {args.json}")
    if args.plot:
        plot(results, args.plot)
        print(f"Wrote {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

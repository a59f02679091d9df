#!/usr/bin/env python3
"""
Measures the trade-offs the walkthrough states, on this GPU, for the scenario's two models
(the identity, and a compute-heavy convnet with the same input) or yours:

  1. narrow vs wide profiles      latency on the three-profile engine vs one wide profile (1..128)
  2. shape switching              alternating batch sizes in one profile vs a fixed size
  3. profile switching            one context switching profiles vs one context per profile
  4. memory                       what the engine and each execution context take on the GPU
  5. runner activation            a TrtRunner over an owned context vs one that creates its own
  6. the cost of convenience      TrtRunner.infer, the dispatcher's paths and bare TensorRT loops

Every latency is one request, end to end: host-to-device copy, inference, device-to-host copy
and a synchronize before the clock is read. Variants compared with each other run in
alternating rounds, so that drift in the machine's speed affects them alike. After each
comparison, every path's outputs are checked against ONNX Runtime. Engines are saved beside
each model and reused while they fit; a build says so while it runs.

    python3 benchmark.py                      # both models, about 3-4 minutes
    python3 benchmark.py --quick              # a smoke run
    python3 benchmark.py --model yours.onnx --json yours.json --plot yours.png
"""

import argparse
import cProfile
import datetime
import hashlib
import importlib.util
import json
import platform
import pstats
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np

from build_model import ensure_model
from dynamic_shapes import cli
from dynamic_shapes.dispatch import Dispatcher
from dynamic_shapes.engines import (
    batch_ranges,
    context_memory_size,
    create_contexts,
    deactivate_runner,
    load_or_build_engine,
)
from dynamic_shapes.files import write_atomically
from dynamic_shapes.gpu import (
    capture_graph,
    check_cuda,
    cudart,
    destroy_graph,
    device_memory,
    gpu_name,
    page_locked_empty,
    require_gpu_stack,
)
from dynamic_shapes.onnx_inputs import read_model_input
from dynamic_shapes.reference import OnnxRuntimeReference, largest_difference, mismatch
from dynamic_shapes.serving.planning import choose_profile
from dynamic_shapes.tensors import random_batch
from scenario import (
    HERE,
    MODELS,
    describe_batch_ranges,
    profile,
    profiles_for,
    scenario_ranges,
)

SECTIONS = (
    "narrow_vs_wide",
    "shape_switching",
    "profile_switching",
    "memory",
    "runner_activation",
    "convenience",
    "contexts",
)
NARROW_VS_WIDE_BATCHES = (1, 4, 16, 32, 128)
CONVENIENCE_BATCHES = (1, 4, 32, 128)
WIDE_RANGE = (1, 4, 128)  # min, opt, max batch of the single wide profile
BASELINE = "bare loop, page-locked"
# The floors under it: the copies alone, which the link sets, and the inference alone, which
# is all a GPU-resident request needs.
COPIES = "bare copies alone, page-locked (no inference)"
GPU_BASELINE = "bare execute, GPU-resident"
# For a profile of one shape: the bare loop's copies and inference captured once in a CUDA graph
# and replayed, the least a request of that size can cost from Python.
GRAPH_FLOOR = "bare graph replay, page-locked"
# Section 7: threads sending requests for one profile at once, to 1 context or to CONTEXTS.
CONTEXTS = 4
CONTEXT_THREADS = 8
CONTEXT_ROUNDS = 3
CONTEXTS_BATCHES = (4, 128)


# ---------------------------------------------------------------------------------------------
# Statistics and reports (no GPU needed)


def summarize(samples_ns) -> dict:
    """Median, p90 and p99 of samples in nanoseconds, in microseconds."""
    samples = np.asarray(samples_ns, dtype=np.float64) / 1000.0
    median, p90, p99 = np.percentile(samples, [50, 90, 99])
    return {"median_us": median, "p90_us": p90, "p99_us": p99, "samples": len(samples)}


def floor_of(variant: str) -> str:
    """The bare loop a serving path is held against: the one with the same memory."""
    return GPU_BASELINE if "GPU-resident" in variant else BASELINE


def latency_rows(stats: dict, baseline) -> list:
    """Table rows of latency statistics, with each median's ratio to the baseline's (a
    variant's name, or a function giving each variant's)."""
    rows = []
    for variant, s in stats.items():
        floor = baseline(variant) if callable(baseline) else baseline
        ratio = s["median_us"] / stats[floor]["median_us"]
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


FLOOR_NOTE = f"vs floor: against {BASELINE}; GPU-resident rows against {GPU_BASELINE}\n"
LATENCY_HEADER = ["variant", "median us", "p90 us", "p99 us", "vs first"]
TITLES = {
    "narrow_vs_wide": "1. Narrow vs wide profiles",
    "shape_switching": "2. Shape switching inside the dynamic-batching profile",
    "profile_switching": "3. Low-latency and offline requests, alternating (one pair per sample)",
    "memory": "4. GPU memory (MiB): measured as free memory lost, and as TensorRT reports it",
    "runner_activation": "5. TrtRunner activate + deactivate",
    "convenience": "6. Serving paths and the floors under them",
    "contexts": "7. Concurrent requests for one profile: one context, or several",
}


def section_tables(key: str, section: dict) -> list:
    """The tables of one section of the results."""
    title = TITLES[key]
    if key == "contexts":
        header = ["memory, contexts", "requests/s", "images/s", "vs 1 context"]
        return [
            format_table(
                f"{title}, batch {batch}, {section['threads']} threads",
                header,
                [
                    [
                        name,
                        f"{r['requests_per_s']:.0f}",
                        f"{r['images_per_s']:.0f}",
                        f"{r['vs_one_context']:.2f}x",
                    ]
                    for name, r in rates.items()
                ],
            )
            for batch, rates in section["by_batch"].items()
        ]
    if key in ("narrow_vs_wide", "convenience"):
        header = LATENCY_HEADER if key == "narrow_vs_wide" else [*LATENCY_HEADER[:-1], "vs floor"]
        baseline = "three narrow profiles" if key == "narrow_vs_wide" else floor_of
        tables = [
            format_table(
                f"{title}, batch {batch}: per-request latency",
                header,
                latency_rows(stats, baseline),
            )
            + (
                f"vs floor: against {BASELINE}; GPU-resident rows against {GPU_BASELINE}\n"
                if key == "convenience"
                else ""
            )
            for batch, stats in section["by_batch"].items()
        ]
        if key == "convenience" and section.get("trtrunner_profile"):
            rows = [
                [item["function"], f"{item['us_per_infer']:.1f}", f"{item['calls_per_infer']:.0f}"]
                for item in section["trtrunner_profile"]
            ]
            tables.append(
                format_table(
                    "Where TrtRunner.infer spends its time, batch 1 (own time per call)",
                    ["function", "us per infer", "calls per infer"],
                    rows,
                )
            )
        return tables
    if key == "memory":
        rows = [
            ["engine (deserialized)", section["engine_measured_mib"], None],
            *[
                [f"execution context {i}", measured, section["context_reported_mib"]]
                for i, measured in enumerate(section["contexts_measured_mib"])
            ],
        ]
        return [
            format_table(
                title,
                ["what", "measured", "reported"],
                [[what, f"{a:.2f}", "n/a" if b is None else f"{b:.2f}"] for what, a, b in rows],
            )
        ]
    table = format_table(title, LATENCY_HEADER, latency_rows(section["stats"], section["baseline"]))
    if "cost_per_switch_us" in section:
        what = "shape" if key == "shape_switching" else "profile"
        table += f"cost per {what} switch: {section['cost_per_switch_us']:.1f} us\n"
    return [table]


def model_report(model: dict) -> str:
    """The tables of one model's sections, each followed by what it left out and why."""
    out = []
    for key in SECTIONS:
        if key in model:
            out += section_tables(key, model[key])
            notes = model[key].get("notes", [])
            if notes:
                out.append("".join(f"note: {note}\n" for note in notes))
    return "\n".join(out)


def ratio(stats: dict, numerator: str, denominator: str) -> str:
    return f"{stats[numerator]['median_us'] / stats[denominator]['median_us']:.2f}x"


def trade_offs(model: dict) -> dict:
    """{claim: figure} for the walkthrough's four trade-offs, from one model's sections."""
    rows = {}
    for batch, stats in model.get("narrow_vs_wide", {}).get("by_batch", {}).items():
        rows[f"1. one wide profile vs three narrow, batch {batch}"] = ratio(
            stats, "one wide profile (1..128)", "three narrow profiles"
        )
    if "shape_switching" in model:
        cost = model["shape_switching"]["cost_per_switch_us"]
        rows["2. a shape switch in one profile, us"] = f"{cost:.1f}"
    if "profile_switching" in model:
        section = model["profile_switching"]
        rows["3. a profile switch in one context, us"] = f"{section['cost_per_switch_us']:.1f}"
        rows["3. one context switching vs one per profile"] = f"{section['ratio']:.2f}x"
    if "memory" in model:
        memory = model["memory"]["context_reported_mib"]
        rows["4. GPU memory of each execution context, MiB"] = f"{memory:.2f}"
    if "runner_activation" in model:
        rows["5. TrtRunner making its context vs given one"] = ratio(
            model["runner_activation"]["stats"], "creating its own context", "over an owned context"
        )
    for batch, rates in model.get("contexts", {}).get("by_batch", {}).items():
        for name, rate in rates.items():
            if not name.endswith(", 1 context"):
                rows[f"7. {name} vs 1, requests/s, batch {batch}"] = (
                    f"{rate['vs_one_context']:.2f}x"
                )
    return rows


def report(results: dict) -> str:
    """Every model's tables and, for several models, their trade-offs side by side."""
    out = []
    for name, model in results["models"].items():
        out.append(f"##### {name}: {model['path']}, input {model['input']}\n")
        out.append(model_report(model))
        if "largest_difference_from_onnx_runtime" in model:
            out.append(
                f"Every path's outputs checked against ONNX Runtime, {model['checked']}: the "
                f"largest difference was {model['largest_difference_from_onnx_runtime']:.3g}\n"
            )
    if len(results["models"]) > 1:
        columns = {name: trade_offs(model) for name, model in results["models"].items()}
        claims = list(dict.fromkeys(claim for rows in columns.values() for claim in rows))
        rows = [[claim, *(rows.get(claim, "-") for rows in columns.values())] for claim in claims]
        title = "The trade-offs, side by side (medians)"
        out.append(format_table(title, ["trade-off", *columns], rows))
    return "\n".join(out)


def latency_panels(results: dict) -> list:
    """(title, {variant: stats}) for each latency table of each model."""
    panels = []
    for name, model in results["models"].items():
        for key, title in [
            ("narrow_vs_wide", "1. narrow vs wide"),
            ("convenience", "6. convenience"),
        ]:
            for batch, stats in model.get(key, {}).get("by_batch", {}).items():
                panels.append((f"{name}: {title}, batch {batch}", stats))
        for key, title in [
            ("shape_switching", "2. shape switching"),
            ("profile_switching", "3. profile switching"),
            ("runner_activation", "5. runner activation"),
        ]:
            if key in model:
                panels.append((f"{name}: {title}", model[key]["stats"]))
    return panels


def plot(panels: list, summary: str, path) -> None:
    """A bar chart of the median latencies of each panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    figure.suptitle(summary, fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


# ---------------------------------------------------------------------------------------------
# Measuring (needs TensorRT and a GPU)


class BareLoop:
    """The baseline: TensorRT's own API and nothing more. Buffers for the largest batch,
    addresses bound once, the shape set when it changes; per request a host-to-device copy,
    execute_async_v3, the device-to-host copies and a synchronize, each call's status checked
    as the dispatcher checks it. The request's data already sits in the host buffer:
    page-locked, or ordinary pageable memory."""

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
        self.device, self.host = {}, {}
        self.request = random_batch(spec, max_batch, seed=max_batch)
        self.select_profile(profile_index)
        self.resize(max_batch)
        for name, nbytes in self.nbytes.items():
            self.device[name] = check_cuda(rt.cudaMalloc(nbytes), "cudaMalloc")
            empty = page_locked_empty if pinned else np.empty
            self.host[name] = empty((nbytes,), np.uint8)
        self.host[spec.name][:] = self.request.reshape(-1).view(np.uint8)
        self.address = {name: array.ctypes.data for name, array in self.host.items()}
        self.bind()
        self.graph = self.graph_exec = None

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
            if not self.context.set_tensor_address(name, address):
                raise RuntimeError(f"could not bind tensor {name}")

    def select_profile(self, index):
        """Switches the context to another profile; shapes and addresses are set again."""
        if not self.context.set_optimization_profile_async(index, int(self.stream)):
            raise RuntimeError(f"could not select optimization profile {index}")
        self.batch = None
        self.bind()

    def run(self, batch, copies=True, inference=True):
        """One request: its copies and inference (the default), the copies alone (the floor
        the link sets), or the inference alone (the floor for GPU-resident requests)."""
        if batch != self.batch:
            self.resize(batch)
        self.enqueue(batch, copies, inference)
        check_cuda(cudart().cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")

    def enqueue(self, batch, copies=True, inference=True):
        rt = cudart()
        h2d, d2h = (
            rt.cudaMemcpyKind.cudaMemcpyHostToDevice,
            rt.cudaMemcpyKind.cudaMemcpyDeviceToHost,
        )
        name = self.spec.name
        if copies:
            check_cuda(
                rt.cudaMemcpyAsync(
                    self.device[name], self.address[name], self.nbytes[name], h2d, self.stream
                ),
                "cudaMemcpyAsync",
            )
        if inference and not self.context.execute_async_v3(int(self.stream)):
            raise RuntimeError("TensorRT's execute_async_v3 failed; see its log above")
        for name in self.outputs if copies else ():
            check_cuda(
                rt.cudaMemcpyAsync(
                    self.address[name], self.device[name], self.nbytes[name], d2h,
                    self.stream,
                ),
                "cudaMemcpyAsync",
            )  # fmt: skip

    def capture(self, batch):
        """Captures a request of `batch` items, its copies and inference, in a CUDA graph for
        replay(): the same work as run(batch), launched in one call."""
        self.run(batch)  # TensorRT's first enqueue for a shape sets up state outside the graph
        # enqueue() queues on self.stream, the stream being captured.
        self.graph, self.graph_exec = capture_graph(self.stream, lambda _: self.enqueue(batch))

    def replay(self):
        rt = cudart()
        check_cuda(rt.cudaGraphLaunch(self.graph_exec, self.stream), "cudaGraphLaunch")
        check_cuda(rt.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")

    def last_result(self) -> tuple:
        """The inputs and (copies of) the outputs of the last run."""
        outputs = {
            name: self.host[name][: self.nbytes[name]]
            .view(dtype)
            .reshape(tuple(self.context.get_tensor_shape(name)))
            .copy()
            for name, dtype in self.outputs.items()
        }
        return self.request[: self.batch], outputs

    def close(self):
        rt = cudart()
        rt.cudaStreamSynchronize(self.stream)
        destroy_graph(self.graph, self.graph_exec)
        for address in self.device.values():
            rt.cudaFree(address)
        rt.cudaStreamDestroy(self.stream)


class Reference:
    """What every measured path must return, checked after it was timed: what ONNX Runtime
    computes on the CPU for the same inputs, bit for bit for the identity model and within
    dynamic_shapes.reference's tolerance for any other."""

    def __init__(self, model_path, spec, exact: bool):
        self.run = OnnxRuntimeReference(model_path)
        self.spec, self.exact = spec, exact
        self._cache = {}  # the same inputs come back, checked for several paths
        self.largest_difference = 0.0  # over every check, for the report

    def check(self, what: str, inputs, outputs: dict) -> None:
        """Raises AssertionError, naming the path, unless its outputs are the expected ones."""
        key = (inputs.shape, hashlib.sha1(np.ascontiguousarray(inputs)).hexdigest())
        if key not in self._cache:
            self._cache[key] = self.run({self.spec.name: np.ascontiguousarray(inputs)})
        problem = mismatch(outputs, self._cache[key], self.exact)
        if problem is None:
            found = largest_difference(outputs, self._cache[key])
            self.largest_difference = max(self.largest_difference, found)
        if problem:
            raise AssertionError(f"{what}: {problem} (ONNX Runtime); its figures are void")

    def check_loop(self, what: str, loop: BareLoop, batch: int) -> None:
        loop.run(batch)
        self.check(f"{what}, batch {batch}", *loop.last_result())


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
    """The model's engines, serialized: the scenario's three profiles, and one wide profile.
    Each is saved beside the model (or in `engine_dir`) and reused while its record holds.
    TensorRT lets only one live execution context use each profile of an engine, so every
    variant that needs contexts loads an engine of its own from these bytes."""

    def __init__(self, model, spec, engine_dir, progress):
        from polygraphy.backend.trt import bytes_from_engine
        from polygraphy.logger import G_LOGGER

        self.spec, self.lines = spec, []
        folder = engine_dir or model.parent
        serialized = {}
        for kind, suffix, profiles in [
            ("narrow", ".engine", profiles_for(spec)),
            ("wide", ".wide.engine", {"wide": profile(spec, *WIDE_RANGE)}),
        ]:
            # Polygraphy's build log would bury the report; its warnings and errors still show.
            with G_LOGGER.verbosity(G_LOGGER.WARNING):
                engine, how = load_or_build_engine(
                    model, folder / f"{model.stem}{suffix}", profiles, progress=progress
                )
            progress(how)
            self.lines.append(how)
            serialized[kind] = bytes_from_engine(engine)
        self.narrow, self.wide = serialized["narrow"], serialized["wide"]

    @staticmethod
    def load(serialized):
        from polygraphy.backend.trt import engine_from_bytes

        return engine_from_bytes(serialized)

    def bare_loops(self, serialized, pinned) -> list:
        """A BareLoop per profile of a fresh engine, each on a context of its own."""
        engine = self.load(serialized)
        contexts = create_contexts(engine, engine.num_optimization_profiles)
        return [
            BareLoop(context, index, self.spec, high, pinned)
            for index, (context, (_, high)) in enumerate(
                zip(contexts, batch_ranges(engine, self.spec.name), strict=True)
            )
        ]


def close_all(closables) -> None:
    for closable in closables:
        closable.close()


RANGES = tuple(scenario_ranges().values())
ACCEPTED = describe_batch_ranges(scenario_ranges())


def measure_narrow_vs_wide(engines, reference, settings, progress) -> dict:
    narrow = engines.bare_loops(engines.narrow, pinned=True)
    (wide,) = engines.bare_loops(engines.wide, pinned=True)
    by_batch, notes = {}, []
    try:
        for batch in settings.narrow_vs_wide_batches:
            index = choose_profile(batch, RANGES)
            if index is None or not WIDE_RANGE[0] <= batch <= WIDE_RANGE[2]:
                notes.append(
                    f"batch {batch} left out: the narrow profiles accept {ACCEPTED}, the wide "
                    f"one {WIDE_RANGE[0]}..{WIDE_RANGE[2]}, and both must accept it"
                )
                continue
            variants = {
                "three narrow profiles": partial(narrow[index].run, batch),
                "one wide profile (1..128)": partial(wide.run, batch),
            }
            by_batch[batch] = interleave(variants, settings, progress, f"1. batch {batch}")
            reference.check_loop("three narrow profiles", narrow[index], batch)
            reference.check_loop("one wide profile", wide, batch)
    finally:
        close_all([*narrow, wide])
    return {"by_batch": by_batch, "notes": notes}


def measure_shape_switching(engines, reference, settings, progress) -> dict:
    loops = engines.bare_loops(engines.narrow, pinned=True)
    dynamic = loops[1]  # the dynamic-batching profile
    low, high = RANGES[1]
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
        for batch in (low, high):
            reference.check_loop("dynamic-batching profile", dynamic, batch)
    finally:
        close_all(loops)
    alternating = list(stats.values())[2]["median_us"]
    cost = (alternating - stats[small]["median_us"] - stats[large]["median_us"]) / 2
    return {"stats": stats, "baseline": small, "cost_per_switch_us": cost}


def measure_profile_switching(engines, reference, settings, progress) -> dict:
    (low_latency, _), _, (offline, _) = RANGES
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
        reference.check_loop("low-latency context", dedicated[0], low_latency)
        reference.check_loop("offline context", dedicated[2], offline)
        switching.select_profile(0)
        reference.check_loop("switching context, low latency", switching, low_latency)
        switching.select_profile(2)
        reference.check_loop("switching context, offline", switching, offline)
    finally:
        close_all([*dedicated, switching])
    medians = [s["median_us"] for s in stats.values()]
    return {
        "stats": stats,
        "baseline": "one context per profile",
        "cost_per_switch_us": (medians[1] - medians[0]) / 2,
        "ratio": medians[1] / medians[0],
    }


def measure_memory(engines, reference, settings, progress) -> dict:
    progress("4. memory")
    mib = 1024.0**2
    before, _ = device_memory()
    engine = Engines.load(engines.narrow)
    engine_measured = (before - device_memory()[0]) / mib
    contexts, contexts_measured = [], []
    for _ in range(engine.num_optimization_profiles):
        before, _ = device_memory()
        contexts += create_contexts(engine, 1)
        contexts_measured.append((before - device_memory()[0]) / mib)
    reported = context_memory_size(engine)
    return {
        "engine_measured_mib": engine_measured,
        "plan_mib": len(engines.narrow) / mib,
        "contexts_measured_mib": contexts_measured,
        "context_reported_mib": reported / mib,
        "notes": ["TensorRT reports no memory figure for the engine itself"],
    }


def measure_runner_activation(engines, reference, settings, progress) -> dict:
    from polygraphy.backend.trt import TrtRunner

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


def stage(request, staged_request, staged_outputs, out):
    """The host-side work of a staged request, without the GPU: the request copied into
    page-locked memory, and the outputs copied from page-locked memory into the caller's
    array, in one thread."""
    np.copyto(staged_request, request)
    np.copyto(out, staged_outputs)


def gpu_arrays():
    """CuPy, for the GPU-resident rows, or None where it is not installed."""
    try:
        import cupy
    except ImportError:
        return None
    return cupy


GPU_ARRAYS_MISSING = (
    "GPU-resident rows left out: they need CuPy (python3 -m pip install -r "
    "requirements-gpu-arrays.txt)"
)
# Dispatchers measured in section 6, each on an engine of its own.
DISPATCHERS = {"graphs": {"cuda_graphs": True}, "no graphs": {"cuda_graphs": False}}


class Requests:
    """One request of `batch` images in each kind of memory, with page-locked and GPU arrays
    for its outputs."""

    def __init__(self, dispatcher, spec, batch, cupy):
        self.pageable = random_batch(spec, batch, seed=batch)
        self.pageable_out = dispatcher.infer(self.pageable)
        self.page_locked = dispatcher.page_locked_inputs(batch)
        self.page_locked[spec.name][:] = self.pageable
        self.page_locked_out = dispatcher.page_locked_outputs(batch)
        self.on_gpu = self.on_gpu_out = None
        self.prepared = {}  # row name -> PreparedRequest over the arrays above
        if cupy is not None:
            self.on_gpu = cupy.asarray(self.pageable)
            self.on_gpu_out = {
                s.name: cupy.empty((batch, *s.item_shape), s.dtype) for s in dispatcher.outputs
            }


def dispatcher_variants(dispatchers, index, requests) -> dict:
    """The dispatcher's rows for a request that profile `index` serves, in each memory, with
    CUDA graphs and without. Through infer(), a graph serves only a profile of one shape;
    a prepared request replays one for every profile (on a context of its own for a profile
    of a range, see dynamic_shapes.dispatch)."""
    graphs = dispatchers["graphs"]
    static = graphs.use_cases[index] in graphs.graph_use_cases
    batch = len(requests.pageable)
    memories = {"page-locked": (requests.page_locked, requests.page_locked_out)}
    if requests.on_gpu is not None:
        memories["GPU-resident"] = (requests.on_gpu, requests.on_gpu_out)
    variants = {}
    for name, dispatcher in dispatchers.items():
        suffix = ", CUDA graph" if name == "graphs" else ""
        if name == "no graphs" or static:
            # The default: the caller's ordinary array in, a new array out.
            variants[f"dispatcher, pageable{suffix}"] = partial(dispatcher.infer, requests.pageable)
            variants[f"dispatcher, page-locked{suffix}"] = partial(
                dispatcher.infer, requests.page_locked, out=requests.page_locked_out
            )
        for memory, (inputs, out) in memories.items():
            prepared = dispatcher.prepare(batch, inputs, out=out)
            if name == "graphs" and not prepared.uses_graphs:  # the same as without graphs
                prepared.close()
                continue
            requests.prepared[f"dispatcher, prepared, {memory}{suffix}"] = prepared
            variants[f"dispatcher, prepared, {memory}{suffix}"] = prepared.run
    plain = dispatchers["no graphs"]
    variants["dispatcher, pageable, out="] = partial(
        plain.infer, requests.pageable, out=requests.pageable_out
    )
    if requests.on_gpu is not None:
        variants["dispatcher, GPU-resident"] = partial(
            plain.infer, requests.on_gpu, out=requests.on_gpu_out
        )
    return variants


def check_dispatchers(reference, dispatchers, requests, batch) -> None:
    """Checks every dispatcher's outputs, from every kind of memory, against ONNX Runtime."""
    inputs = requests.pageable
    for name, dispatcher in dispatchers.items():
        what = f"dispatcher ({name}), batch {batch}"
        outputs = dispatcher.infer(inputs)
        reference.check(f"{what}, pageable", inputs, by_output(dispatcher, outputs))
        dispatcher.infer(requests.page_locked, out=requests.page_locked_out)
        reference.check(f"{what}, page-locked", inputs, requests.page_locked_out)
        if requests.on_gpu is not None:
            dispatcher.infer(requests.on_gpu, out=requests.on_gpu_out)
            outputs = {name: array.get() for name, array in requests.on_gpu_out.items()}
            reference.check(f"{what}, GPU-resident", inputs, outputs)
    for name, prepared in requests.prepared.items():
        outputs = prepared.run()
        if "GPU-resident" in name:
            outputs = {key: array.get() for key, array in outputs.items()}
        reference.check(f"{name}, batch {batch}", inputs, outputs)


def by_output(dispatcher, outputs) -> dict:
    """{output name: array} for what Dispatcher.infer returned."""
    return outputs if isinstance(outputs, dict) else {dispatcher.output_names[0]: outputs}


def measure_convenience(engines, reference, settings, progress) -> dict:
    from polygraphy.backend.trt import TrtRunner

    spec = engines.spec
    runner_engine = Engines.load(engines.narrow)
    runners = [
        TrtRunner(context, optimization_profile=index)
        for index, context in enumerate(create_contexts(runner_engine, len(RANGES)))
    ]
    for runner in runners:
        runner.activate()
    notes, dispatchers = [], {}
    try:
        for name, options in DISPATCHERS.items():
            dispatchers[name] = Dispatcher(Engines.load(engines.narrow), **options)
    except ValueError as unsupported:
        close_all(dispatchers.values())
        dispatchers = {}
        notes.append(f"dispatcher rows left out: {unsupported}")
    cupy = gpu_arrays()
    if cupy is None:
        notes.append(GPU_ARRAYS_MISSING)
    pageable = engines.bare_loops(engines.narrow, pinned=False)
    pinned = engines.bare_loops(engines.narrow, pinned=True)
    by_batch = {}
    try:
        for batch in settings.convenience_batches:
            index = choose_profile(batch, RANGES)
            if index is None:
                notes.append(f"batch {batch} left out: no profile accepts it ({ACCEPTED})")
                continue
            request = random_batch(spec, batch, seed=batch)
            variants = {"TrtRunner.infer": partial(runners[index].infer, {spec.name: request})}
            if dispatchers:
                requests = Requests(dispatchers["no graphs"], spec, batch, cupy)
                variants.update(dispatcher_variants(dispatchers, index, requests))
                if "dispatcher, pageable, CUDA graph" not in variants:
                    notes.append(
                        f"batch {batch}: CUDA graphs for prepared requests only; its profile "
                        f"accepts {RANGES[index][0]}..{RANGES[index][1]}, and a graph replays "
                        "one shape: infer() captures graphs only for profiles of one shape"
                    )
                # What staging costs the CPU: the two copies through page-locked memory.
                staged = requests.page_locked[spec.name], requests.page_locked_out
                out = by_output(dispatchers["no graphs"], requests.pageable_out)
                if len(out) == 1:
                    ((name, array),) = out.items()
                    variants["staging copies alone, one thread (no GPU)"] = partial(
                        stage, request, staged[0], staged[1][name], array
                    )
            variants["bare loop, pageable"] = partial(pageable[index].run, batch)
            variants[BASELINE] = partial(pinned[index].run, batch)
            variants[COPIES] = partial(pinned[index].run, batch, inference=False)
            variants[GPU_BASELINE] = partial(pinned[index].run, batch, copies=False)
            if RANGES[index][0] == RANGES[index][1]:  # one shape: its request can be a graph
                if pinned[index].graph_exec is None:
                    pinned[index].capture(batch)
                variants[GRAPH_FLOOR] = pinned[index].replay
            by_batch[batch] = interleave(variants, settings, progress, f"6. batch {batch}")

            reference.check(f"TrtRunner.infer, batch {batch}", request, runners[index].infer(
                {spec.name: request}))  # fmt: skip
            if dispatchers:
                check_dispatchers(reference, dispatchers, requests, batch)
                close_all(requests.prepared.values())  # and the contexts of their own
            reference.check_loop("bare loop, pageable", pageable[index], batch)
            reference.check_loop(BASELINE, pinned[index], batch)
            if GRAPH_FLOOR in variants:
                pinned[index].replay()
                reference.check(f"{GRAPH_FLOOR}, batch {batch}", *pinned[index].last_result())
        progress("6. profiling TrtRunner.infer")
        index = choose_profile(1, RANGES)
        feed = {spec.name: random_batch(spec, 1)}
        top = profile_calls(lambda: runners[index].infer(feed), settings.reps * 2)
    finally:
        for runner in runners:
            deactivate_runner(runner)
        close_all([*dispatchers.values(), *pageable, *pinned])
    return {"by_batch": by_batch, "notes": notes, "trtrunner_profile": top}


def serve_concurrently(dispatcher, request, out, threads, count) -> float:
    """Requests per second of `threads` threads, each sending `count` requests with its own
    output arrays (`out()` makes them)."""

    def worker(outputs):
        for _ in range(count):
            dispatcher.infer(request, out=outputs)

    outputs = [out() for _ in range(threads)]
    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        for future in [pool.submit(worker, o) for o in outputs]:
            future.result()
    return threads * count / (time.perf_counter() - start)


def measure_contexts(engines, reference, settings, progress) -> dict:
    """Throughput of concurrent requests for one profile, served by 1 context or several."""
    spec, cupy = engines.spec, gpu_arrays()
    notes = [] if cupy is not None else [GPU_ARRAYS_MISSING]
    by_batch = {}
    for batch in settings.contexts_batches:
        index = choose_profile(batch, RANGES)
        if index is None:
            notes.append(f"batch {batch} left out: no profile accepts it ({ACCEPTED})")
            continue
        dispatchers = {
            count: Dispatcher(Engines.load(engines.narrow), contexts_per_profile=count)
            for count in (1, CONTEXTS)
        }
        try:
            request = random_batch(spec, batch, seed=batch)
            kinds = {}
            for count, dispatcher in dispatchers.items():
                kinds[f"page-locked, {count} context{'s' * (count > 1)}"] = (
                    dispatcher, dispatcher.page_locked_inputs(batch),
                    partial(dispatcher.page_locked_outputs, batch),
                )  # fmt: skip
                if cupy is not None:
                    kinds[f"GPU-resident, {count} context{'s' * (count > 1)}"] = (
                        dispatcher, cupy.asarray(request),
                        partial(cupy.empty, (batch, *dispatcher.outputs[0].item_shape),
                                dispatcher.outputs[0].dtype),
                    )  # fmt: skip
            for name, (dispatcher, inputs, _) in kinds.items():
                if isinstance(inputs, dict):
                    for array in inputs.values():
                        array[:] = request
                outputs = dispatcher.infer(inputs)
                reference.check(f"{name}, batch {batch}", request, by_output(dispatcher, outputs))
            rates = {name: [] for name in kinds}
            for round_index in range(CONTEXT_ROUNDS):
                progress(f"7. batch {batch}: round {round_index + 1}/{CONTEXT_ROUNDS}")
                for name, (dispatcher, inputs, out) in kinds.items():
                    count = max(1, settings.reps * 4 // CONTEXT_THREADS)
                    rates[name].append(
                        serve_concurrently(dispatcher, inputs, out, CONTEXT_THREADS, count)
                    )
            medians = {name: float(np.median(r)) for name, r in rates.items()}
            by_batch[batch] = {
                name: {
                    "requests_per_s": rate,
                    "images_per_s": rate * batch,
                    # e.g. "page-locked, 4 contexts" against "page-locked, 1 context"
                    "vs_one_context": rate / medians[f"{name.split(',')[0]}, 1 context"],
                }
                for name, rate in medians.items()
            }
        finally:
            close_all(dispatchers.values())
    return {"by_batch": by_batch, "notes": notes, "threads": CONTEXT_THREADS}


MEASURE = {
    "narrow_vs_wide": measure_narrow_vs_wide,
    "shape_switching": measure_shape_switching,
    "profile_switching": measure_profile_switching,
    "memory": measure_memory,
    "runner_activation": measure_runner_activation,
    "convenience": measure_convenience,
    "contexts": measure_contexts,
}


def environment() -> dict:
    import cuda.bindings
    import onnxruntime
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
        "onnxruntime": onnxruntime.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "commit": git_commit(),
        "date": date,
        "summary": f"{gpu}, TensorRT {trt.__version__}, {date[:10]}",
    }


def git_commit() -> str | None:
    """The commit of this checkout, with '+changes' when files differ from it; None outside git."""
    try:
        run = partial(
            subprocess.run, cwd=HERE, capture_output=True, text=True, check=True,
            timeout=30,
        )  # fmt: skip
        commit = run(["git", "rev-parse", "--short", "HEAD"]).stdout.strip()
        changed = run(["git", "status", "--porcelain", "--untracked-files=no"]).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+changes" if changed else "")


# ---------------------------------------------------------------------------------------------
# The command line


LATENCY_SECTIONS = tuple(section for section in SECTIONS if section != "memory")


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


def model_choice(text) -> tuple:
    """(name, path, exact) for a model the scripts know by name, or an ONNX file's path."""
    if text in MODELS:
        return text, MODELS[text], text == "identity"
    return Path(text).stem, Path(text), False


def parse_args(argv=None):
    parser = cli.make_parser(__file__, __doc__)
    parser.add_argument(
        "--model",
        dest="models",
        action="append",
        type=model_choice,
        help=f"a model to measure, by name ({', '.join(MODELS)}, written when missing) or as "
        "an ONNX file with one input whose first dimension is a dynamic batch; repeat it for "
        "several (default: every named model)",
    )
    parser.add_argument(
        "--engine-dir",
        type=Path,
        help="where the engines are saved and reused (default: beside each model)",
    )
    parser.add_argument(
        "--batch-sizes",
        type=batch_sizes,
        help="comma-separated batch sizes for sections 1 and 6 "
        "(default: 1,4,16,32,128 and 1,4,32,128)",
    )
    for flag, kind, default, what in [
        ("--rounds", cli.positive, 10, "rounds per comparison"),
        ("--reps", cli.positive, 200, "timed calls per variant and round"),
        ("--warmup", cli.non_negative, 50, "untimed calls per variant first"),
    ]:
        parser.add_argument(flag, type=kind, default=default, help=f"{what} (default: %(default)s)")
    parser.add_argument(
        "--sections",
        type=section_names,
        default=SECTIONS,
        help=f"comma-separated subset of: {','.join(SECTIONS)}",
    )
    parser.add_argument(
        "--json",
        type=cli.output_file,
        default="benchmark.json",
        help="where to write every figure and the environment (default: %(default)s)",
    )
    parser.add_argument(
        "--plot",
        type=cli.output_file,
        help="also draw the latencies as a PNG chart (needs matplotlib)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: 3 rounds of 20 calls, 5 warm-up calls"
    )
    args = parser.parse_args(argv)
    if args.engine_dir is not None and not args.engine_dir.is_dir():
        parser.error(f"argument --engine-dir: there is no folder {args.engine_dir}")
    if args.plot:
        if not set(args.sections) & set(LATENCY_SECTIONS):
            parser.error(
                f"--plot draws latencies, and --sections {','.join(args.sections)} measures none;"
                f" add one of {','.join(LATENCY_SECTIONS)}"
            )
        if importlib.util.find_spec("matplotlib") is None:
            parser.error("--plot needs matplotlib: python3 -m pip install matplotlib")
    args.models = args.models or [model_choice(name) for name in MODELS]
    names = [name for name, _, _ in args.models]
    if len(set(names)) < len(names):
        parser.error(f"argument --model: two models named alike in {names}")
    if args.quick:
        args.rounds, args.reps, args.warmup = 3, 20, 5
    args.narrow_vs_wide_batches = args.batch_sizes or NARROW_VS_WIDE_BATCHES
    args.convenience_batches = args.batch_sizes or CONVENIENCE_BATCHES
    args.contexts_batches = args.batch_sizes or CONTEXTS_BATCHES
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    return cli.run(args, lambda: run(args))


def run(args) -> None:
    # A model file is checked before the GPU is, since a bad one fails the same on any
    # machine; a named model that is missing is written only once there is a GPU to run it.
    missing = {
        name for name, path, _ in args.models if path in MODELS.values() and not path.exists()
    }
    specs = {name: read_model_input(path) for name, path, _ in args.models if name not in missing}
    require_gpu_stack()
    for name, path, _ in args.models:
        if name in missing:
            ensure_model(path)
            specs[name] = read_model_input(path)

    progress = cli.Progress()
    results = {
        "environment": environment(),
        "settings": {"rounds": args.rounds, "reps": args.reps, "warmup": args.warmup},
        "models": {},
        "complete": False,
    }
    try:
        for name, path, exact in args.models:
            spec = specs[name]
            engines = Engines(path, spec, args.engine_dir, progress)
            reference = Reference(path, spec, exact)
            model = results["models"][name] = {
                "path": str(path),
                "input": spec.describe(),
                "checked": "bit for bit" if exact else "within a tolerance",
                "engines": engines.lines,
            }
            for section in args.sections:
                model[section] = MEASURE[section](engines, reference, args, progress)
                model["largest_difference_from_onnx_runtime"] = reference.largest_difference
        results["complete"] = True
    finally:
        progress.done()
        # Whatever was measured is kept, also when a later step fails or is interrupted.
        measured = [
            f"{name} {section}"
            for name, model in results["models"].items()
            for section in SECTIONS
            if section in model
        ]
        if measured:
            write_atomically(args.json, json.dumps(results, indent=2, default=float).encode())
            if not results["complete"]:
                print(f"Kept the figures of {', '.join(measured)} in {args.json}", file=sys.stderr)

    settings = f"{args.rounds} rounds x {args.reps} calls"
    print(f"{results['environment']['summary']}; {settings}\n")
    print(report(results))
    print(f"Wrote {args.json}")
    if args.plot:
        panels = latency_panels(results)
        if panels:
            plot(panels, results["environment"]["summary"], args.plot)
            print(f"Wrote {args.plot}")
        else:
            print(f"Drew no {args.plot}: every latency comparison was left out (see the notes)")


if __name__ == "__main__":
    sys.exit(main())

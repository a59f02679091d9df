"""Measuring candidate profile sets: each one's engine built (or reused), the workload replayed
on it through the Dispatcher as a service would serve it, every distinct shape's outputs checked
against ONNX Runtime, and what was measured gathered into scoring.Measurements.

How a candidate is measured (measure_candidate):

1. Its engine is loaded or built by engines.load_or_build_engine, saved in the engine folder as
   `<model>.plan-<hash>.engine` (engine_name: the hash is of the profiles alone; the record
   beside it says which model, TensorRT and GPU it was built from, by and for, so a changed
   model is rebuilt in place). The build time is kept in the record, so a reused engine still
   reports it.
2. A Dispatcher serves it, with one execution context per profile (per profile and thread, for a
   concurrent replay): the context memory reported is engines.context_memory_size times those.
3. Checked and warmed up, untimed: each distinct shape is served once and its outputs compared
   with ONNX Runtime's for the same inputs (computed once per shape for every candidate; bit for
   bit where the model is the identity, else within reference.py's tolerance), then the
   workload's first `warmup` requests are served.
4. Timed: the workload's requests in order, each request's latency the perf_counter_ns around
   Dispatcher.infer, which returns once the outputs are in host memory. One thread sends them
   one at a time; with threads > 1, that many threads take the next request of the workload as
   each finishes its last, and the throughput is the requests over the replay's wall time.
   Each shape's latency is the median of its requests' (scoring.py weighs it by their count).

The requests are random arrays made once per distinct shape (make_requests): the dtypes are the
model's inputs', floats standard normal, integers uniform within a range per input (token ids
must stay within the vocabulary; 0..99 unless the caller says otherwise), booleans 0 or 1.

plan_profiles measures the wide profile first, passes its per-shape latencies to
candidates.plan_candidates, then measures the planned sets and the user's. TensorRT and CUDA
are imported only where an engine is built or served; everything else here runs without them.
"""

import hashlib
import json
import statistics
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dynamic_shapes.planner.candidates import given_candidate, plan_candidates, wide_candidate
from dynamic_shapes.planner.scoring import Measurement, rank
from dynamic_shapes.planner.workloads import describe_key, summarize
from dynamic_shapes.profiles import profile_shapes, profiles_to_command_line, profiles_to_json

# Integer inputs take values in this range, both ends included, unless the caller gives one.
DEFAULT_VALUE_RANGE = (0, 99)
# Untimed requests of the workload served after the check, before the timed replay.
DEFAULT_WARMUP = 100
# How often the replay's progress line is rewritten, in requests.
PROGRESS_EVERY = 250
# And how often the check's, in distinct shapes (each costs an ONNX Runtime run the first time).
CHECK_PROGRESS_EVERY = 50


# The model


def read_input_dtypes(model_path) -> dict:
    """{input name: NumPy dtype} of an ONNX model's inputs (initializers aside), in order."""
    from dynamic_shapes.onnx_inputs import load_graph, tensor_dtype

    path, model = Path(model_path), load_graph(model_path)
    initializers = {init.name for init in model.graph.initializer}
    return {
        tensor.name: tensor_dtype(tensor, path, "input")
        for tensor in model.graph.input
        if tensor.name not in initializers
    }


def is_identity(model_path) -> bool:
    """Whether the model's graph only passes its inputs through (Identity nodes alone, or none):
    then its outputs are checked bit for bit."""
    from dynamic_shapes.onnx_inputs import load_graph

    graph = load_graph(model_path).graph
    return all(node.op_type == "Identity" for node in graph.node)


def check_workload_fits_model(histogram: Mapping, model_path) -> None:
    """ValueError unless every request of the workload gives the model's inputs, each at its
    rank and fixed sizes: a workload recorded from another model cannot be replayed on this
    one."""
    from dynamic_shapes.onnx_inputs import read_input_dimensions
    from dynamic_shapes.profiles import describe

    inputs = read_input_dimensions(model_path)
    for key in histogram:
        shapes = dict(key)
        if set(shapes) != set(inputs):
            raise ValueError(
                f"the workload's requests give inputs {sorted(shapes)}, but {model_path} takes "
                f"{sorted(inputs)}; plan with a workload recorded for this model"
            )
        for name, shape in shapes.items():
            dims = inputs[name]
            if len(shape) != len(dims) or any(
                fixed is not None and size != fixed for size, fixed in zip(shape, dims, strict=True)
            ):
                raise ValueError(
                    f"the workload's request {describe_key(key)} does not fit {model_path}, "
                    f"whose input {name} is {describe(dims)}"
                )


# The requests


def parse_value_range(text: str) -> tuple:
    """('input_ids', (0, 999)) for 'input_ids:0..999'; ValueError says the syntax."""
    name, _, span = text.rpartition(":")
    low, dots, high = span.partition("..")
    try:
        values = (int(low), int(high))
    except ValueError:
        values = None
    if not name or not dots or values is None or values[0] > values[1]:
        raise ValueError(
            f"{text!r} is not NAME:LOW..HIGH with integers LOW <= HIGH, e.g. input_ids:0..999"
        )
    return name, values


def check_value_ranges(value_ranges: Mapping, dtypes: Mapping, model_path) -> None:
    """ValueError unless each range names an integer input of the model and fits its dtype."""
    for name, (low, high) in value_ranges.items():
        dtype = dtypes.get(name)
        if dtype is None or not np.issubdtype(dtype, np.integer):
            integers = [n for n, d in dtypes.items() if np.issubdtype(d, np.integer)]
            has = f"its integer inputs are {integers}" if integers else "it has none"
            raise ValueError(f"{name} is not an integer input of {model_path}; {has}")
        info = np.iinfo(dtype)
        if low < info.min or high > info.max:
            raise ValueError(f"{name}: {low}..{high} does not fit its dtype {dtype}")


def make_request(key: tuple, dtypes: Mapping, value_ranges: Mapping, seed: int) -> dict:
    """{input name: array} of the shapes of `key`, random: floats standard normal, integers
    uniform within the input's range (DEFAULT_VALUE_RANGE unless given), booleans 0 or 1.
    Random values, unlike zeros, expose misplaced or stale data."""
    rng = np.random.default_rng(seed)
    request = {}
    for name, shape in key:
        dtype = np.dtype(dtypes[name])
        if np.issubdtype(dtype, np.floating):
            array = rng.standard_normal(shape, dtype=np.float32).astype(dtype, copy=False)
        elif dtype == np.bool_:
            array = rng.integers(0, 2, shape).astype(np.bool_)
        elif np.issubdtype(dtype, np.integer):
            low, high = value_ranges.get(name, DEFAULT_VALUE_RANGE)
            array = rng.integers(low, high, shape, dtype=np.int64, endpoint=True).astype(dtype)
        else:
            raise ValueError(f"input {name} has dtype {dtype}; a replay makes numbers or booleans")
        request[name] = array
    return request


def make_requests(histogram: Mapping, dtypes: Mapping, value_ranges=None, seed: int = 0) -> dict:
    """{shape key: request} with one request per distinct shape, each with a seed of its own:
    every request of a shape is served the same arrays, in every candidate's replay."""
    return {
        key: make_request(key, dtypes, value_ranges or {}, seed + index)
        for index, key in enumerate(histogram)
    }


# The engines


def engine_name(model_path, profiles) -> str:
    """'dynamic_convnet.plan-1a2b3c4d5e6f.engine': the model's name and a hash of the profiles,
    so that each candidate has a file of its own and the same profiles find it again."""
    text = json.dumps(profile_shapes(profiles), sort_keys=True)
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    return f"{Path(model_path).stem}.plan-{digest}.engine"


def engine_profiles(profiles) -> dict:
    """The {name: Profile} that engines.load_or_build_engine builds, in order."""
    return {f"profile {index}": profile for index, profile in enumerate(profiles)}


def recorded_build_seconds(engine_path) -> float | None:
    """The build time saved in an engine's record, or None for a record without one."""
    from dynamic_shapes.engines import read_record

    seconds = read_record(engine_path).get("build_seconds")
    return float(seconds) if isinstance(seconds, int | float) else None


# The reference


class ShapeChecks:
    """Each distinct shape's expected outputs, computed once by ONNX Runtime for its request and
    compared with every candidate's."""

    def __init__(self, model_path, requests: Mapping, exact: bool):
        from dynamic_shapes.reference import OnnxRuntimeReference

        self.reference = OnnxRuntimeReference(model_path)
        self.requests, self.exact = requests, exact
        self.expected = {}
        self.largest_difference = 0.0

    def outputs_by_name(self, outputs) -> dict:
        """What Dispatcher.infer returned, as {output name: array}."""
        if isinstance(outputs, Mapping):
            return dict(outputs)
        (name,) = self.reference.output_names
        return {name: outputs}

    def check(self, candidate_name: str, key: tuple, outputs) -> None:
        """AssertionError, naming the candidate and the shape, unless the outputs are ONNX
        Runtime's: a candidate that computes wrong results has no figures worth keeping."""
        from dynamic_shapes.reference import largest_difference, mismatch

        if key not in self.expected:
            self.expected[key] = self.reference(self.requests[key])
        outputs = self.outputs_by_name(outputs)
        problem = mismatch(outputs, self.expected[key], self.exact)
        if problem:
            raise AssertionError(
                f"{candidate_name}, request {describe_key(key)}: {problem} (ONNX Runtime)"
            )
        found = largest_difference(outputs, self.expected[key])
        self.largest_difference = max(self.largest_difference, found)


# The replay


@dataclass
class Replay:
    """A timed replay: each shape's latencies in nanoseconds, in the order they were served,
    and the replay's wall time in seconds."""

    samples: dict = field(default_factory=dict)
    wall_seconds: float = 0.0

    @property
    def requests(self) -> int:
        return sum(map(len, self.samples.values()))

    def latencies(self) -> dict:
        """{shape key: the median of its latencies, in seconds}: what scoring.py takes."""
        return {key: statistics.median(ns) / 1e9 for key, ns in self.samples.items()}

    def shape_figures(self) -> list:
        """Per shape: its requests and their median, mean and largest latency in seconds."""
        return [
            {
                "shapes": {name: list(shape) for name, shape in key},
                "requests": len(ns),
                "median_s": statistics.median(ns) / 1e9,
                "mean_s": statistics.fmean(ns) / 1e9,
                "max_s": max(ns) / 1e9,
            }
            for key, ns in self.samples.items()
        ]


def replay(infer, order: list, requests: Mapping, threads: int = 1, progress=None, label=""):
    """Serves `order` (shape keys, the workload's requests in order) through `infer(request)`,
    timing each call; with threads > 1, that many threads take the next request as each
    finishes one. Returns a Replay."""
    result = Replay({key: [] for key in dict.fromkeys(order)})
    served = [0]
    lock = threading.Lock()
    positions = iter(range(len(order)))
    failures = []

    def say():
        if progress is not None and served[0] % PROGRESS_EVERY == 0:
            progress(f"{label}: replayed {served[0]}/{len(order)} requests")

    def send():
        timed = []
        try:
            while True:
                with lock:
                    position = next(positions, None)
                if position is None or failures:
                    break
                key = order[position]
                request = requests[key]
                start = time.perf_counter_ns()
                infer(request)
                timed.append((key, time.perf_counter_ns() - start))
                with lock:
                    served[0] += 1
                    say()
        except BaseException as error:
            failures.append(error)
        with lock:
            for key, ns in timed:
                result.samples[key].append(ns)

    start = time.perf_counter()
    if threads == 1:
        send()
    else:
        workers = [threading.Thread(target=send, daemon=True) for _ in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    result.wall_seconds = time.perf_counter() - start
    if failures:
        raise failures[0]
    return result


@dataclass
class Settings:
    """How candidates are measured: the engine folder, threads, untimed requests before the
    timed replay, and whether engines are rebuilt even where a saved one fits."""

    engine_dir: Path
    threads: int = 1
    warmup: int = DEFAULT_WARMUP
    rebuild: bool = False


def measure_candidate(model_path, candidate, order, requests, checks, settings, progress=None):
    """Builds (or reuses) the candidate's engine, checks and replays the workload on it; returns
    its scoring.Measurement and its details for the report's JSON."""
    from polygraphy.logger import G_LOGGER

    from dynamic_shapes.engines import context_memory_size, load_or_build_engine
    from dynamic_shapes.serving.dispatcher import Dispatcher

    engine_path = Path(settings.engine_dir) / engine_name(model_path, candidate.profiles)
    # Polygraphy's build log would bury the progress; its warnings and errors still show.
    with G_LOGGER.verbosity(G_LOGGER.WARNING):
        engine, how = load_or_build_engine(
            model_path,
            engine_path,
            engine_profiles(candidate.profiles),
            rebuild=settings.rebuild,
            progress=progress,
        )
    if progress is not None:
        progress(f"{candidate.name}: {how}")
    # The build time as the record keeps it: the same figure whether built now or reused.
    build_seconds = recorded_build_seconds(engine_path)
    contexts = len(candidate.profiles) * settings.threads
    context_memory = context_memory_size(engine) * contexts
    # Without the graphs of shapes sent again: the candidates' profiles are measured, not a
    # cache whose captures would fall inside the timed replay.
    with Dispatcher(engine, contexts_per_profile=settings.threads, graphs_after=None) as dispatcher:
        # Untimed: every shape once, its outputs checked, then the warm-up.
        for index, key in enumerate(requests):
            if progress is not None and index % CHECK_PROGRESS_EVERY == 0:
                progress(f"{candidate.name}: checking shape {index + 1}/{len(requests)}")
            checks.check(candidate.name, key, dispatcher.infer(requests[key]))
        for key in order[: settings.warmup]:
            dispatcher.infer(requests[key])
        timed = replay(
            dispatcher.infer, order, requests, settings.threads, progress, candidate.name
        )
    # The closed dispatcher holds the engine: both go now, so that the engine's GPU memory is
    # freed before the next candidate's engine is built.
    del dispatcher, engine
    measurement = Measurement(
        candidate,
        timed.latencies(),
        context_memory=context_memory,
        build_seconds=build_seconds,
        throughput=timed.requests / timed.wall_seconds if settings.threads > 1 else None,
    )
    details = {
        "engine": str(engine_path),
        "engine_line": how,
        "contexts": contexts,
        "replayed_requests": timed.requests,
        "wall_seconds": timed.wall_seconds,
        "shapes": timed.shape_figures(),
    }
    return measurement, details


@dataclass
class Plan:
    """What plan_profiles measured: each candidate's Measurement and details, in the order
    measured (the wide profile first, then the planned sets, then the user's)."""

    histogram: dict
    measurements: list
    details: list
    exact: bool
    largest_difference: float

    def ranked(self) -> list:
        return rank(self.histogram, self.measurements)

    @property
    def best(self):
        return self.ranked()[0][0].candidate


def plan_profiles(
    model_path,
    workload: list,
    limit: int,
    settings: Settings,
    given=None,
    value_ranges=None,
    exact=None,
    progress=None,
) -> Plan:
    """The planner, as a library function: for `workload` (the requests' shape keys in order),
    measures the wide profile, plans up to `limit` candidate sets with its per-shape latencies,
    measures each, and the user's `given` profiles (a list of Polygraphy Profiles, or None).
    `exact`: whether outputs must equal ONNX Runtime's bit for bit (default: where the model is
    the identity)."""
    from dynamic_shapes.planner.workloads import make_histogram

    histogram = make_histogram(workload)
    check_workload_fits_model(histogram, model_path)
    exact = is_identity(model_path) if exact is None else exact
    requests = make_requests(histogram, read_input_dtypes(model_path), value_ranges)
    checks = ShapeChecks(model_path, requests, exact)
    measured, details = [], []

    def measure(candidate):
        if progress is not None:
            progress(f"{candidate.name}: {len(candidate.profiles)} profiles")
        measurement, detail = measure_candidate(
            model_path, candidate, workload, requests, checks, settings, progress
        )
        measured.append(measurement)
        details.append(detail)
        return measurement

    wide = measure(wide_candidate(histogram))
    # The wide profile's latencies weigh the planner's cost model (candidates.py).
    for candidate in plan_candidates(histogram, limit, latencies=wide.latencies)[1:]:
        measure(candidate)
    if given is not None:
        measure(given_candidate("given", given))
    return Plan(histogram, measured, details, exact, checks.largest_difference)


# The JSON


def plan_record(plan: Plan, settings: Settings, environment: dict, extra=None) -> dict:
    """Every figure of a plan, for the --json file: the workload, the settings, each candidate
    (profiles, Polygraphy options, scores, memory, build time, per-shape latencies), the ranking,
    the best candidate and the environment."""
    ranked = plan.ranked()
    places = {id(m): place for place, (m, _) in enumerate(ranked, 1)}
    scores = {id(m): s for m, s in ranked}
    candidates = []
    for measurement, detail in zip(plan.measurements, plan.details, strict=True):
        candidate, score = measurement.candidate, scores[id(measurement)]
        candidates.append(
            {
                "name": candidate.name,
                "role": candidate.role,
                "rank": places[id(measurement)],
                "explanation": candidate.explanation,
                "profiles": json.loads(profiles_to_json(candidate.profiles)),
                "polygraphy_options": profiles_to_command_line(candidate.profiles),
                "cost": candidate.cost,
                "mean_s": score.mean,
                "p50_s": score.p50,
                "p99_s": score.p99,
                "throughput_per_s": score.throughput,
                "throughput_measured": measurement.throughput is not None,
                "context_memory_bytes": measurement.context_memory,
                "build_seconds": measurement.build_seconds,
                **detail,
            }
        )
    summary = summarize(plan.histogram)
    return {
        "workload": {
            "requests": summary.requests,
            "distinct_shapes": summary.distinct,
            "summary": summary.describe(),
        },
        "settings": {
            "threads": settings.threads,
            "warmup": settings.warmup,
            "engine_dir": str(settings.engine_dir),
            "checked": "bit for bit" if plan.exact else "within a tolerance",
            **(extra or {}),
        },
        "largest_difference_from_onnx_runtime": plan.largest_difference,
        "candidates": candidates,
        "best": ranked[0][0].candidate.name,
        "environment": environment,
    }

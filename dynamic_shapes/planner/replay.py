"""Measuring candidate profile sets: each one's engine built (or reused) and served through the
Dispatcher as a service would serve it, every distinct shape's outputs checked against ONNX
Runtime, the workload replayed on all of them side by side, and what was measured gathered into
scoring.Measurements.

How the candidates are measured (plan_profiles):

1. Built (build_candidate), one at a time with nothing else on the GPU: each engine is loaded
   or built by engines.load_or_build_engine, saved in the engine folder as
   `<model>.plan-<hash>.engine` (engine_name: the hash is of the profiles alone; the record
   beside it says which model, TensorRT and GPU it was built from, by and for, so a changed
   model is rebuilt in place). The build time is kept in the record, so a reused engine still
   reports it.
2. Served (serve_candidate): the engine loaded from its file, a Dispatcher with one execution
   context per profile (per profile and thread, for a concurrent replay): the context memory
   reported is engines.context_memory_size times those. Untimed, each distinct shape is served
   once and its outputs compared with ONNX Runtime's for the same inputs (computed once per
   shape for every candidate; bit for bit where the model is the identity, else within
   reference.py's tolerance), then the workload's first `warmup` requests are served.
3. The wide profile is built and served first and replays the workload alone: its per-shape
   latencies weigh candidates.plan_candidates' cuts. It is closed; the planned sets and the
   user's are built; then every candidate is served at once, so the GPU must hold all their
   engines and contexts together.
4. Timed (replay_side_by_side): the workload's requests in order on every candidate, in rounds
   of ROUND_REQUESTS that take turns, each request's latency the perf_counter_ns around
   Dispatcher.infer, which returns once the outputs are in host memory. One thread sends them
   one at a time; with threads > 1, that many threads take the next request of the round as
   each finishes its last, and the throughput is the requests over the rounds' wall time.
   Each shape's latency is the median of its requests' (scoring.py weighs it by their count).

The requests are random arrays made once per distinct shape (requests.make_requests). TensorRT
and CUDA are imported only where an engine is built or served; everything else here runs
without them.
"""

import contextlib
import hashlib
import json
import statistics
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from dynamic_shapes.planner.candidates import given_candidate, plan_candidates, wide_candidate
from dynamic_shapes.planner.requests import (
    check_workload_fits_model,
    is_identity,
    make_requests,
    read_input_dtypes,
)
from dynamic_shapes.planner.scoring import Measurement, rank
from dynamic_shapes.planner.workloads import describe_key, summarize
from dynamic_shapes.profiles import profile_shapes, profiles_to_command_line, profiles_to_json

# Untimed requests of the workload served after the check, before the timed replay.
DEFAULT_WARMUP = 100
# How often the replay's progress line is rewritten, in requests.
PROGRESS_EVERY = 250
# The side-by-side replay goes round the candidates this many requests a thread at a time: each
# round long enough that a candidate's first request after another's is a small part of it.
ROUND_REQUESTS = 100
# And how often the check's, in distinct shapes (each costs an ONNX Runtime run the first time).
CHECK_PROGRESS_EVERY = 50


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


def replay_side_by_side(
    infers: list, order: list, requests: Mapping, threads: int = 1, progress=None
) -> list:
    """Replays `order` on each of `infers` (one per candidate), side by side: the workload in
    rounds of ROUND_REQUESTS requests a thread, each round served by every candidate in turn, in
    the order turns() gives. Whatever drifts while a replay runs (the GPU's clocks and
    temperature, other work on the machine) then weighs on every candidate alike, where one
    replay after another would hand it to whichever ran last. With threads > 1, each round
    starts its threads and waits for the last request: the throughput counts that drain once a
    round. Returns one Replay of the whole workload per infer, in the order given."""
    results = [Replay({key: [] for key in dict.fromkeys(order)}) for _ in infers]
    size = ROUND_REQUESTS * threads
    for number, start in enumerate(range(0, len(order), size)):
        part = order[start : start + size]
        for index in turns(number, len(infers)):
            timed = replay(infers[index], part, requests, threads)
            for key, ns in timed.samples.items():
                results[index].samples[key].extend(ns)
            results[index].wall_seconds += timed.wall_seconds
        if progress is not None:
            progress(
                f"side by side: replayed {start + len(part)}/{len(order)} requests on each of "
                f"{len(infers)} candidates"
            )
    return results


def turns(number: int, count: int) -> list:
    """The order in which `count` candidates serve round `number`: rotated by one every second
    round and reversed every other round. Over 2 x count rounds each candidate takes each place
    as often as any other, and follows the one before it as often as the one after it rather
    than always the same one (three candidates serve in all six orders)."""
    shift = (number // 2) % count
    order = [*range(shift, count), *range(shift)]
    return order[::-1] if number % 2 else order


@dataclass
class Settings:
    """How candidates are measured: the engine folder, threads, untimed requests before the
    timed replay, and whether engines are rebuilt even where a saved one fits."""

    engine_dir: Path
    threads: int = 1
    warmup: int = DEFAULT_WARMUP
    rebuild: bool = False


@dataclass(frozen=True)
class Built:
    """A candidate's engine file, built now or found saved, and the line that says which."""

    candidate: object
    engine_path: Path
    engine_line: str


def build_candidate(model_path, candidate, settings, progress=None) -> Built:
    """Builds the candidate's engine and saves it, or finds a saved one that fits. The engine is
    not kept: each build has the GPU to itself, and serve_candidate loads it from its file."""
    from polygraphy.logger import G_LOGGER

    from dynamic_shapes.engines import load_or_build_engine

    engine_path = Path(settings.engine_dir) / engine_name(model_path, candidate.profiles)
    # Polygraphy's build log would bury the progress; its warnings and errors still show.
    with G_LOGGER.verbosity(G_LOGGER.WARNING):
        _, how = load_or_build_engine(
            model_path,
            engine_path,
            engine_profiles(candidate.profiles),
            rebuild=settings.rebuild,
            progress=progress,
        )
    if progress is not None:
        progress(f"{candidate.name}: {how}")
    return Built(candidate, engine_path, how)


@dataclass
class Served:
    """A candidate's engine served by an open Dispatcher, its outputs checked and warmed up: what
    its figures need besides its timed replay."""

    built: Built
    dispatcher: object
    build_seconds: float | None
    contexts: int
    context_memory: int


def serve_candidate(built: Built, order, requests, checks, settings, stack, progress=None):
    """Loads the candidate's engine and serves it through a Dispatcher held open by `stack` (a
    contextlib.ExitStack); every distinct shape is served once and checked, then the warm-up.
    Returns a Served."""
    from dynamic_shapes.engines import context_memory_size, load_engine
    from dynamic_shapes.serving.dispatcher import Dispatcher

    name = built.candidate.name
    engine = load_engine(built.engine_path)
    contexts = len(built.candidate.profiles) * settings.threads
    # Without the graphs of shapes sent again: the candidates' profiles are measured, not a
    # cache whose captures would fall inside the timed replay. The dispatcher holds the engine.
    dispatcher = stack.enter_context(
        Dispatcher(engine, contexts_per_profile=settings.threads, graphs_after=None)
    )
    for index, key in enumerate(requests):
        if progress is not None and index % CHECK_PROGRESS_EVERY == 0:
            progress(f"{name}: checking shape {index + 1}/{len(requests)}")
        checks.check(name, key, dispatcher.infer(requests[key]))
    for key in order[: settings.warmup]:
        dispatcher.infer(requests[key])
    return Served(
        built,
        dispatcher,
        # The build time as the record keeps it: the same figure whether built now or reused.
        recorded_build_seconds(built.engine_path),
        contexts,
        context_memory_size(engine) * contexts,
    )


def measurement_of(served: Served, timed: Replay, threads: int) -> tuple:
    """A served candidate's scoring.Measurement from its timed replay, and its details for the
    report's JSON."""
    measurement = Measurement(
        served.built.candidate,
        timed.latencies(),
        context_memory=served.context_memory,
        build_seconds=served.build_seconds,
        throughput=timed.requests / timed.wall_seconds if threads > 1 else None,
    )
    details = {
        "engine": str(served.built.engine_path),
        "engine_line": served.built.engine_line,
        "contexts": served.contexts,
        "replayed_requests": timed.requests,
        "wall_seconds": timed.wall_seconds,
        "shapes": timed.shape_figures(),
    }
    return measurement, details


@dataclass
class Plan:
    """What plan_profiles measured: each candidate's Measurement and details, in the order
    served (the wide profile first, then the planned sets, then the user's)."""

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
    replays it on the wide profile alone, plans up to `limit` candidate sets with its per-shape
    latencies, serves them and the user's `given` profiles (a list of Polygraphy Profiles, or
    None), and measures them all by replaying the workload on them side by side. `exact`:
    whether outputs must equal ONNX Runtime's bit for bit (default: where the model is the
    identity)."""
    from dynamic_shapes.planner.workloads import make_histogram

    histogram = make_histogram(workload)
    check_workload_fits_model(histogram, model_path)
    exact = is_identity(model_path) if exact is None else exact
    requests = make_requests(histogram, read_input_dtypes(model_path), value_ranges)
    checks = ShapeChecks(model_path, requests, exact)
    with contextlib.ExitStack() as stack:

        def build(candidate):
            if progress is not None:
                progress(f"{candidate.name}: {len(candidate.profiles)} profiles")
            return build_candidate(model_path, candidate, settings, progress)

        def serve(built, on):
            return serve_candidate(built, workload, requests, checks, settings, on, progress)

        wide = build(wide_candidate(histogram))
        # The planner's cost model weighs the wide profile's latencies, from a replay of its
        # own. It is closed before the other candidates are built, which have the GPU to
        # themselves.
        with contextlib.ExitStack() as alone:
            dispatcher = serve(wide, alone).dispatcher
            alone_replay = replay(
                dispatcher.infer, workload, requests, settings.threads, progress, "wide"
            )
        del dispatcher  # it holds the engine
        others = plan_candidates(histogram, limit, latencies=alone_replay.latencies())[1:]
        if given is not None:
            others.append(given_candidate("given", given))
        built = [wide, *map(build, others)]
        served = [serve(b, stack) for b in built]
        timed = replay_side_by_side(
            [s.dispatcher.infer for s in served], workload, requests, settings.threads, progress
        )
    figures = [measurement_of(s, t, settings.threads) for s, t in zip(served, timed, strict=True)]
    return Plan(
        histogram, [m for m, _ in figures], [d for _, d in figures], exact,
        checks.largest_difference,
    )  # fmt: skip


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

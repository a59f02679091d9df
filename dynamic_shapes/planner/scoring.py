"""Scoring candidates by what a replay measured: the workload's latency and throughput on each,
weighted by the workload's histogram, and the candidates ranked by them.

A replay fills in one Measurement per candidate: each distinct shape's latency in seconds (one
figure per shape, e.g. the median of that shape's requests; keyed by shape key, see
workloads.py), and where it has them the contexts' memory, the engine's build time and a
throughput it measured itself (a concurrent replay). score() weighs each shape's latency by
how many requests of the workload have it:

    mean        sum(count * latency) / requests
    p50, p99    nearest rank: the least latency that at least 50% (99%) of the requests
                do not exceed
    throughput  requests per second; measured where given, else one request at a time, back
                to back: requests / sum(count * latency)

rank() orders candidates: the lower mean latency first; of equal means the lower p99, then
the fewer profiles.
"""

import math
from collections.abc import Mapping
from dataclasses import dataclass

from dynamic_shapes.planner.candidates import Candidate
from dynamic_shapes.planner.workloads import describe_key


@dataclass(frozen=True)
class Measurement:
    """What a replay measured for one candidate: latencies {shape key: seconds} for every
    shape of the workload; context_memory in bytes, build_seconds and throughput (requests per
    second) where measured, else None."""

    candidate: Candidate
    latencies: Mapping
    context_memory: int | None = None
    build_seconds: float | None = None
    throughput: float | None = None


@dataclass(frozen=True)
class Score:
    """The workload's latency on a candidate, in seconds, and its throughput in requests per
    second."""

    requests: int
    mean: float
    p50: float
    p99: float
    throughput: float


def score(histogram: Mapping, latencies: Mapping, throughput: float | None = None) -> Score:
    """The workload's mean, p50 and p99 latency and its throughput, each shape's latency
    weighted by its count; ValueError names a shape with no latency, or a latency that is not
    a positive number of seconds."""
    if not histogram:
        raise ValueError("the workload holds no requests; there is nothing to score")
    timed = []
    for key, count in histogram.items():
        if key not in latencies:
            raise ValueError(
                f"no latency measured for {describe_key(key)} ({count} requests of the "
                "workload); a replay measures every shape of the workload"
            )
        seconds = latencies[key]
        if not isinstance(seconds, int | float) or not math.isfinite(seconds) or seconds <= 0:
            raise ValueError(
                f"the latency of {describe_key(key)} is {seconds!r}; give a positive number of "
                "seconds"
            )
        timed.append((float(seconds), count))
    requests = sum(count for _, count in timed)
    busy = math.fsum(seconds * count for seconds, count in timed)
    if throughput is not None and not throughput > 0:
        raise ValueError(f"throughput {throughput!r}: give requests per second, above 0")
    return Score(
        requests,
        busy / requests,
        percentile(timed, requests, 50),
        percentile(timed, requests, 99),
        requests / busy if throughput is None else float(throughput),
    )


def percentile(timed: list, requests: int, percent: float) -> float:
    """The nearest-rank percentile of latencies given as [(seconds, count)]."""
    rank = max(1, math.ceil(percent / 100 * requests))
    seen = 0
    for seconds, count in sorted(timed):
        seen += count
        if seen >= rank:
            return seconds
    raise AssertionError("the counts add up to fewer requests than given")


def score_measurement(histogram: Mapping, measurement: Measurement) -> Score:
    return score(histogram, measurement.latencies, measurement.throughput)


def rank(histogram: Mapping, measurements) -> list:
    """[(measurement, score)], the best first: lower mean latency, then lower p99, then fewer
    profiles; otherwise in the order given."""
    scored = [(m, score_measurement(histogram, m)) for m in measurements]
    return sorted(scored, key=lambda ms: (ms[1].mean, ms[1].p99, len(ms[0].candidate.profiles)))

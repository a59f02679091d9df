"""Timing calls: variants timed in rounds that rotate their order, their statistics, and where
a call spends its own time."""

import cProfile
import pstats
import time
from pathlib import Path

import numpy as np


def summarize(samples_ns, rounds=1) -> dict:
    """Median, p90 and p99 of samples in nanoseconds, in microseconds; with several `rounds`
    of as many samples each, in order, also each round's median, whose spread is the drift
    between rounds."""
    samples = np.asarray(samples_ns, dtype=np.float64) / 1000.0
    median, p90, p99 = np.percentile(samples, [50, 90, 99])
    stats = {"median_us": median, "p90_us": p90, "p99_us": p99, "samples": len(samples)}
    if rounds > 1:
        stats["round_medians_us"] = [float(np.median(r)) for r in np.split(samples, rounds)]
    return stats


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
    return {name: summarize(values, settings.rounds) for name, values in samples.items()}


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

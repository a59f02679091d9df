"""The planner's report: the candidates a replay measured, ranked, as text in the manner of
perf_analyzer's and trtexec's summaries (latencies in usec, throughput in infer/sec), then each
candidate's profiles in Polygraphy's options, then the best one's options, ready to paste.

    Workload: N requests, N distinct shapes; X [1..128, 3, 28, 28]; most frequent ...
    Rank  Candidate   Profiles  Mean (usec)  p50 (usec)  p99 (usec)  Throughput (infer/sec)  ...
    1     3 profiles         3          ...         ...         ...                     ...  ...

"vs wide" and "vs <given>" are the mean latency of the wide profile (of the user's profiles)
divided by the candidate's: above 1, the candidate is faster by that factor. A figure a replay
did not measure (memory, build time) is shown as "-". Under each candidate but the wide one,
its requests by the profile that serves them, against the wide profile (breakdown.py). Nothing
here needs a GPU.
"""

from collections.abc import Mapping

from dynamic_shapes.planner.breakdown import by_profile
from dynamic_shapes.planner.scoring import rank
from dynamic_shapes.planner.workloads import summarize
from dynamic_shapes.profiles import profiles_to_command_line

MIB = 1024 * 1024
USEC = 1e6


def format_report(histogram: Mapping, measurements) -> str:
    """The report for measurements of candidates (scoring.Measurement) over a workload."""
    measurements = list(measurements)
    if not measurements:
        raise ValueError("no candidate was measured; there is nothing to report")
    ranked = rank(histogram, measurements)
    # The wide profile first, then the user's, in the order given.
    references = [
        (f"vs {m.candidate.name}", s.mean)
        for role in ("wide", "given")
        for m, s in sorted(ranked, key=lambda ms: measurements.index(ms[0]))
        if m.candidate.role == role
    ]
    header = [
        "Rank",
        "Candidate",
        "Profiles",
        "Mean (usec)",
        "p50 (usec)",
        "p99 (usec)",
        "Throughput (infer/sec)",
        "Context memory (MiB)",
        "Build (s)",
        *(name for name, _ in references),
    ]
    rows = [
        [
            str(place),
            m.candidate.name,
            str(len(m.candidate.profiles)),
            f"{s.mean * USEC:.1f}",
            f"{s.p50 * USEC:.1f}",
            f"{s.p99 * USEC:.1f}",
            f"{s.throughput:.1f}",
            "-" if m.context_memory is None else f"{m.context_memory / MIB:.1f}",
            "-" if m.build_seconds is None else f"{m.build_seconds:.1f}",
            *(f"{mean / s.mean:.2f}x" for _, mean in references),
        ]
        for place, (m, s) in enumerate(ranked, 1)
    ]
    lines = [f"Workload: {summarize(histogram).describe()}", *table(header, rows)]
    if references:
        lines.append(
            f"{', '.join(name for name, _ in references)}: that candidate's mean latency "
            "divided by this one's (above 1: this one is faster)"
        )
    wide = next((m for m in measurements if m.candidate.role == "wide"), None)
    for place, (m, s) in enumerate(ranked, 1):
        candidate = m.candidate
        lines += ["", f"[{place}] {candidate.name} ({candidate.role}): {candidate.explanation}"]
        lines += [f"  profile {i}: {' '.join(o)}" for i, o in enumerate(candidate.options())]
        lines.append(
            f"  latency: mean {s.mean * USEC:.1f} usec, p50 {s.p50 * USEC:.1f} usec, p99 "
            f"{s.p99 * USEC:.1f} usec over {s.requests} requests; throughput "
            f"{s.throughput:.1f} infer/sec"
        )
        if wide is not None and m is not wide:
            lines += against_wide(histogram, m, wide)
    best = ranked[0][0].candidate
    lines += ["", f"Best: {best.name}", profiles_to_command_line(best.profiles)]
    return "\n".join(lines) + "\n"


def against_wide(histogram: Mapping, measurement, wide) -> list:
    """The candidate's requests by the profile that serves them, each group's mean latency here
    and on the wide profile."""
    shares = by_profile(
        histogram, measurement.candidate.profiles, measurement.latencies, wide.latencies
    )
    total = sum(share.requests for share in shares)
    lines = ["  against wide, by the profile that serves them:"]
    for share in shares:
        which = "split over several" if share.profile is None else f"profile {share.profile}"
        lines.append(
            f"    {which}: {share.requests} requests ({100 * share.requests / total:.1f}%), mean "
            f"{share.mean * USEC:.1f} usec here, {share.wide_mean * USEC:.1f} usec on wide: "
            f"{share.gain:.2f}x"
        )
    return lines


def table(header: list, rows: list) -> list:
    """Lines of a table: the first two columns left-aligned (rank, name), the others right."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells):
        return "  ".join(
            cell.ljust(width) if i < 2 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return [line(header), *map(line, rows)]

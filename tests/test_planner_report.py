"""Scoring candidates from a replay's per-shape timings, ranking them, and the report that shows
them: weighted latencies, the ranking's ties, ratios, and options that read back (CPU only)."""

import re
import shlex

import pytest

from dynamic_shapes.planner.candidates import given_candidate, plan_candidates
from dynamic_shapes.planner.report import format_report
from dynamic_shapes.planner.scoring import Measurement, rank, score
from dynamic_shapes.planner.workloads import make_histogram, shape_key
from dynamic_shapes.profiles import profile_shapes, profiles_from_command_line
from scenario import IMAGE_SHAPE, INPUT_NAME, PROFILES

ONE, FOUR = shape_key({"X": (1, 3)}), shape_key({"X": (4, 3)})


def test_the_workloads_latency_weighs_each_shape_by_its_count():
    histogram = {ONE: 98, FOUR: 2}
    found = score(histogram, {ONE: 0.001, FOUR: 0.011})
    assert found.requests == 100
    assert found.mean == pytest.approx((98 * 0.001 + 2 * 0.011) / 100)
    assert (found.p50, found.p99) == (0.001, 0.011)
    assert found.throughput == pytest.approx(100 / (98 * 0.001 + 2 * 0.011))
    # p99 is the least latency that 99% of the requests do not exceed: 99 of 100 here.
    assert score({ONE: 99, FOUR: 1}, {ONE: 0.001, FOUR: 0.011}).p99 == 0.001
    # A throughput measured by a concurrent replay is taken as measured.
    assert score(histogram, {ONE: 0.001, FOUR: 0.011}, throughput=5000.0).throughput == 5000.0


@pytest.mark.parametrize(
    ("latencies", "words"),
    [
        ({ONE: 0.001}, r"no latency measured for X \[4, 3\] \(2 requests"),
        ({ONE: 0.001, FOUR: 0.0}, r"the latency of X \[4, 3\] is 0.0"),
        ({ONE: 0.001, FOUR: float("nan")}, r"the latency of X \[4, 3\] is nan"),
    ],
)
def test_a_replay_that_missed_a_shape_is_refused(latencies, words):
    with pytest.raises(ValueError, match=words):
        score({ONE: 98, FOUR: 2}, latencies)


def candidates():
    histogram = make_histogram([{INPUT_NAME: (b, *IMAGE_SHAPE)} for b in [1] * 7 + [4] * 2 + [128]])
    planned = plan_candidates(histogram, 3)
    return histogram, [*planned, given_candidate("walkthrough", PROFILES.values())]


def timings(histogram, factor):
    return {key: factor * (30e-6 + 1e-6 * dict(key)[INPUT_NAME][0]) for key in histogram}


def test_the_lower_mean_wins_then_the_lower_p99_then_fewer_profiles():
    histogram, (wide, two, three, given) = candidates()
    measured = [
        Measurement(wide, timings(histogram, 1.0)),
        Measurement(two, timings(histogram, 0.5)),
        Measurement(three, timings(histogram, 0.5)),
        Measurement(given, timings(histogram, 0.8)),
    ]
    assert [m.candidate.name for m, _ in rank(histogram, measured)] == [
        "2 profiles",
        "3 profiles",
        "walkthrough",
        "wide",
    ]
    # Of equal means, the lower p99 wins over fewer profiles.
    flatter = {**timings(histogram, 0.5)}
    slow, fast = max(flatter, key=flatter.get), min(flatter, key=flatter.get)
    shift = 1e-6
    flatter[slow] -= shift
    flatter[fast] += shift * histogram[slow] / histogram[fast]
    measured[2] = Measurement(three, flatter)
    ranked = rank(histogram, measured)
    assert ranked[0][1].mean == pytest.approx(ranked[1][1].mean)
    assert [m.candidate.name for m, _ in ranked][:2] == ["3 profiles", "2 profiles"]


def test_the_report_ranks_compares_and_gives_options_that_read_back():
    histogram, (wide, _, three, given) = candidates()
    measured = [
        Measurement(wide, timings(histogram, 1.0), context_memory=3 << 20, build_seconds=12.5),
        Measurement(three, timings(histogram, 0.5), context_memory=5 << 20, build_seconds=30.0),
        Measurement(given, timings(histogram, 0.8)),
    ]
    text = format_report(histogram, measured)
    lines = text.splitlines()
    assert lines[0].startswith("Workload: 10 requests, 3 distinct shapes")
    header = re.split(r"\s{2,}", lines[1])
    assert header[:3] == ["Rank", "Candidate", "Profiles"]
    assert header[-2:] == ["vs wide", "vs walkthrough"]
    rows = [re.split(r"\s{2,}", line) for line in lines[2:5]]
    assert [row[:3] for row in rows] == [
        ["1", "3 profiles", "3"],
        ["2", "walkthrough", "3"],
        ["3", "wide", "1"],
    ]
    # The mean latency of the wide profile (the user's) over the candidate's.
    assert [row[-2:] for row in rows] == [
        ["2.00x", "1.60x"],
        ["1.25x", "1.00x"],
        ["1.00x", "0.80x"],
    ]
    mean_usec = score(histogram, timings(histogram, 1.0)).mean * 1e6
    assert rows[2][3] == f"{mean_usec:.1f}"
    assert [row[-4:-2] for row in rows] == [["5.0", "30.0"], ["-", "-"], ["3.0", "12.5"]]
    # Each candidate's profiles, in Polygraphy's options, read back as the candidate's.
    for candidate in (wide, three, given):
        options = [line.split(": ", 1)[1] for line in lines if line.startswith("  profile ")]
        assert all(o in options for o in (" ".join(p) for p in candidate.options()))
    assert lines[-2] == "Best: 3 profiles"
    best = profiles_from_command_line(lines[-1])
    assert profile_shapes(best) == profile_shapes(three.profiles)
    assert shlex.split(lines[-1])[0] == "--trt-min-shapes"


def test_a_report_of_nothing_is_refused():
    histogram, _ = candidates()
    with pytest.raises(ValueError, match="no candidate was measured"):
        format_report(histogram, [])

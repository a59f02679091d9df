"""Candidate profile sets cut from workloads: the scenario's and the transformer's cuts, the
wide baseline, the 1-D cuts against every partition, each shape held by the profile cut for
it, and the sets written as Polygraphy options and read back (CPU only)."""

import itertools
import math

import pytest

from dynamic_shapes.planner.candidates import (
    Planning,
    given_candidate,
    plan_candidates,
    range_costs,
    wide_candidate,
)
from dynamic_shapes.planner.generators import scenario_requests, transformer_requests
from dynamic_shapes.planner.workloads import make_histogram
from dynamic_shapes.profiles import (
    profile_shapes,
    profiles_from_command_line,
    profiles_from_json,
    profiles_to_command_line,
    profiles_to_json,
)
from scenario import (
    ATTENTION_MASK_NAME,
    IMAGE_SHAPE,
    INPUT_NAME,
    MAX_SEQUENCE,
    PROFILES,
    TOKEN_IDS_NAME,
)

SCENARIO = make_histogram(scenario_requests(4000, INPUT_NAME, IMAGE_SHAPE, seed=0))
TRANSFORMER = make_histogram(
    transformer_requests(4000, (TOKEN_IDS_NAME, ATTENTION_MASK_NAME), MAX_SEQUENCE, seed=0)
)


def affine_latencies(histogram):
    """Synthetic timings as a GPU gives them for a small network: a fixed 30 usec to launch, and
    1 usec more per image."""
    return {key: 30e-6 + 1e-6 * dict(key)[INPUT_NAME][0] for key in histogram}


def batch_ranges(candidate):
    return [
        (p[INPUT_NAME][0][0], p[INPUT_NAME][1][0], p[INPUT_NAME][2][0]) for p in shapes(candidate)
    ]


def shapes(candidate):
    return profile_shapes(candidate.profiles)


def test_three_profiles_hold_batch_1_the_peak_and_128_apart():
    candidates = plan_candidates(SCENARIO, 3, affine_latencies(SCENARIO))
    assert [c.name for c in candidates] == ["wide", "2 profiles", "3 profiles"]
    largest_peak = max(b for b in (dict(key)[INPUT_NAME][0] for key in SCENARIO) if b < 128)
    assert largest_peak > 16
    assert batch_ranges(candidates[2]) == [(1, 1, 1), (2, 4, largest_peak), (128, 128, 128)]
    assert f"cut into 3 ranges: 1 | 2..{largest_peak} | 128" in candidates[2].explanation
    for candidate in candidates:
        assert {shape[1:] for p in shapes(candidate) for shape in p[INPUT_NAME]} == {IMAGE_SHAPE}


def test_the_wide_profile_spans_the_workload_its_opt_the_most_frequent_shape():
    (profile,) = shapes(wide_candidate(SCENARIO))
    assert profile == {
        INPUT_NAME: ((1, *IMAGE_SHAPE), (1, *IMAGE_SHAPE), (128, *IMAGE_SHAPE)),
    }
    (profile,) = shapes(wide_candidate(TRANSFORMER))
    sequences = [dict(key)[TOKEN_IDS_NAME][1] for key in TRANSFORMER]
    batches = [dict(key)[TOKEN_IDS_NAME][0] for key in TRANSFORMER]
    top = max(TRANSFORMER, key=TRANSFORMER.get)
    for name in (TOKEN_IDS_NAME, ATTENTION_MASK_NAME):
        assert profile[name] == (
            (min(batches), min(sequences)),
            dict(top)[name],
            (max(batches), max(sequences)),
        )


def test_two_transformer_profiles_cut_the_sequence():
    wide, two = plan_candidates(TRANSFORMER, 2)
    assert "dimension 1 of attention_mask, input_ids cut into 2 ranges" in two.explanation
    first, second = (p[TOKEN_IDS_NAME] for p in shapes(two))
    (everything,) = (p[TOKEN_IDS_NAME] for p in shapes(wide))
    # The sequence ranges meet where the cut is; the batch ranges both span most of the batches.
    assert first[0][1] == everything[0][1]
    assert first[2][1] + 1 == second[0][1]
    assert second[2][1] == everything[2][1]
    assert first[0][0] == second[0][0] == 1
    for profile in shapes(two):
        assert profile[TOKEN_IDS_NAME] == profile[ATTENTION_MASK_NAME]


@pytest.mark.parametrize(("histogram", "latencies"), [(SCENARIO, None), (TRANSFORMER, None)])
def test_every_shape_lies_in_the_profile_cut_for_it_opt_its_most_frequent(histogram, latencies):
    for candidate in plan_candidates(histogram, 4, latencies):
        assert sorted(k for group in candidate.groups for k in group) == sorted(histogram)
        for profile, group in zip(shapes(candidate), candidate.groups, strict=True):
            for key in group:
                for name, shape in key:
                    low, _, high = profile[name]
                    assert all(a <= s <= b for a, s, b in zip(low, shape, high, strict=True))
            top = max(group, key=histogram.get)
            assert {name: opt for name, (_, opt, _) in profile.items()} == dict(top)


def test_the_cost_falls_as_the_profiles_grow_in_number():
    costs = [c.cost for c in plan_candidates(SCENARIO, 5, affine_latencies(SCENARIO))]
    assert costs == sorted(costs, reverse=True)
    assert len(set(costs)) == len(costs)


def partitions(n, k):
    """Every cut of range(n) into k contiguous, non-empty ranges, as (first, last) pairs."""
    for cuts in itertools.combinations(range(1, n), k - 1):
        bounds = [0, *cuts, n]
        yield [(bounds[i], bounds[i + 1] - 1) for i in range(k)]


def test_the_one_axis_cut_is_the_least_costly_of_every_partition():
    histogram = make_histogram(scenario_requests(600, INPUT_NAME, IMAGE_SHAPE, seed=5))
    planning = Planning(histogram)
    (axis,) = planning.axes
    sizes = sorted({axis.size(key) for key in histogram})
    counts = [sum(c for k, c in histogram.items() if axis.size(k) == s) for s in sizes]
    cost = range_costs(sizes, counts, [c * s for c, s in zip(counts, sizes, strict=True)])
    for k in (1, 2, 3, 4):
        ranges, found = planning.cuts(axis, k)[k]
        least = min(
            sum(cost[i][j] for i, j in partition) for partition in partitions(len(sizes), k)
        )
        assert found == pytest.approx(least)
        groups = [
            [key for key in histogram if low <= axis.size(key) <= high] for low, high in ranges
        ]
        assert sum(planning.group_cost(group) for group in groups) == pytest.approx(found)


def test_a_range_costs_each_request_its_distance_from_opt_and_the_width():
    # Sizes 1, 2, 4 with counts 1, 3, 1: opt 2; weights are the counts.
    cost = range_costs([1, 2, 4], [1, 3, 1], [1, 3, 1])
    log2 = math.log(2)
    assert cost[0][2] == pytest.approx(1 * log2 + 0 + 1 * log2 + 5 * math.log(4))
    assert cost[1][1] == 0
    assert cost[0][1] == pytest.approx(1 * log2 + 4 * log2)


def test_a_workload_of_few_shapes_gives_no_set_twice():
    histogram = make_histogram([{"X": (1, 3)}] * 5 + [{"X": (8, 3)}] * 2)
    candidates = plan_candidates(histogram, 4)
    assert [c.name for c in candidates] == ["wide", "2 profiles"]
    assert [p["X"] for p in shapes(candidates[1])] == [((1, 3),) * 3, ((8, 3),) * 3]
    only = make_histogram([{"X": (1, 3)}] * 5)
    assert [c.name for c in plan_candidates(only, 3)] == ["wide"]


def test_a_memory_limit_leaves_out_the_sets_above_it():
    def memory(profiles):
        return len(profiles) * 100

    found = plan_candidates(SCENARIO, 4, memory_limit=250, estimate_memory=memory)
    assert [c.name for c in found] == ["wide", "2 profiles"]
    with pytest.raises(ValueError, match="needs a way to tell a set of profiles' memory"):
        plan_candidates(SCENARIO, 4, memory_limit=250)


def test_planning_refuses_what_it_cannot_plan_for():
    with pytest.raises(ValueError, match="give 1 or more"):
        plan_candidates(SCENARIO, 0)
    with pytest.raises(ValueError, match="holds no requests"):
        plan_candidates({}, 3)
    latencies = affine_latencies(SCENARIO)
    latencies.pop(next(iter(SCENARIO)))
    with pytest.raises(ValueError, match=r"no latency given for X \[1, 3, 28, 28\]"):
        plan_candidates(SCENARIO, 3, latencies)


def test_candidates_read_back_from_polygraphy_options_and_the_profiles_file():
    for candidate in plan_candidates(TRANSFORMER, 3):
        text = profiles_to_command_line(candidate.profiles)
        assert profile_shapes(profiles_from_command_line(text)) == shapes(candidate)
        assert profile_shapes(profiles_from_json(profiles_to_json(candidate.profiles))) == (
            shapes(candidate)
        )
        assert [" ".join(o) for o in candidate.options()] == [
            " ".join(profiles_to_command_line([p]).replace("'", "").split())
            for p in candidate.profiles
        ]


def test_given_profiles_are_a_candidate_of_their_own():
    given = given_candidate("walkthrough", PROFILES.values())
    assert (given.role, given.cost, len(given.profiles)) == ("given", None, 3)
    with pytest.raises(ValueError, match="no profile given"):
        given_candidate("none", [])

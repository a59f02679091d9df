"""Where a candidate gains or loses against the wide profile: each request attributed to the
profile the dispatcher routes it to, and each group's mean latency beside the wide profile's
(CPU only)."""

import pytest

from dynamic_shapes.planner.breakdown import by_profile, serving_profile
from dynamic_shapes.planner.candidates import given_candidate, plan_candidates
from dynamic_shapes.planner.report import format_report
from dynamic_shapes.planner.scoring import Measurement
from dynamic_shapes.planner.workloads import make_histogram, shape_key
from dynamic_shapes.profiles import make_profiles, profile_shapes
from scenario import IMAGE_SHAPE, INPUT_NAME, PROFILES


def images(batch):
    return shape_key({INPUT_NAME: (batch, *IMAGE_SHAPE)})


def test_a_request_goes_to_the_profile_the_dispatcher_routes_it_to():
    walkthrough = profile_shapes(PROFILES)  # [1..1], [1..32] opt 4, [128..128]
    # Batch 1 lies in the first two: the nearest opt (1, not 4) serves it, as in the dispatcher.
    assert [serving_profile(images(b), walkthrough) for b in (1, 4, 32, 128)] == [0, 1, 1, 2]
    assert serving_profile(images(40), walkthrough) is None  # split over several


def test_every_dimension_of_every_input_decides():
    # Two inputs, keyed in name order; the profiles cut the sequence at 64.
    short, long = profile_shapes(make_profiles([
        {"ids": ((1, 1), (2, 32), (8, 64)), "mask": ((1, 1), (2, 32), (8, 64))},
        {"ids": ((1, 65), (2, 128), (8, 512)), "mask": ((1, 65), (2, 128), (8, 512))},
    ]))  # fmt: skip
    request = shape_key({"mask": (4, 100), "ids": (4, 100)})
    assert serving_profile(request, [short, long]) == 1
    assert serving_profile(shape_key({"mask": (4, 9), "ids": (4, 9)}), [short, long]) == 0
    assert serving_profile(shape_key({"mask": (9, 9), "ids": (9, 9)}), [short, long]) is None


def test_an_input_of_fixed_shape_left_out_of_the_profiles_holds_the_requests_shape():
    (profile,) = profile_shapes(make_profiles([{"ids": ((1, 1), (2, 32), (8, 64))}]))
    assert serving_profile(shape_key({"ids": (4, 9), "scale": (1,)}), [profile]) == 0
    assert serving_profile(shape_key({"ids": (4, 99), "scale": (1,)}), [profile]) is None


def test_each_profiles_requests_are_weighed_here_and_on_the_wide_profile():
    histogram = {images(1): 6, images(4): 3, images(8): 1, images(40): 2, images(128): 1}
    walkthrough = list(PROFILES.values())
    here = {images(1): 1.0, images(4): 2.0, images(8): 5.0, images(40): 9.0, images(128): 8.0}
    wide = {images(1): 2.0, images(4): 2.0, images(8): 5.0, images(40): 9.0, images(128): 24.0}
    shares = by_profile(histogram, walkthrough, here, wide)
    assert [(s.profile, s.requests) for s in shares] == [(0, 6), (1, 4), (2, 1), (None, 2)]
    assert (shares[0].mean, shares[0].wide_mean, shares[0].gain) == (1.0, 2.0, 2.0)
    assert shares[1].mean == pytest.approx((3 * 2.0 + 5.0) / 4) and shares[1].gain == 1.0
    assert shares[2].gain == 3.0
    assert (shares[3].mean, shares[3].gain) == (9.0, 1.0)


def test_the_report_shows_each_candidate_but_the_wide_one_by_profile():
    histogram = make_histogram([images(b) for b in [1] * 7 + [4] * 2 + [128]])
    wide, _, three = plan_candidates(histogram, 3)
    given = given_candidate("walkthrough", PROFILES.values())

    def timings(factor):
        return {key: factor * (30e-6 + 1e-6 * dict(key)[INPUT_NAME][0]) for key in histogram}

    measured = [
        Measurement(wide, timings(1.0)),
        Measurement(three, timings(0.5)),
        Measurement(given, timings(0.8)),
    ]
    lines = format_report(histogram, measured).splitlines()
    headings = [
        i
        for i, line in enumerate(lines)
        if line == "  against wide, by the profile that serves them:"
    ]
    assert len(headings) == 2  # the 3 profiles and the walkthrough's, not the wide one
    first = lines[headings[0] + 1 : headings[0] + 4]
    assert (
        first[0]
        == "    profile 0: 7 requests (70.0%), mean 15.5 usec here, 31.0 usec on wide: 2.00x"
    )
    assert [line.split(":")[0] for line in first] == [
        "    profile 0",
        "    profile 1",
        "    profile 2",
    ]
    assert lines[headings[1] + 2].endswith("1.25x")

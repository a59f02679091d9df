"""Where a candidate gains or loses against the wide profile: the workload's requests grouped by
the profile that serves them, and their mean latency on the candidate beside the same requests'
on the wide profile.

A set of narrower profiles is faster than one wide profile only where its profiles serve their
own requests faster. This shows, by measurement, which profile does and which does not: a
narrow profile whose requests take as long as on the wide profile means the engine's kernels
gain nothing from a narrower range (or its opt) there, and a profile that gains on few requests
moves the mean little.

Each request is attributed to the profile the dispatcher routes it to by its default rule
(routing.choose, "nearest-opt"); a request that no single profile holds is split by the
dispatcher over several, and is counted apart (profile None). Nothing here needs a GPU.
"""

import math
from collections.abc import Mapping
from dataclasses import dataclass

from dynamic_shapes.profiles import profile_shapes
from dynamic_shapes.serving.routing import ProfileRanges, choose

# The dispatcher's default routing rule, which the replay served every request by.
RULE = "nearest-opt"


@dataclass(frozen=True)
class ProfileShare:
    """The requests one profile of a candidate serves (profile None: those no single profile
    holds), and their mean latency in seconds there and on the wide profile."""

    profile: int | None
    requests: int
    mean: float
    wide_mean: float

    @property
    def gain(self) -> float:
        """The wide profile's mean over the candidate's: above 1, this profile is faster."""
        return self.wide_mean / self.mean


def serving_profile(key: tuple, shapes: list) -> int | None:
    """The index of the profile that serves a request of shape key `key`, or None where no
    single profile holds it; `shapes`: the profiles as profiles.profile_shapes gives them."""
    # An input of fixed shape may be left out of a profile: it holds the request's shape.
    ranges = [
        ProfileRanges(
            *(tuple(p.get(name, (shape,) * 3)[i] for name, shape in key) for i in range(3))
        )
        for p in shapes
    ]
    return choose(tuple(shape for _, shape in key), ranges, RULE)


def by_profile(histogram: Mapping, profiles, latencies: Mapping, wide_latencies: Mapping) -> list:
    """[ProfileShare] of a candidate with `profiles` over the workload `histogram`, in profile
    order (the requests no single profile holds last): each request weighs its shape's latency,
    {shape key: seconds}, on the candidate and on the wide profile."""
    shapes = profile_shapes(profiles)  # once, not per shape of the workload
    groups = {}
    for key, count in histogram.items():
        groups.setdefault(serving_profile(key, shapes), []).append((key, count))

    def mean(group, seconds):
        return math.fsum(seconds[key] * count for key, count in group) / requests(group)

    def requests(group):
        return sum(count for _, count in group)

    order = sorted(groups, key=lambda index: (index is None, index))
    return [
        ProfileShare(
            index,
            requests(groups[index]),
            mean(groups[index], latencies),
            mean(groups[index], wide_latencies),
        )
        for index in order
    ]

"""Candidate profile sets for a workload: ranges cut where its shapes cluster, each a set of
Polygraphy Profiles that a replay builds and measures (scoring.py ranks what it measured).

The cost model. TensorRT picks its kernels for a profile's opt and must cover the whole range
from min to max, so a profile serves best the requests near its opt, and a narrow range better
than a wide one. The planner says that much and no more: a request served on a profile pays
its own latency times (its distance from the opt + the range's width), both summed over the
workload's dynamic dimensions in log ratios (|ln(size / opt size)| and ln(max / min), so that
batch 2 against opt 1 weighs as much as 256 against 128), and a candidate costs the sum over
the workload's requests. A request's latency is the one measured on the wide profile where a
replay gives it (it measures the wide profile first), else taken to grow as the request's work,
the product of its dynamic sizes. Weighting by latency points the narrowest ranges at the
requests that take longest, which is what lowers the mean most. The model only proposes; the
replay's measurements decide.

How a candidate is cut. Each profile's opt is its range's most frequent shape, its min and max
the smallest and largest size in each dimension of the shapes it was cut for.

- A dynamic dimension is one whose size varies over the workload; dimensions that are equal in
  every request (the batch of both of a transformer's inputs) are one *axis*, cut together.
- Along one axis, the sorted distinct sizes are cut into k contiguous ranges by dynamic
  programming: the partition of least cost, found exactly in O(k n^2) for n distinct sizes.
- Over several axes, a candidate of K profiles is a grid: k_a ranges along each axis a, the
  product of the k_a equal to K (K ranges along one axis, or 2 x 2, ...), each axis cut by its
  own 1-D optimum; every such grid is tried and the one of least cost kept (ties: fewer
  profiles, then more cuts along the axis of most spread, whose one range costs most). Cells
  no request falls in are left out.

How many: plan_candidates gives the wide profile (min and max of the workload in every
dimension, opt at its most frequent shape: what K = 1 cuts) and, for each K = 2..limit, the
best grid of K ranges, leaving out a set equal to one before it (a workload of fewer distinct
shapes than K cannot be cut further): at most `limit` candidates in all. Given a memory limit
and a function that tells a set's memory (a built engine's contexts can), sets above the limit
are left out; the wide one stays, as the baseline.
"""

import itertools
import math
from dataclasses import dataclass

from dynamic_shapes.planner.workloads import describe_key, describe_range, most_frequent
from dynamic_shapes.profiles import (
    check_profiles,
    make_profiles,
    profile_shapes,
    profiles_to_options,
)

ROLES = ("planned", "wide", "given")


@dataclass(frozen=True)
class Candidate:
    """A set of profiles to measure. role: "planned" (cut from the workload), "wide" (the one
    wide profile) or "given" (the user's); groups: per profile, the workload's shape keys it was
    cut for (empty for given ones); cost: the cost model's value over the workload (None for
    given ones); explanation: how it was cut, in words."""

    name: str
    role: str
    profiles: list
    groups: tuple = ()
    cost: float | None = None
    explanation: str = ""

    def __post_init__(self):
        if self.role not in ROLES:
            raise ValueError(f"role {self.role!r} is none of {', '.join(ROLES)}")
        check_profiles(self.profiles)

    def options(self) -> list:
        """Per profile, its Polygraphy options: [['--trt-min-shapes', 'X:[1,3,28,28]', ...]]."""
        arguments = profiles_to_options(self.profiles)
        per_profile = len(arguments) // len(self.profiles)
        return [arguments[i : i + per_profile] for i in range(0, len(arguments), per_profile)]


def given_candidate(name: str, profiles) -> Candidate:
    """The user's profiles, to be measured beside the planner's."""
    return Candidate(name, "given", list(profiles), explanation="given")


@dataclass(frozen=True)
class Axis:
    """Dimensions of the workload that are equal in every request: ((input name, position),)."""

    dimensions: tuple

    def describe(self) -> str:
        positions = sorted({position for _, position in self.dimensions})
        names = ", ".join(sorted({name for name, _ in self.dimensions}))
        return f"dimension {'/'.join(map(str, positions))} of {names}"

    def size(self, key: tuple) -> int:
        name, position = self.dimensions[0]
        return dict(key)[name][position]


class Planning:
    """A workload's histogram, its axes (the most spread first) and each shape's weight: its
    count times its latency (measured, or its work)."""

    def __init__(self, histogram, latencies=None):
        if not histogram:
            raise ValueError("the workload holds no requests; profiles are planned for some")
        self.histogram = histogram
        keys = list(histogram)
        columns = {}
        for name, shape in keys[0]:
            for position in range(len(shape)):
                column = tuple(dict(key)[name][position] for key in keys)
                if len(set(column)) > 1:
                    columns.setdefault(column, []).append((name, position))
        axes = [Axis(tuple(dimensions)) for dimensions in columns.values()]
        self.weights = {
            key: count * self.latency(key, axes, latencies) for key, count in histogram.items()
        }
        spreads = {axis: self.cuts(axis, 1)[1][1] for axis in axes}
        self.axes = sorted(axes, key=lambda axis: -spreads[axis])

    @staticmethod
    def latency(key, axes, latencies) -> float:
        if latencies is None:
            return math.prod(axis.size(key) for axis in axes)
        if key not in latencies:
            raise ValueError(
                f"no latency given for {describe_key(key)}; plan with the wide profile's latency "
                "for every shape of the workload, or with none"
            )
        return float(latencies[key])

    def cuts(self, axis, most: int) -> dict:
        """For k = 1..most (at most the axis's distinct sizes), the k ranges of least cost along
        the axis: {k: ([(smallest size, largest size)], cost)}."""
        counts, weights = {}, {}
        for key, count in self.histogram.items():
            size = axis.size(key)
            counts[size] = counts.get(size, 0) + count
            weights[size] = weights.get(size, 0) + self.weights[key]
        sizes = sorted(counts)
        n = len(sizes)
        cost = range_costs(sizes, [counts[s] for s in sizes], [weights[s] for s in sizes])
        # best[k][j]: the least cost of sizes[0..j] in k + 1 ranges; start[k][j]: where its
        # last range starts.
        best, start = [cost[0][:]], [[0] * n]
        for k in range(1, min(most, n)):
            row, starts = [math.inf] * n, [0] * n
            for j in range(k, n):
                for i in range(k, j + 1):
                    value = best[k - 1][i - 1] + cost[i][j]
                    if value < row[j]:
                        row[j], starts[j] = value, i
            best.append(row)
            start.append(starts)
        found = {}
        for k in range(len(best)):
            ranges, j = [], n - 1
            for level in range(k, -1, -1):
                i = start[level][j]
                ranges.append((sizes[i], sizes[j]))
                j = i - 1
            found[k + 1] = (ranges[::-1], best[k][n - 1])
        return found

    def group_cost(self, group) -> float:
        """The cost of serving a group of shape keys on one profile cut for them."""
        opt = most_frequent({key: self.histogram[key] for key in group})
        width = sum(math.log(max(map(a.size, group)) / min(map(a.size, group))) for a in self.axes)
        return sum(
            self.weights[key]
            * (sum(abs(math.log(a.size(key) / a.size(opt))) for a in self.axes) + width)
            for key in group
        )

    def group_profile(self, group) -> dict:
        """{input name: (min, opt, max)} for a group of shape keys: min and max per dimension
        over the group, opt its most frequent shape."""
        opt = dict(most_frequent({key: self.histogram[key] for key in group}))
        inputs = {}
        for name in opt:
            sizes = list(zip(*(dict(key)[name] for key in group), strict=True))
            inputs[name] = (tuple(map(min, sizes)), opt[name], tuple(map(max, sizes)))
        return inputs

    def candidate(self, groups, name, role, explanation) -> Candidate:
        # The profiles in order of their ranges: by min, then opt, then max.
        profiles = sorted(
            ((self.group_profile(group), tuple(group)) for group in groups),
            key=lambda pair: list(zip(*pair[0].values(), strict=True)),
        )
        return Candidate(
            name,
            role,
            make_profiles([profile for profile, _ in profiles]),
            tuple(group for _, group in profiles),
            sum(self.group_cost(group) for group in groups),
            explanation,
        )

    def grid(self, ranges_per_axis) -> list:
        """The shape keys in each cell of a grid of ranges, cells no request falls in left out."""
        cells = {}
        for key in self.histogram:
            cell = tuple(
                next(i for i, (low, high) in enumerate(ranges) if low <= axis.size(key) <= high)
                for axis, ranges in zip(self.axes, ranges_per_axis, strict=True)
            )
            cells.setdefault(cell, []).append(key)
        return list(cells.values())

    def describe_grid(self, ranges_per_axis) -> str:
        parts = []
        for axis, ranges in zip(self.axes, ranges_per_axis, strict=True):
            if len(ranges) > 1:
                cuts = " | ".join(describe_range(a, b) for a, b in ranges)
                parts.append(f"{axis.describe()} cut into {len(ranges)} ranges: {cuts}")
        return "; ".join(parts)

    def wide(self) -> Candidate:
        return self.candidate([list(self.histogram)], "wide", "wide", "one range over everything")

    def planned(self, k: int):
        """The grid of k ranges of least cost, or None where the workload's distinct sizes are
        too few for one."""
        cuts = {axis: self.cuts(axis, k) for axis in self.axes}
        best = None
        # Every k_a from k down, so that of equal costs the axis of most spread is cut most.
        for counts in itertools.product(range(k, 0, -1), repeat=len(self.axes)):
            if math.prod(counts) != k or any(
                c not in cuts[a] for a, c in zip(self.axes, counts, strict=True)
            ):
                continue
            ranges = [cuts[axis][c][0] for axis, c in zip(self.axes, counts, strict=True)]
            groups = self.grid(ranges)
            found = self.candidate(
                groups, f"{len(groups)} profiles", "planned", self.describe_grid(ranges)
            )
            if best is None or (found.cost, len(groups)) < (best.cost, len(best.profiles)):
                best = found
        return best


def range_costs(sizes, counts, weights) -> list:
    """cost[i][j]: the cost of one range holding sizes[i..j] (ascending), each size's weight
    times its distance from the range's most frequent size (the first of equal counts) plus the
    range's width, in log ratios; prefix sums make each O(1)."""
    logs = [math.log(s) for s in sizes]
    total_w, total_l = [0.0], [0.0]
    for weight, log in zip(weights, logs, strict=True):
        total_w.append(total_w[-1] + weight)
        total_l.append(total_l[-1] + weight * log)
    n = len(sizes)
    cost = [[math.inf] * n for _ in range(n)]
    for i in range(n):
        mode = i
        for j in range(i, n):
            if counts[j] > counts[mode]:
                mode = j
            m = logs[mode]
            below = m * (total_w[mode + 1] - total_w[i]) - (total_l[mode + 1] - total_l[i])
            above = (total_l[j + 1] - total_l[mode + 1]) - m * (total_w[j + 1] - total_w[mode + 1])
            width = (total_w[j + 1] - total_w[i]) * (logs[j] - logs[i])
            cost[i][j] = below + above + width
    return cost


def wide_candidate(histogram) -> Candidate:
    """One profile over the whole workload, opt at its most frequent shape: the baseline."""
    return Planning(histogram).wide()


def plan_candidates(
    histogram, limit: int, latencies=None, memory_limit=None, estimate_memory=None
) -> list:
    """The wide profile, then the best set of K profiles for K = 2..limit (see the module's
    docstring), sets equal to an earlier one left out. latencies: {shape key: seconds} measured
    on the wide profile, for every shape of the workload (else the work stands in). With
    memory_limit (bytes), planned sets whose estimate_memory(profiles) exceeds it are left out."""
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise ValueError(f"the limit on the number of profiles is {limit!r}; give 1 or more")
    if memory_limit is not None and estimate_memory is None:
        raise ValueError(
            "a memory limit needs a way to tell a set of profiles' memory (estimate_memory)"
        )
    planning = Planning(histogram, latencies)
    candidates = [planning.wide()]
    seen = [profile_shapes(candidates[0].profiles)]
    for k in range(2, limit + 1):
        candidate = planning.planned(k)
        if candidate is None or profile_shapes(candidate.profiles) in seen:
            continue
        seen.append(profile_shapes(candidate.profiles))
        if memory_limit is not None and estimate_memory(candidate.profiles) > memory_limit:
            continue
        candidates.append(candidate)
    return candidates

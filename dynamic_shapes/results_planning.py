"""The results pages' section on the planner's proofs (plan_profiles.py --json): each
candidate's latency, throughput, memory and build time, beside the wide profile and the
profiles given, each candidate's requests by the profile that serves them against the wide
profile (planner/breakdown.py, from the per-shape latencies of the record), and the winner as
Polygraphy's options."""

import json
from pathlib import PurePath

from dynamic_shapes.planner.breakdown import by_profile
from dynamic_shapes.planner.workloads import shape_key
from dynamic_shapes.profiles import profile_shapes, profiles_from_json
from dynamic_shapes.results_figures import count, times, us
from dynamic_shapes.results_markdown import code_block, measured_with, table

MIB = 1024 * 1024
US = 1e6


def references(candidates: list) -> list:
    """(column name, mean seconds) of the candidates the others are held against: the wide
    profile, then the profiles given, in the order measured."""
    return [
        (f"vs {c['name']}", c["mean_s"])
        for role in ("wide", "given")
        for c in candidates
        if c["role"] == role
    ]


def plan_run(name: str, run: dict, t: dict) -> list:
    settings, candidates = run["settings"], sorted(run["candidates"], key=lambda c: c["rank"])
    held_against = references(run["candidates"])
    # The model's file name: the folder it was measured in says nothing to a reader.
    out = [f"`{name}` (`{PurePath(settings['model']).name}`):", ""]
    out += [t["plan_workload"].format(
        workload=run["workload"]["summary"], threads=settings["threads"],
        warmup=settings["warmup"], checked=settings["checked"],
        difference=f"{run['largest_difference_from_onnx_runtime']:.3g}",
    ), ""]  # fmt: skip
    rows = []
    for c in candidates:
        memory = c["context_memory_bytes"]
        build = c["build_seconds"]
        rows.append([
            c["rank"], c["name"], t["roles"][c["role"]], len(c["profiles"]),
            us(c["mean_s"] * US), us(c["p50_s"] * US), us(c["p99_s"] * US),
            count(c["throughput_per_s"]),
            "-" if memory is None else f"{memory / MIB:.1f}",
            "-" if build is None else f"{build:.1f}",
            *(times(mean / c["mean_s"]) for _, mean in held_against),
        ])  # fmt: skip
    header = [*t["plan_header"], *(column for column, _ in held_against)]
    out += table(header, rows, right_from=3)
    out += against_wide(candidates, t)
    (best,) = [c for c in run["candidates"] if c["name"] == run["best"]]
    out += [t["plan_best"].format(name=best["name"]), "", *code_block(best["polygraphy_options"])]
    return out


def latencies(candidate: dict) -> dict:
    """{shape key: median seconds} of a candidate's record."""
    return {shape_key(s["shapes"]): s["median_s"] for s in candidate["shapes"]}


def ranges(profile: dict) -> str:
    """'X [2..31, 3, 28, 28]': each input's dimensions, min..max where they differ."""

    def span(low, high):
        return str(low) if low == high else f"{low}..{high}"

    return "; ".join(
        f"{name} [{', '.join(map(span, low, high))}]" for name, (low, _, high) in profile.items()
    )


def shares_against_wide(candidates: list) -> list:
    """[(candidate, its profiles as profiles.profile_shapes gives them, [ProfileShare])] for
    each candidate but the wide one: its requests by the profile that serves them, with their
    mean latency there and on the wide profile. Empty without a wide candidate."""
    wide = next((c for c in candidates if c["role"] == "wide"), None)
    if wide is None:
        return []
    histogram = {shape_key(s["shapes"]): s["requests"] for s in wide["shapes"]}
    out = []
    for c in candidates:
        if c is not wide:
            profiles = profiles_from_json(json.dumps(c["profiles"]))
            shares = by_profile(histogram, profiles, latencies(c), latencies(wide))
            out.append((c, profile_shapes(profiles), shares))
    return out


def against_wide(candidates: list, t: dict) -> list:
    """Each candidate but the wide one, by the profile that serves its requests: their mean
    latency there and on the wide profile."""
    rows = []
    for c, shapes, shares in shares_against_wide(candidates):
        total = sum(share.requests for share in shares)
        for share in shares:
            where = (
                t["plan_split"] if share.profile is None
                else f"{share.profile}: {ranges(shapes[share.profile])}"
            )  # fmt: skip
            rows.append([
                c["name"], where, count(share.requests), f"{100 * share.requests / total:.1f}",
                us(share.mean * US), us(share.wide_mean * US), times(share.gain),
            ])  # fmt: skip
    if not rows:
        return []
    return [t["plan_by_profile"], "", *table(t["plan_by_profile_header"], rows, right_from=2)]


def planning_section(runs: dict, t: dict) -> list:
    if not runs:
        return []
    out = [f"### {t['planning']}", "", t["planning_note"], ""]
    for name, run in runs.items():
        out += plan_run(name, run, t)
    return [*out, *measured_with(runs, t)]

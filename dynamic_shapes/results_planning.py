"""The results pages' section on the planner's proofs (plan_profiles.py --json): each
candidate's latency, throughput, memory and build time, beside the wide profile and the
profiles given, and the winner as Polygraphy's options."""

from pathlib import PurePath

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
    (best,) = [c for c in run["candidates"] if c["name"] == run["best"]]
    out += [t["plan_best"].format(name=best["name"]), "", *code_block(best["polygraphy_options"])]
    return out


def planning_section(runs: dict, t: dict) -> list:
    if not runs:
        return []
    out = [f"### {t['planning']}", "", t["planning_note"], ""]
    for name, run in runs.items():
        out += plan_run(name, run, t)
    return [*out, *measured_with(runs, t)]

"""The results pages' section on the two routing rules (benchmark.py --shapes): each shape's
route and latency under each rule, and which rule is faster over the workload, computed."""

from dynamic_shapes.results_figures import count, times, us
from dynamic_shapes.results_markdown import measured_with, table
from dynamic_shapes.serving.routing import RULES

BASELINE, OTHER = RULES  # the ratio is the other rule's latency over the baseline's


def route(chunks: list) -> str:
    """The profiles a rule sends a request's chunks to: p1, or p1+p1 for a split batch."""
    return "p" + "+".join(str(chunk[0]) for chunk in chunks)


def overall(summary: dict, t: dict) -> str:
    """Which rule is faster over the workload's requests, and by how much."""
    mean = summary["weighted_median_us"]
    faster, slower = sorted(RULES, key=lambda rule: mean[rule])
    return t["routing_overall"].format(
        requests=count(summary["requests"]),
        baseline=BASELINE,
        baseline_us=us(mean[BASELINE]),
        other=OTHER,
        other_us=us(mean[OTHER]),
        faster=faster,
        ratio=times(mean[slower] / mean[faster]),
        differ=len(summary["routed_differently"]),
    )


def routing_run(name: str, run: dict, t: dict) -> list:
    routing = run["routing"]
    out = [f"`{name}` ({run['model']['name']}):", ""]
    if not run.get("complete", True):
        out += [t["incomplete"], ""]
    profiles = [
        [index, f"`{p['min']}`", f"`{p['opt']}`", f"`{p['max']}`"]
        for index, p in enumerate(routing["profiles"])
    ]
    out += table(t["routing_profiles_header"], profiles, right_from=4)
    rows = []
    for row in routing["by_shape"]:
        latency = row["latency"]
        rows.append([
            f"`{row['shapes']}`", row["count"],
            route(row["routes"][BASELINE]), us(latency[BASELINE]["median_us"]),
            route(row["routes"][OTHER]), us(latency[OTHER]["median_us"]),
            times(latency[OTHER]["median_us"] / latency[BASELINE]["median_us"]),
        ])  # fmt: skip
    header = [t["shapes"], t["count"], *(f"{rule}: {what}" for rule in RULES
              for what in (t["profile"], t["median"])), f"{OTHER} / {BASELINE}"]  # fmt: skip
    out += table(header, rows, right_from=2)
    if routing["summary"]:
        out += [overall(routing["summary"], t), ""]
    out += [t["checked_routing"].format(
        difference=f"{routing['largest_difference_from_onnx_runtime']:.3g}"), ""]  # fmt: skip
    out += [f"- {note}" for note in routing["notes"]]
    return out + ([""] if routing["notes"] else [])


def routing_section(runs: dict, t: dict) -> list:
    if not runs:
        return []
    first = next(iter(runs.values()))
    out = [f"### {t['routing']}", "", t["settings"].format(**first["settings"]), "",
           t["routing_note"], ""]  # fmt: skip
    for name, run in runs.items():
        out += routing_run(name, run, t)
    return [*out, *measured_with(runs, t)]

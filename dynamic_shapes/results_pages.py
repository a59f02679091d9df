"""Renders the results pages (docs/results.md, docs/results.zh-CN.md) from the runs under
results/: for each environment its provenance, the targets, and the tables of every run."""

import re
from pathlib import Path

from dynamic_shapes.measure.report import floor_of
from dynamic_shapes.results import (
    BATCHER_PAIRS,
    FLOOR,
    GPU_FLOOR,
    ONE_CONTEXT,
    PAGES,
    PLAN_FILE,
    PREPARED,
    RESULTS,
    ROUTING_FILE,
    SHAPE_GRAPHS,
    STRESS_FILE,
    TRITON_FILE,
    Environment,
    by_batch,
    images_per_s,
    read_results,
    run_order,
)
from dynamic_shapes.results_backends import backends_section, ratio
from dynamic_shapes.results_figures import change, count, short, times, us
from dynamic_shapes.results_markdown import code_block, measured_with, table
from dynamic_shapes.results_planning import planning_section
from dynamic_shapes.results_routing import routing_section
from dynamic_shapes.results_text import TEXT
from dynamic_shapes.targets import TARGETS

# The versions each run's line names, beside the environment's GPU, driver, TensorRT and Python.
VERSIONS = {
    "polygraphy": "Polygraphy",
    "cuda_bindings": "cuda-bindings",
    "cupy": "CuPy",
    "tritonclient": "tritonclient",
}


def provenance(environment: Environment, t: dict) -> list:
    """The environment's line, then each commit, date and set of versions with its runs."""
    identity = {key: value or "?" for key, value in environment.identity.items()}
    groups = {}  # (commit, date, versions) -> the runs measured with them
    for name, run in sorted(environment.runs.items(), key=lambda item: run_order(item[0])):
        if isinstance(run, dict):
            record = run["environment"]
            versions = tuple(
                f"{label} {record[key]}" for key, label in VERSIONS.items() if record.get(key)
            )
            when = t["run_line"].format(commit=record.get("commit"), date=record["date"][:10])
            groups.setdefault((when, versions), []).append(f"`{name}`")
    lines = [
        f"- {', '.join([when, *versions])}: {', '.join(names)}"
        for (when, versions), names in groups.items()
    ]
    return [t["gpu_line"].format(**identity), "", *lines, ""]


def benchmark_section(benchmark: dict, t: dict) -> list:
    out = [f"### {t['benchmark']}", "", t["settings"].format(**benchmark["settings"]), ""]
    if not benchmark.get("complete", True):
        out += [t["incomplete"], ""]
    models = benchmark["models"]
    out += narrow_vs_wide(models, t)
    for key, what in (("shape_switching", "shape"), ("profile_switching", "profile")):
        out += stats_section(models, key, t, what)
    out += memory_section(models, t)
    out += stats_section(models, "runner_activation", t)
    for name, model in models.items():
        out += convenience_section(name, model, t)
    out += contexts_section(models, t)
    for name, model in models.items():
        if "largest_difference_from_onnx_runtime" in model:
            difference = f"{model['largest_difference_from_onnx_runtime']:.3g}"
            out += [t["checked"].format(model=name, how=model["checked"], difference=difference)]
    notes = [
        f"- {name}, {key}: {note}"
        for name, model in models.items()
        for key, section in model.items()
        if isinstance(section, dict)
        for note in section.get("notes", [])
    ]
    if notes:
        out += ["", f"{t['notes']}:", "", *notes]
    return [*out, ""]


def narrow_vs_wide(models: dict, t: dict) -> list:
    sections = {name: m["narrow_vs_wide"]["by_batch"] for name, m in models.items()
                if m.get("narrow_vs_wide", {}).get("by_batch")}  # fmt: skip
    if not sections:
        return []
    columns = [
        (name, variant)
        for name, section in sections.items()
        for variant in dict.fromkeys(v for _, stats in by_batch(section) for v in stats)
    ]
    batches = sorted({batch for section in sections.values() for batch, _ in by_batch(section)})
    rows = []
    for batch in batches:
        row = [batch]
        for name, variant in columns:
            stats = sections[name].get(str(batch), {}).get(variant)
            row.append(f"{us(stats['median_us'])} ({us(stats['p99_us'])})" if stats else "-")
        rows.append(row)
    header = [t["batch"], *(f"{name}, {variant}" for name, variant in columns)]
    out = [f"#### {t['narrow_vs_wide']}", "", *table(header, rows)]
    for name, section in sections.items():
        pairs = [
            (batch, list(stats.values())) for batch, stats in by_batch(section) if len(stats) == 2
        ]
        if pairs:
            ratios = ", ".join(times(s[1]["median_us"] / s[0]["median_us"]) for _, s in pairs)
            batches_text = ", ".join(str(batch) for batch, _ in pairs)
            out.append(t["wide_sentence"].format(model=name, ratios=ratios, batches=batches_text))
    return [*out, ""]


def stats_section(models: dict, key: str, t: dict, what=None) -> list:
    measured = {name: model[key] for name, model in models.items() if key in model}
    if not measured:
        return []
    rows, sentences = [], []
    for name, section in measured.items():
        stats = section["stats"]
        first = stats[section["baseline"]]["median_us"]
        for variant, s in stats.items():
            rows.append([name, variant, us(s["median_us"]), us(s["p90_us"]), us(s["p99_us"]),
                         times(s["median_us"] / first)])  # fmt: skip
        if "cost_per_switch_us" in section:
            sentences.append(t["switch_sentence"].format(
                model=name, what=t[what], cost=us(section["cost_per_switch_us"])))  # fmt: skip
        elif key == "runner_activation" and len(stats) == 2:
            owned, creating = (s["median_us"] for s in stats.values())
            sentences.append(
                t["activation_sentence"].format(model=name, ratio=times(creating / owned))
            )
    return [f"#### {t[key]}", "", *table(t["stats_header"], rows, right_from=2), *sentences, ""]


def memory_section(models: dict, t: dict) -> list:
    rows = [
        [name, f"{m['context_reported_mib']:.2f}",
         ", ".join(f"{v:.2f}" for v in m["contexts_measured_mib"]),
         f"{m['engine_measured_mib']:.2f}", f"{m['plan_mib']:.2f}"]
        for name, m in ((name, model["memory"]) for name, model in models.items()
                        if "memory" in model)
    ]  # fmt: skip
    return [f"#### {t['memory']}", "", *table(t["memory_header"], rows)] if rows else []


def convenience_section(name: str, model: dict, t: dict) -> list:
    batches = by_batch(model.get("convenience", {}).get("by_batch", {}))
    if not batches:
        return []
    variants = list(dict.fromkeys(v for _, stats in batches for v in stats))
    prepared_or_bare = [v for v in variants if v.startswith((PREPARED, "bare ", "staging "))]
    through_infer = [v for v in variants if v not in prepared_or_bare]
    out = [f"#### {t['convenience'].format(model=name)}", "", t["convenience_note"], ""]
    for title, columns in ((t["through_infer"], through_infer),
                           (t["prepared_and_floors"], prepared_or_bare)):  # fmt: skip
        rows = []
        for batch, stats in batches:
            row = [batch]
            for variant in columns:
                s = stats.get(variant)
                if s is None:
                    row.append("-")
                elif variant in (FLOOR, GPU_FLOOR):
                    row.append(us(s["median_us"]))
                else:
                    ratio = s["median_us"] / stats[floor_of(variant)]["median_us"]
                    row.append(f"{us(s['median_us'])} ({times(ratio)})")
            rows.append(row)
        out += [f"{title}:", "", *table([t["batch"], *map(short, columns)], rows)]
    out += capturing_requests(model["convenience"], dict(batches), t)
    profiles = model["convenience"].get("infer_profile") or {}
    rows = [
        [short(variant), f"`{item['function']}`", us(item["us_per_infer"]),
         f"{item['calls_per_infer']:g}"]
        for variant, items in profiles.items()
        for item in items
    ]  # fmt: skip
    if rows:
        out += [f"{t['infer_profile']}:", "", *table(t["infer_profile_header"], rows)]
    return out


def capturing_requests(convenience: dict, batches: dict, t: dict) -> list:
    """A line on the requests that capture their shape's graphs, against the replays, with the
    graphs_after the benchmark's dispatcher was measured with."""
    parts, after = [], set()
    for batch, stats in by_batch(convenience.get("capturing_requests", {})):
        after.add(stats["graphs_after"])
        replay = batches.get(batch, {}).get(SHAPE_GRAPHS)
        parts.append(t["capturing_batch"].format(
            batch=batch, median=us(stats["median_us"]), p99=us(stats["p99_us"]),
            captured=stats["captured"], count=stats["samples"],
            ratio="-" if replay is None else times(stats["median_us"] / replay["median_us"]),
        ))  # fmt: skip
    if not parts:
        return []
    line = t["capturing"].format(after=", ".join(map(str, sorted(after))), batches="; ".join(parts))
    return [line, ""]


def contexts_section(models: dict, t: dict) -> list:
    measured = {name: m["contexts"] for name, m in models.items()
                if m.get("contexts", {}).get("by_batch")}  # fmt: skip
    if not measured:
        return []
    columns = list(dict.fromkeys(
        variant for section in measured.values() for _, rates in by_batch(section["by_batch"])
        for variant in rates
    ))  # fmt: skip
    rows = []
    for name, section in measured.items():
        for batch, rates in by_batch(section["by_batch"]):
            row = [f"{name}, {batch}"]
            for variant in columns:
                rate = rates.get(variant)
                if rate is None:
                    row.append("-")
                elif variant.endswith(ONE_CONTEXT):
                    row.append(count(rate["requests_per_s"]))
                else:
                    row.append(f"{count(rate['requests_per_s'])} ({times(rate['vs_one_context'])})")
            rows.append(row)
    threads = next(iter(measured.values()))["threads"]
    title = t["contexts"].format(threads=threads)
    return [f"#### {title}", "", *table([t["model_batch"], *columns], rows)]


def stress_section(runs: dict, t: dict) -> list:
    if not runs:
        return []
    rows, lifecycles = [], []
    for name, run in runs.items():
        load, life = run["load"], run["lifecycle"]
        seconds = load["seconds"]
        rows.append([
            f"`{name}`", f"{load['processes']} x {load['threads']}", load["memory"],
            t["yes"] if load["mps"] else t["no"],
            count(load["requests_served"] / seconds), count(images_per_s(run)),
            count(load["infer_us_per_request"]), count(load["check_us_per_request"]),
            f"{load['cpu_cores_busy']:.1f} / {load['cpu_cores']}", load["errors"],
            change(load["device_mib_after"] - load["device_mib_before"]),
            change(load["host_rss_mib_after"] - load["host_rss_mib_before"]),
        ])  # fmt: skip
        lifecycles.append([
            f"`{name}`", change(life["dispatchers_device_mib_delta"]),
            change(life["prepared_device_mib_delta"]),
            change(life["activations_device_mib_delta"]),
            change(life["activations_plain_deactivate_device_mib_delta"]),
        ])  # fmt: skip
    return [
        f"### {t['stress']}",
        "",
        *table(t["stress_header"], rows, right_from=4),
        t["stress_note"],
        "",
        *table(t["lifecycle_header"], lifecycles),
        *measured_with(runs, t),
    ]


def level_row(level: dict) -> list:
    def grown(what):
        before = level.get(f"{what}_before")
        return "-" if before is None else change(level[f"{what}_after"] - before)

    return [
        level["concurrency"], count(level["requests_per_s"]), count(level["images_per_s"]),
        count(level["p50_us"]), count(level["p90_us"]), count(level["p99_us"]),
        f"{level['requests_per_execution']:.2f}", count(level["server_us"]),
        count(level["queue_us"]), count(level["compute_input_us"]),
        count(level["compute_infer_us"]), count(level["compute_output_us"]), level["errors"],
        grown("gpu_memory_mib"), grown("server_rss_mib"),
    ]  # fmt: skip


def triton_section(runs: dict, t: dict) -> list:
    if not runs:
        return []
    out = [f"### {t['triton']}", "", t["triton_note"], ""]
    for name, run in runs.items():
        out += [f"`{name}` ({run['protocol']}):", ""]
        out += table(t["triton_header"], [level_row(level) for level in run["levels"]])
    rows = []
    for on_name, off_name in BATCHER_PAIRS:
        if on_name in runs and off_name in runs:
            off_levels = {level["concurrency"]: level for level in runs[off_name]["levels"]}
            for on in runs[on_name]["levels"]:
                off = off_levels.get(on["concurrency"])
                if off:
                    rows.append([
                        f"`{on_name}` / `{off_name}`", on["concurrency"],
                        count(on["requests_per_s"]), count(off["requests_per_s"]),
                        ratio(on, off),
                        count(on["p99_us"]), count(off["p99_us"]),
                    ])  # fmt: skip
    if rows:
        out += [f"{t['pairs']}:", "", *table(t["pairs_header"], rows)]
    return [*out, *measured_with(runs, t)]


def without_folders(text: str) -> str:
    """A script's output without the folder of the machine it ran on: Polygraphy names the
    engine it loads by its absolute path."""
    return re.sub(r"(Loading bytes from )/\S*/", r"\1", text)


def suite_summary(text: str) -> str:
    """The suite's result: its last summary line and the reasons tests were skipped."""
    lines = text.splitlines()
    kept = [line for line in lines if line.startswith("SKIPPED")]
    final = [line for line in lines if re.search(r"\d+ (passed|failed)", line)]
    return "\n".join([*kept, *final[-1:]])


def targets_section(environment: Environment, t: dict, language: str) -> list:
    rows = []
    for target in TARGETS:
        result = target.evaluate(environment, t)
        measured, met = result if result else (t["not_measured"], None)
        verdict = "-" if met is None else t["yes"] if met else t["no"]
        rows.append([target.en if language == "en" else target.zh, measured, verdict])
    header = [t["target"], t["measured"], t["met"]]
    return [f"### {t['targets']}", "", *table(header, rows, 3), t["targets_note"], ""]


# ---------------------------------------------------------------------------------------------
# Pages


def render_environment(environment: Environment, t: dict, language: str) -> list:
    runs = environment.runs
    out = [f"## {environment.name}", "", *provenance(environment, t)]
    out += targets_section(environment, t, language)
    if "benchmark.json" in runs:
        out += benchmark_section(runs["benchmark.json"], t)
        out += measured_with(["benchmark.json"], t)
    out += routing_section(environment.json_runs(ROUTING_FILE), t)
    out += planning_section(environment.json_runs(PLAN_FILE), t)
    out += stress_section(environment.json_runs(STRESS_FILE), t)
    triton = environment.json_runs(TRITON_FILE)
    out += triton_section(triton, t)
    out += backends_section(triton, t)
    for name, title in (("example.txt", "example"), ("inspect.txt", "inspect")):
        if name in runs:
            text = without_folders(runs[name])
            out += [f"### {t[title]}", "", *code_block(text), *measured_with([name], t)]
    if "suite.txt" in runs:
        out += [f"### {t['suite']}", "", *code_block(suite_summary(runs["suite.txt"]))]
        out += measured_with(["suite.txt"], t)
    return out


def render_page(environments: list, language: str) -> str:
    t = TEXT[language]
    out = [t["generated"], "", f"# {t['title']}", "", t["intro"], ""]
    if not environments:
        out += [t["none"], ""]
    else:
        out += [f"{t['environments']}: " + ", ".join(
            f"[{e.name}](#{e.name.replace('.', '')})" for e in environments), ""]  # fmt: skip
        for environment in environments:
            out += render_environment(environment, t, language)
    while out[-1] == "":
        out.pop()
    return "\n".join(out) + "\n"


def render_pages(project: Path) -> dict:
    """{page path: its text} for every results page, from the project's results/."""
    environments = read_results(project / RESULTS)
    return {project / page: render_page(environments, language) for language, page in PAGES.items()}


def stale_pages(project: Path) -> list:
    """The results pages whose text differs from what the committed data renders."""
    return [
        path
        for path, text in render_pages(project).items()
        if not path.exists() or path.read_text(encoding="utf-8") != text
    ]

"""The benchmark's results as text: each section's tables, the trade-offs side by side, and the
latency panels a plot draws (no GPU needed)."""

from dynamic_shapes.measure.convenience import BASELINE, GPU_BASELINE
from dynamic_shapes.measure.sections import SECTIONS


def floor_of(variant: str) -> str:
    """The bare loop a serving path is held against: the one with the same memory."""
    return GPU_BASELINE if "GPU-resident" in variant else BASELINE


def latency_rows(stats: dict, baseline) -> list:
    """Table rows of latency statistics, with each median's ratio to the baseline's (a
    variant's name, or a function giving each variant's)."""
    rows = []
    for variant, s in stats.items():
        floor = baseline(variant) if callable(baseline) else baseline
        ratio = s["median_us"] / stats[floor]["median_us"]
        rows.append(
            [variant, f"{s['median_us']:.1f}", f"{s['p90_us']:.1f}", f"{s['p99_us']:.1f}",
             f"{ratio:.2f}x"]
        )  # fmt: skip
    return rows


def format_table(title: str, header: list, rows: list) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]

    def line(cells):
        first, *rest = cells
        return "  ".join(
            [str(first).ljust(widths[0])]
            + [str(c).rjust(w) for c, w in zip(rest, widths[1:], strict=True)]
        )

    rule = "-" * len(line(header))
    return "\n".join([f"=== {title}", line(header), rule, *map(line, rows), ""])


FLOOR_NOTE = f"vs floor: against {BASELINE}; GPU-resident rows against {GPU_BASELINE}\n"
LATENCY_HEADER = ["variant", "median us", "p90 us", "p99 us", "vs first"]
TITLES = {
    "narrow_vs_wide": "1. Narrow vs wide profiles",
    "shape_switching": "2. Shape switching inside the dynamic-batching profile",
    "profile_switching": "3. Low-latency and offline requests, alternating (one pair per sample)",
    "memory": "4. GPU memory (MiB): measured as free memory lost, and as TensorRT reports it",
    "runner_activation": "5. TrtRunner activate + deactivate",
    "convenience": "6. Serving paths and the floors under them",
    "contexts": "7. Concurrent requests for one profile: one context, or several",
}


def section_tables(key: str, section: dict) -> list:
    """The tables of one section of the results."""
    title = TITLES[key]
    if key == "contexts":
        header = ["memory, contexts", "requests/s", "images/s", "vs 1 context"]
        return [
            format_table(
                f"{title}, batch {batch}, {section['threads']} threads",
                header,
                [
                    [
                        name,
                        f"{r['requests_per_s']:.0f}",
                        f"{r['images_per_s']:.0f}",
                        f"{r['vs_one_context']:.2f}x",
                    ]
                    for name, r in rates.items()
                ],
            )
            for batch, rates in section["by_batch"].items()
        ]
    if key in ("narrow_vs_wide", "convenience"):
        header = LATENCY_HEADER if key == "narrow_vs_wide" else [*LATENCY_HEADER[:-1], "vs floor"]
        baseline = "three narrow profiles" if key == "narrow_vs_wide" else floor_of
        tables = [
            format_table(
                f"{title}, batch {batch}: per-request latency",
                header,
                latency_rows(stats, baseline),
            )
            + (
                f"vs floor: against {BASELINE}; GPU-resident rows against {GPU_BASELINE}\n"
                if key == "convenience"
                else ""
            )
            for batch, stats in section["by_batch"].items()
        ]
        # cProfile's functions of most own time: TrtRunner.infer's, and infer()'s per path.
        profiles = [("Where TrtRunner.infer spends its time", section.get("trtrunner_profile"))]
        profiles += [
            (f"Where infer spends its time, {variant}", items)
            for variant, items in (section.get("infer_profile") or {}).items()
        ]
        for title, items in profiles:
            if not items:
                continue
            rows = [
                [item["function"], f"{item['us_per_infer']:.1f}", f"{item['calls_per_infer']:g}"]
                for item in items
            ]
            tables.append(
                format_table(
                    f"{title}, batch 1 (own time per call)",
                    ["function", "us per infer", "calls per infer"],
                    rows,
                )
            )
        return tables
    if key == "memory":
        rows = [
            ["engine (deserialized)", section["engine_measured_mib"], None],
            *[
                [f"execution context {i}", measured, section["context_reported_mib"]]
                for i, measured in enumerate(section["contexts_measured_mib"])
            ],
        ]
        return [
            format_table(
                title,
                ["what", "measured", "reported"],
                [[what, f"{a:.2f}", "n/a" if b is None else f"{b:.2f}"] for what, a, b in rows],
            )
        ]
    table = format_table(title, LATENCY_HEADER, latency_rows(section["stats"], section["baseline"]))
    if "cost_per_switch_us" in section:
        what = "shape" if key == "shape_switching" else "profile"
        table += f"cost per {what} switch: {section['cost_per_switch_us']:.1f} us\n"
    return [table]


def model_report(model: dict) -> str:
    """The tables of one model's sections, each followed by what it left out and why."""
    out = []
    for key in SECTIONS:
        if key in model:
            out += section_tables(key, model[key])
            notes = model[key].get("notes", [])
            if notes:
                out.append("".join(f"note: {note}\n" for note in notes))
    return "\n".join(out)


def ratio(stats: dict, numerator: str, denominator: str) -> str:
    return f"{stats[numerator]['median_us'] / stats[denominator]['median_us']:.2f}x"


def trade_offs(model: dict) -> dict:
    """{claim: figure} for the walkthrough's four trade-offs, from one model's sections."""
    rows = {}
    for batch, stats in model.get("narrow_vs_wide", {}).get("by_batch", {}).items():
        rows[f"1. one wide profile vs three narrow, batch {batch}"] = ratio(
            stats, "one wide profile (1..128)", "three narrow profiles"
        )
    if "shape_switching" in model:
        cost = model["shape_switching"]["cost_per_switch_us"]
        rows["2. a shape switch in one profile, us"] = f"{cost:.1f}"
    if "profile_switching" in model:
        section = model["profile_switching"]
        rows["3. a profile switch in one context, us"] = f"{section['cost_per_switch_us']:.1f}"
        rows["3. one context switching vs one per profile"] = f"{section['ratio']:.2f}x"
    if "memory" in model:
        memory = model["memory"]["context_reported_mib"]
        rows["4. GPU memory of each execution context, MiB"] = f"{memory:.2f}"
    if "runner_activation" in model:
        rows["5. TrtRunner making its context vs given one"] = ratio(
            model["runner_activation"]["stats"], "creating its own context", "over an owned context"
        )
    for batch, rates in model.get("contexts", {}).get("by_batch", {}).items():
        for name, rate in rates.items():
            if not name.endswith(", 1 context"):
                rows[f"7. {name} vs 1, requests/s, batch {batch}"] = (
                    f"{rate['vs_one_context']:.2f}x"
                )
    return rows


def report(results: dict) -> str:
    """Every model's tables and, for several models, their trade-offs side by side."""
    out = []
    for name, model in results["models"].items():
        out.append(f"##### {name}: {model['path']}, input {model['input']}\n")
        out.append(model_report(model))
        if "largest_difference_from_onnx_runtime" in model:
            out.append(
                f"Every path's outputs checked against ONNX Runtime, {model['checked']}: the "
                f"largest difference was {model['largest_difference_from_onnx_runtime']:.3g}\n"
            )
    if len(results["models"]) > 1:
        columns = {name: trade_offs(model) for name, model in results["models"].items()}
        claims = list(dict.fromkeys(claim for rows in columns.values() for claim in rows))
        rows = [[claim, *(rows.get(claim, "-") for rows in columns.values())] for claim in claims]
        title = "The trade-offs, side by side (medians)"
        out.append(format_table(title, ["trade-off", *columns], rows))
    return "\n".join(out)


def latency_panels(results: dict) -> list:
    """(title, {variant: stats}) for each latency table of each model."""
    panels = []
    for name, model in results["models"].items():
        for key, title in [
            ("narrow_vs_wide", "1. narrow vs wide"),
            ("convenience", "6. convenience"),
        ]:
            for batch, stats in model.get(key, {}).get("by_batch", {}).items():
                panels.append((f"{name}: {title}, batch {batch}", stats))
        for key, title in [
            ("shape_switching", "2. shape switching"),
            ("profile_switching", "3. profile switching"),
            ("runner_activation", "5. runner activation"),
        ]:
            if key in model:
                panels.append((f"{name}: {title}", model[key]["stats"]))
    return panels

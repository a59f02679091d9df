"""The Markdown every section of the results pages is written in: tables, text blocks, and the
commands a section's runs were measured with (from RUNS)."""

from dynamic_shapes.results import RUN_OF, SECONDS


def table(header: list, rows: list, right_from=1) -> list:
    """A Markdown table; columns from `right_from` on are right-aligned (figures)."""
    align = ["---" if i < right_from else "---:" for i in range(len(header))]
    return [
        "| " + " | ".join(header) + " |",
        "| " + " | ".join(align) + " |",
        *("| " + " | ".join(str(cell) for cell in row) + " |" for row in rows),
        "",
    ]


def code_block(text: str) -> list:
    return ["```text", *text.rstrip("\n").splitlines(), "```", ""]


def measured_with(files, t: dict) -> list:
    """How the runs shown were made, from RUNS; where `files` maps each to its data, a load
    measured for other seconds a level than its command gives (measure.py --seconds) says so."""
    lines = []
    for name in files:
        run = RUN_OF.get(name)
        if run is None:
            continue
        parts = []
        if run.server:
            parts.append(f"{t['server']}: `{run.server}`")
        parts.append(f"`{run.command}`")
        if run.mps:
            parts.append(t["under_mps"])
        if isinstance(files, dict):
            seconds = other_seconds(run.command, files[name])
            if seconds is not None:
                parts.append(t["level_seconds"].format(seconds=seconds))
        lines.append(f"- `{name}`: " + "; ".join(parts))
    return [f"{t['measured_with']}:", "", *lines, ""] if lines else []


def other_seconds(command: str, run: dict) -> str | None:
    """The seconds a level of a load was measured for, where they differ from the command's
    --seconds: its requests over its requests per second."""
    declared = SECONDS.search(command)
    measured = {
        f"{level['requests'] / level['requests_per_s']:.3g}"
        for level in run.get("levels", [])
        if level.get("requests_per_s")
    }
    if declared is None or not measured or measured == {f"{float(declared.group(1)):.3g}"}:
        return None
    return ", ".join(sorted(measured, key=float))

"""The Markdown every section of the results pages is written in: tables, text blocks, and the
commands a section's runs were measured with (from RUNS)."""

from dynamic_shapes.results import RUN_OF


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
    """How the runs shown were made, from RUNS."""
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
        lines.append(f"- `{name}`: " + "; ".join(parts))
    return [f"{t['measured_with']}:", "", *lines, ""] if lines else []

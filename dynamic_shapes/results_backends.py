"""The results pages' section on Triton's two backends side by side (loadgen.py against
serve.py and serve.py --backend tensorrt): at each level of batch-1 clients, every set-up's
requests/s, latency, batching and the server's split of the time, with its ratio to the Python
backend as serve.py starts it and at its best; then the mixed batch sizes, images served and
refusals apart."""

from dynamic_shapes.results import (
    BACKENDS_BATCH_ONE,
    BACKENDS_MIXED,
    PYTHON_AS_STARTED,
    backend_of,
    server_of,
)
from dynamic_shapes.results_figures import count, times
from dynamic_shapes.results_markdown import table

BUSIEST = 64  # clients: the level the set-ups are ranked at


def level_at(run: dict | None, clients: int) -> dict | None:
    for level in (run or {}).get("levels", []):
        if level["concurrency"] == clients:
            return level
    return None


def best_of(runs: dict, backend: str | None = None) -> str | None:
    """The set-up with the most requests/s at BUSIEST batch-1 clients (of one backend)."""
    measured = {
        name: level_at(runs.get(name), BUSIEST)["requests_per_s"]
        for name in BACKENDS_BATCH_ONE
        if level_at(runs.get(name), BUSIEST) and backend in (None, backend_of(name))
    }
    return max(measured, key=measured.get) if measured else None


def compute_us(level: dict) -> float:
    return level["compute_input_us"] + level["compute_infer_us"] + level["compute_output_us"]


def ratio(level: dict, against: dict | None) -> str:
    if against is None or not against["requests_per_s"]:
        return "-"
    return times(level["requests_per_s"] / against["requests_per_s"])


def latency(value) -> str:
    return "-" if value is None else count(value)


def batch_one_table(runs: dict, t: dict) -> list:
    python_best = best_of(runs, "python")
    rows = []
    levels = sorted({level["concurrency"] for name in BACKENDS_BATCH_ONE if name in runs
                     for level in runs[name]["levels"]})  # fmt: skip
    for clients in levels:
        started = level_at(runs.get(PYTHON_AS_STARTED), clients)
        best = level_at(runs.get(python_best), clients)
        for name in BACKENDS_BATCH_ONE:
            level = level_at(runs.get(name), clients)
            if level is None:
                continue
            rows.append([
                clients, t["backends"][backend_of(name)], f"`{name}`", server_of(name),
                count(level["requests_per_s"]), latency(level["p50_us"]),
                latency(level["p90_us"]), latency(level["p99_us"]),
                f"{level['requests_per_execution']:.2f}", count(level["queue_us"]),
                count(compute_us(level)), ratio(level, started), ratio(level, best),
            ])  # fmt: skip
    if not rows:
        return []
    out = [t["backends_batch_one"].format(best=f"`{python_best}`" if python_best else "-"), ""]
    out += table(t["backends_header"], rows, right_from=4)
    fastest = best_of(runs)
    if fastest is not None:
        level = level_at(runs[fastest], BUSIEST)
        out += [t["backends_fastest"].format(
            clients=BUSIEST, file=f"`{fastest}`", server=server_of(fastest),
            requests=count(level["requests_per_s"]), p99=latency(level["p99_us"])), ""]  # fmt: skip
    return out


def mixed_table(runs: dict, t: dict) -> list:
    python = runs.get(BACKENDS_MIXED[0])
    rows = []
    for name in BACKENDS_MIXED:
        for level in (runs.get(name) or {}).get("levels", []):
            against = level_at(python, level["concurrency"])
            images = "-"
            if against and against["images_per_s"]:
                images = times(level["images_per_s"] / against["images_per_s"])
            rows.append([
                t["backends"][backend_of(name)], f"`{name}`", server_of(name),
                level["concurrency"], count(level["requests_per_s"]),
                count(level["images_per_s"]), count(level["errors"]), latency(level["p50_us"]),
                latency(level["p99_us"]), f"{level['requests_per_execution']:.2f}", images,
            ])  # fmt: skip
    if not rows:
        return []
    return [t["backends_mixed"], "", *table(t["mixed_header"], rows, right_from=3)]


def backends_section(runs: dict, t: dict) -> list:
    body = batch_one_table(runs, t) + mixed_table(runs, t)
    if not body:
        return []
    return [f"### {t['backends_title']}", "", t["backends_note"], "", *body]

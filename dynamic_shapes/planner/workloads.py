"""Workloads: the shapes of a stream of requests, what profiles are planned for.

A request's shapes are {input name: shape}, e.g. {"input_ids": (4, 128), "attention_mask":
(4, 128)}; a workload is the requests' shapes in the order they came. Two files hold one:

    JSON Lines, one request a line, in order (what a recorder appends to):
        {"input_ids": [4, 128], "attention_mask": [4, 128]}
        {"input_ids": [1, 37], "attention_mask": [1, 37]}

    A histogram, JSON: each distinct request's shapes once, with how many requests had them
    (the order of the requests is not kept):
        [{"shapes": {"input_ids": [4, 128], "attention_mask": [4, 128]}, "count": 812}, ...]

read_workload tells them apart by their first character ('{' or '['). Every request names the
same inputs, each with the same rank, and every dimension is a positive integer; anything else
is refused, naming the file and the line (or histogram entry). A line cut short (a writer that
stopped mid-line: its JSON ends early) is skipped and counted instead, wherever it is: a
recorder that finds the file ending mid-line starts on a new line, so that torn line can end up
inside the file.

In memory a request's shapes are a *shape key*: ((name, shape), ...) sorted by name, each shape
a tuple of ints, so it can be counted and looked up (a replay's per-shape timings are keyed by
it). A histogram is {shape key: count}, in the order the shapes first came.
"""

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from numbers import Integral
from pathlib import Path

from dynamic_shapes.files import write_atomically


def shape_key(shapes: Mapping, where: str = "a request") -> tuple:
    """The shape key of a request's shapes {input name: shape}; ValueError, saying `where`,
    unless it names at least one input, each with a list of positive integers."""
    if not isinstance(shapes, Mapping) or not shapes:
        raise ValueError(
            f"{where}: {shapes!r} is not a request's shapes; give an object of input names to "
            'shapes, e.g. {"input_ids": [4, 128], "attention_mask": [4, 128]}'
        )
    key = []
    for name, shape in shapes.items():
        if not isinstance(name, str) or not isinstance(shape, list | tuple) or not shape:
            raise ValueError(
                f"{where}: {name!r}: {shape!r} is not an input's shape; give a list of its "
                "dimensions, e.g. [4, 128]"
            )
        for position, size in enumerate(shape):
            if not isinstance(size, Integral) or isinstance(size, bool) or size < 1:
                raise ValueError(
                    f"{where}: input {name}, dimension {position} is {size!r}; every dimension "
                    "of a request's shape is a positive integer"
                )
        key.append((name, tuple(int(size) for size in shape)))
    return tuple(sorted(key))


def key_shapes(key: tuple) -> dict:
    """A shape key's {input name: shape}."""
    return dict(key)


def describe_key(key: tuple) -> str:
    """'input_ids [4, 128], attention_mask [4, 128]'"""
    return ", ".join(f"{name} [{', '.join(map(str, shape))}]" for name, shape in key)


def check_same_inputs(key: tuple, first: tuple, where: str) -> None:
    """Refuses a request whose inputs or ranks differ from the first request's."""
    if [(name, len(shape)) for name, shape in key] != [(n, len(s)) for n, s in first]:
        raise ValueError(
            f"{where}: {describe_key(key)} differs in its inputs or their ranks from the first "
            f"request, {describe_key(first)}; every request of a workload gives the same inputs"
        )


def make_histogram(requests) -> dict:
    """{shape key: count} for requests' shapes (shape keys, or {input name: shape} mappings), in
    the order each shape first came; ValueError for a request unlike the first."""
    counts = Counter()
    first = None
    for index, request in enumerate(requests):
        key = request if isinstance(request, tuple) else shape_key(request, f"request {index}")
        first = first or key
        check_same_inputs(key, first, f"request {index}")
        counts[key] += 1
    return dict(counts)


def most_frequent(histogram: Mapping) -> tuple:
    """The shape key with the highest count; of equal counts, the one that came first."""
    return max(histogram, key=histogram.__getitem__)


@dataclass(frozen=True)
class Workload:
    """A workload as read from a file: its histogram, its requests in order (None where the file
    is a histogram, which keeps no order), and how many lines cut short reading skipped."""

    histogram: dict
    requests: tuple | None
    torn_lines: int = 0

    def in_order(self) -> list:
        """The requests' shape keys in order: as they came, or, for a histogram, each shape as
        many times as it counts, shapes in the file's order."""
        if self.requests is not None:
            return list(self.requests)
        return [key for key, count in self.histogram.items() for _ in range(count)]


@dataclass(frozen=True)
class Summary:
    """requests: how many; distinct: how many distinct shapes; ranges: {input name: (smallest,
    largest)} per dimension over the workload; most_frequent: (shape key, count)."""

    requests: int
    distinct: int
    ranges: dict
    most_frequent: tuple

    def describe(self) -> str:
        key, count = self.most_frequent
        ranges = "; ".join(
            f"{name} [{', '.join(describe_range(a, b) for a, b in zip(*r, strict=True))}]"
            for name, r in self.ranges.items()
        )
        return (
            f"{self.requests} requests, {self.distinct} distinct shapes; {ranges}; most "
            f"frequent {describe_key(key)} ({count} requests, {100 * count / self.requests:.1f}%)"
        )


def describe_range(low: int, high: int) -> str:
    """'4' or '1..128'"""
    return str(low) if low == high else f"{low}..{high}"


def summarize(histogram: Mapping) -> Summary:
    """The workload's size, distinct shapes, per-dimension min and max, most frequent shape."""
    if not histogram:
        raise ValueError("the workload holds no requests")
    ranges = {}
    for key in histogram:
        for name, shape in key:
            low, high = ranges.get(name, (shape, shape))
            ranges[name] = (
                tuple(map(min, low, shape)),
                tuple(map(max, high, shape)),
            )
    top = most_frequent(histogram)
    return Summary(sum(histogram.values()), len(histogram), ranges, (top, histogram[top]))


# The files


def request_line(key: tuple) -> str:
    """A request's line of a JSON Lines workload, its newline included."""
    return json.dumps({name: list(shape) for name, shape in key}) + "\n"


def write_requests(path, requests) -> None:
    """Writes requests' shapes (shape keys or mappings) as a JSON Lines workload, in order."""
    keys = [
        r if isinstance(r, tuple) else shape_key(r, f"request {i}") for i, r in enumerate(requests)
    ]
    make_histogram(keys)  # the same checks as reading it back
    write_atomically(path, "".join(map(request_line, keys)).encode())


def histogram_to_json(histogram: Mapping) -> str:
    """The histogram file's text: one entry a line, in the histogram's order."""
    entries = [
        json.dumps({"shapes": {name: list(shape) for name, shape in key}, "count": count})
        for key, count in histogram.items()
    ]
    return "[\n  " + ",\n  ".join(entries) + "\n]\n"


def write_histogram(path, histogram: Mapping) -> None:
    """Writes a histogram {shape key: count} as a histogram file."""
    if not histogram:
        raise ValueError("the histogram holds no requests; there is nothing to write")
    write_atomically(path, histogram_to_json(histogram).encode())


def read_workload(path) -> Workload:
    """The workload in a JSON Lines or histogram file, told apart by content; ValueError names
    the file and the line or entry that is wrong."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"cannot read the workload {path}: {error}") from None
    start = text.lstrip()[:1]
    if start == "[":
        workload = histogram_from_json(text, str(path))
    elif start == "{":
        workload = workload_from_lines(text, str(path))
    else:
        raise ValueError(
            f"{path} is neither a workload of JSON lines (one request's shapes a line, "
            '{"input_ids": [4, 128], ...}) nor a histogram ([{"shapes": {...}, "count": N}, '
            f"...]): it starts with {text.lstrip()[:20]!r}"
            if start
            else f"{path} is empty; a workload holds at least one request"
        )
    return workload


def workload_from_lines(text: str, source: str) -> Workload:
    """The workload in JSON Lines text from `source` (named in errors)."""
    keys, torn, first = [], 0, None
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{source}, line {number}"
        try:
            shapes = json.loads(line)
        except json.JSONDecodeError as error:
            if cut_short(line, error):
                torn += 1
                continue
            raise ValueError(f"{where} is not JSON: {error.msg} (column {error.colno})") from None
        key = shape_key(shapes, where)
        first = first or key
        check_same_inputs(key, first, where)
        keys.append(key)
    if not keys:
        raise ValueError(f"{source} holds no complete request ({torn} lines cut short)")
    return Workload(make_histogram(keys), tuple(keys), torn)


def cut_short(line: str, error: json.JSONDecodeError) -> bool:
    """Whether a line that is not JSON is one cut short: its JSON ends before it is complete."""
    return error.pos >= len(line.rstrip()) or error.msg.startswith("Unterminated string")


def histogram_from_json(text: str, source: str) -> Workload:
    """The workload in a histogram file's text from `source` (named in errors)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(
            f"{source} is not JSON: {error.msg} (line {error.lineno}, column {error.colno})"
        ) from None
    if not isinstance(data, list) or not data:
        raise ValueError(
            f'{source} holds no histogram; give a list of {{"shapes": {{...}}, "count": N}}'
        )
    histogram, first = {}, None
    for index, entry in enumerate(data):
        where = f"{source}, entry {index}"
        if not isinstance(entry, dict) or set(entry) != {"shapes", "count"}:
            raise ValueError(
                f'{where}: {entry!r} is not {{"shapes": {{input name: shape}}, "count": N}}'
            )
        count = entry["count"]
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise ValueError(f"{where}: count {count!r} is not a positive integer")
        key = shape_key(entry["shapes"], where)
        first = first or key
        check_same_inputs(key, first, where)
        if key in histogram:
            earlier = list(histogram).index(key)
            raise ValueError(
                f"{where} repeats the shapes of entry {earlier}, {describe_key(key)}; give each "
                "shape once, with its whole count"
            )
        histogram[key] = count
    return Workload(histogram, None)

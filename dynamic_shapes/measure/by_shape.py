"""The benchmark's shapes mode: a model with any dynamic dimensions, measured over a list of
request shapes (given in Polygraphy's syntax, or a workload file's), each request served through
the dispatcher under both routing rules in alternating rounds; which profile each rule picks,
each shape's latency under each, and their ratio, weighted by how often each shape comes.

Each rule's dispatcher serves an engine loaded of its own from the same bytes (TensorRT lets
one live context hold each profile), on the lean path with pageable NumPy arrays, as infer()
is most often called. After the timing, every shape's outputs under each rule are checked
against ONNX Runtime.
"""

from functools import partial

import numpy as np

from dynamic_shapes.measure.timing import interleave
from dynamic_shapes.profiles import ITEM, check_dimensions
from dynamic_shapes.reference import OnnxRuntimeReference, largest_difference, mismatch
from dynamic_shapes.serving.routing import RULES, format_shapes, plan_route

BASELINE = "narrowest"


def parse_request_shapes(items) -> dict:
    """{input name: shape} from `name:[d0,d1,...]` items, as Polygraphy's options write a
    shape; ValueError saying what is wrong."""
    from polygraphy.tools.args.util import parse_meta

    shapes = {}
    for item in items:
        if not ITEM.fullmatch(item):
            raise ValueError(f"{item!r} is not an input's shape; write NAME:[D0,D1,...]")
        ((name, (_, shape)),) = parse_meta([item], includes_dtype=False).items()
        check_dimensions(shape, f"{item!r}")
        if name in shapes:
            raise ValueError(f"input {name} is given twice in {' '.join(items)}")
        shapes[name] = tuple(int(d) for d in shape)
    return shapes


def random_feed(inputs, shapes: dict, seed: int) -> dict:
    """Random inputs of `shapes`: floats from a normal distribution, integers (token ids) from
    0 to 99, and 1s in every integer input whose name ends in "mask" (no token masked)."""
    rng = np.random.default_rng(seed)
    feed = {}
    for spec in inputs:
        shape = shapes[spec.name]
        if np.issubdtype(spec.dtype, np.floating):
            feed[spec.name] = rng.standard_normal(shape).astype(spec.dtype)
        elif spec.name.lower().endswith("mask"):
            feed[spec.name] = np.ones(shape, spec.dtype)
        else:
            feed[spec.name] = rng.integers(0, 100, shape).astype(spec.dtype)
    return feed


def measure_routing_rules(model_path, serialized, workload, settings, progress) -> dict:
    """Each distinct shape of `workload` ([(shapes, count)]) served under both rules."""
    from polygraphy.backend.trt import engine_from_bytes

    from dynamic_shapes.dispatch import Dispatcher

    reference = OnnxRuntimeReference(model_path)
    dispatchers = {}
    try:
        for rule in RULES:
            # Without the graphs of shapes sent again: the profiles each rule picks are what
            # is compared, not which shapes a cache kept.
            dispatchers[rule] = Dispatcher(
                engine_from_bytes(serialized), routing=rule, graphs_after=None
            )
        inputs = dispatchers[BASELINE].inputs
        names = [spec.name for spec in inputs]
        by_shape, notes, difference = [], [], 0.0
        for number, (shapes, count) in enumerate(workload):
            missing = sorted(set(names) - set(shapes))
            if missing:
                raise ValueError(f"the shapes {shapes} give no {missing}; the model has {names}")
            ordered = tuple(shapes[name] for name in names)
            label = format_shapes(names, ordered)
            routes = {}
            try:
                for rule, dispatcher in dispatchers.items():
                    route = plan_route(ordered, dispatcher.profiles, rule, names)
                    routes[rule] = [list(chunk) for chunk in route.chunks]
            except ValueError as error:
                notes.append(f"{label} left out: {error}")
                continue
            feed = random_feed(inputs, shapes, seed=number)
            variants = {rule: partial(d.infer, feed) for rule, d in dispatchers.items()}
            timings = interleave(variants, settings, progress, f"routing {label}")
            expected = reference(feed)
            for rule, dispatcher in dispatchers.items():
                outputs = dispatcher.infer(feed)
                if not isinstance(outputs, dict):
                    outputs = {dispatcher.output_names[0]: outputs}
                problem = mismatch(outputs, expected, exact=False)
                if problem is not None:
                    raise AssertionError(f"{rule} routing, {label}: {problem}")
                difference = max(difference, largest_difference(outputs, expected))
            by_shape.append({"shapes": label, "count": count, "routes": routes, "latency": timings})
        return {
            "profiles": [
                {
                    "min": format_shapes(names, p.min),
                    "opt": format_shapes(names, p.opt),
                    "max": format_shapes(names, p.max),
                }
                for p in dispatchers[BASELINE].profiles
            ],
            "by_shape": by_shape,
            "summary": summarize(by_shape),
            "notes": notes,
            "largest_difference_from_onnx_runtime": difference,
        }
    finally:
        for dispatcher in dispatchers.values():
            dispatcher.close()


def summarize(by_shape) -> dict:
    """Each rule's median latency weighted by each shape's count, the shapes the rules route
    differently, and each rule's weighted mean against the baseline's."""
    total = sum(row["count"] for row in by_shape)
    if not total:
        return {}
    mean = {
        rule: sum(row["count"] * row["latency"][rule]["median_us"] for row in by_shape) / total
        for rule in RULES
    }
    differ = [
        row["shapes"] for row in by_shape if len({str(r) for r in row["routes"].values()}) > 1
    ]
    return {
        "requests": total,
        "weighted_median_us": mean,
        "ratio_to_narrowest": {rule: mean[rule] / mean[BASELINE] for rule in RULES},
        "routed_differently": differ,
    }


def report_routing(result: dict) -> str:
    """The comparison as text: per shape, each rule's profile and median latency and the
    ratio; then the weighted means."""
    other = next(rule for rule in RULES if rule != BASELINE)
    lines = ["Routing rules: narrowest range vs nearest opt (Triton's), lean path, pageable"]
    for index, profile in enumerate(result["profiles"]):
        lines.append(f"  profile {index}: min {profile['min']} opt {profile['opt']} "
                     f"max {profile['max']}")  # fmt: skip
    lines.append(
        f"  {'shapes':<48} {'count':>6} {'narrowest':>16} {'nearest-opt':>16} {'ratio':>6}"
    )
    for row in result["by_shape"]:
        cells = []
        for rule in (BASELINE, other):
            profiles = "+".join(str(chunk[0]) for chunk in row["routes"][rule])
            cells.append(f"p{profiles} {row['latency'][rule]['median_us']:>9.1f} us")
        ratio = row["latency"][other]["median_us"] / row["latency"][BASELINE]["median_us"]
        lines.append(f"  {row['shapes']:<48} {row['count']:>6} {cells[0]:>16} {cells[1]:>16} "
                     f"{ratio:>6.3f}")  # fmt: skip
    summary = result["summary"]
    if summary:
        mean = summary["weighted_median_us"]
        lines.append(
            f"  weighted over {summary['requests']} requests: narrowest {mean[BASELINE]:.1f} us, "
            f"nearest-opt {mean[other]:.1f} us (x{summary['ratio_to_narrowest'][other]:.3f}); "
            f"{len(summary['routed_differently'])} of {len(result['by_shape'])} shapes routed "
            "differently"
        )
    lines += [f"  note: {note}" for note in result["notes"]]
    return "\n".join(lines)

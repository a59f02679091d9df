#!/usr/bin/env python3
"""
Measures the trade-offs the walkthrough states, on this GPU, for the scenario's two models
(the identity, and a compute-heavy convnet with the same input) or yours:

  1. narrow vs wide profiles      latency on the three-profile engine vs one wide profile (1..128)
  2. shape switching              alternating batch sizes in one profile vs a fixed size
  3. profile switching            one context switching profiles vs one context per profile
  4. memory                       what the engine and each execution context take on the GPU
  5. runner activation            a TrtRunner over an owned context vs one that creates its own
  6. the cost of convenience      TrtRunner.infer, the dispatcher's paths and bare TensorRT loops
  7. contexts                     concurrent requests for one profile: one context vs several

Every latency is one request, end to end: host-to-device copy, inference, device-to-host copy
and a synchronize before the clock is read. Variants compared with each other run in
alternating rounds, so that drift in the machine's speed affects them alike. After each
comparison, every path's outputs are checked against ONNX Runtime. Engines are saved beside
each model and reused while they fit; a build says so while it runs.

    python3 benchmark.py                      # both models, about 3-4 minutes
    python3 benchmark.py --quick              # a smoke run
    python3 benchmark.py --model yours.onnx --json yours.json --plot yours.png

Any model with any dynamic dimensions, over a list of request shapes (Polygraphy's syntax, or a
workload file), comparing the dispatcher's two routing rules on the profiles given as Polygraphy
takes them (for the transformer, by default, scenario.py's):

    python3 benchmark.py --model transformer --shapes input_ids:[1,16] attention_mask:[1,16] \\
        --shapes input_ids:[8,128] attention_mask:[8,128] --json routing.json
    python3 benchmark.py --model transformer --workload workload.jsonl --json routing.json
"""

import argparse
import importlib.util
import json
import sys
from pathlib import Path

from build_model import ensure_model, write_model
from dynamic_shapes import cli, options
from dynamic_shapes.environment import environment
from dynamic_shapes.files import write_atomically
from dynamic_shapes.gpu import require_gpu_stack
from dynamic_shapes.measure.by_shape import (
    measure_routing_rules,
    parse_request_shapes,
    report_routing,
)
from dynamic_shapes.measure.engines import Engines
from dynamic_shapes.measure.plot import plot
from dynamic_shapes.measure.reference_check import Reference
from dynamic_shapes.measure.report import latency_panels, report
from dynamic_shapes.measure.sections import (
    CONTEXTS_BATCHES,
    CONVENIENCE_BATCHES,
    LATENCY_SECTIONS,
    MEASURE,
    NARROW_VS_WIDE_BATCHES,
    SECTIONS,
)
from dynamic_shapes.measure.trade_offs import WIDE_RANGE
from dynamic_shapes.onnx_inputs import read_model_input
from dynamic_shapes.profiles import (
    add_profile_options,
    profiles_from_args,
    profiles_from_command_line,
)
from scenario import (
    MODELS,
    TRANSFORMER_PATH,
    TRANSFORMER_PROFILE_OPTIONS,
    profile,
    profiles_for,
)

# The file formats matplotlib's savefig writes with its own backends and Pillow, its
# dependency (pgf, which needs LaTeX, left out); it picks one by the file's suffix.
PLOT_FORMATS = ("png", "svg", "svgz", "pdf", "eps", "ps", "jpg", "jpeg", "tif", "tiff", "webp")
# (rounds, reps, warmup): by default, and for --quick.
COUNTS = {"rounds": 10, "reps": 200, "warmup": 50}
QUICK_COUNTS = {"rounds": 3, "reps": 20, "warmup": 5}


def plot_file(text) -> Path:
    """A chart's path: writable, with a suffix that names a format the chart can be drawn in,
    so that the file written is the one named."""
    path = cli.output_file(text)
    if path.suffix[1:].lower() not in PLOT_FORMATS:
        raise argparse.ArgumentTypeError(
            f"{text}: name the chart's format by its suffix, one of "
            + ", ".join(f".{suffix}" for suffix in PLOT_FORMATS)
        )
    return path


def section_names(text) -> tuple:
    names = tuple(text.split(","))
    unknown = [name for name in names if name not in SECTIONS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown section(s) {unknown}; choose from {list(SECTIONS)}"
        )
    return names


def model_choice(text) -> tuple:
    """(name, path, exact) for a model the scripts know by name, or an ONNX file's path."""
    if text in MODELS:
        return text, MODELS[text], text == "identity"
    if text == "transformer":  # measured over shapes (--shapes, --workload) alone
        return text, TRANSFORMER_PATH, False
    return Path(text).stem, Path(text), False


def parse_args(argv=None):
    parser = cli.make_parser(__file__, __doc__)
    parser.add_argument(
        "--model",
        dest="models",
        action="append",
        type=model_choice,
        help=f"a model to measure, by name ({', '.join(MODELS)}, written when missing) or as "
        "an ONNX file with one input whose first dimension is a dynamic batch; repeat it for "
        "several (default: every named model)",
    )
    parser.add_argument(
        "--engine-dir",
        type=Path,
        help="where the engines are saved and reused (default: beside each model)",
    )
    parser.add_argument(
        "--batch-sizes",
        type=options.batch_sizes(),
        help="comma-separated batch sizes for sections 1, 6 and 7 "
        "(default: 1,4,16,32,128; 1,4,32,128; 4,128)",
    )
    for flag, kind, what in [
        ("--rounds", cli.positive, "rounds per comparison"),
        ("--reps", cli.positive, "timed calls per variant and round"),
        ("--warmup", cli.non_negative, "untimed calls per variant first"),
    ]:
        default = COUNTS[flag[2:]]
        parser.add_argument(flag, type=kind, help=f"{what} (default: {default})")
    parser.add_argument(
        "--sections",
        type=section_names,
        default=SECTIONS,
        help=f"comma-separated subset of: {','.join(SECTIONS)}",
    )
    options.add_json(
        parser,
        "where to write every figure and the environment (default: %(default)s)",
        default="benchmark.json",
    )
    parser.add_argument(
        "--plot",
        type=plot_file,
        help="also draw the latencies as a chart, in the format its suffix names: "
        f"{', '.join(PLOT_FORMATS)} (needs matplotlib)",
    )
    parser.add_argument(
        "--shapes",
        action="append",
        nargs="+",
        metavar="NAME:[D0,D1,...]",
        help="measure over request shapes instead of the sections: one request's shapes, as "
        "Polygraphy writes them, each input once; repeat it for every shape. Each is served "
        "under both routing rules and compared",
    )
    parser.add_argument(
        "--workload",
        type=Path,
        help="as --shapes, the shapes of a workload file (planner/workloads.py: JSON Lines or a "
        "histogram), each weighted by its count",
    )
    add_profile_options(parser)
    options.add_quick(
        parser,
        "a smoke run: 3 rounds of 20 calls, 5 warm-up calls; --rounds, --reps and "
        "--warmup, where given, are kept",
    )
    args = parser.parse_args(argv)
    by_shape_options(parser, args)
    if args.engine_dir is not None and not args.engine_dir.is_dir():
        parser.error(f"argument --engine-dir: there is no folder {args.engine_dir}")
    if args.plot:
        if not set(args.sections) & set(LATENCY_SECTIONS):
            parser.error(
                f"--plot draws latencies, and --sections {','.join(args.sections)} measures none;"
                f" add one of {','.join(LATENCY_SECTIONS)}"
            )
        if importlib.util.find_spec("matplotlib") is None:
            parser.error("--plot needs matplotlib: python3 -m pip install matplotlib")
    options.fill_counts(args, COUNTS, QUICK_COUNTS)
    if args.by_shape:
        return args
    if any(name == "transformer" for name, _, _ in args.models or []):
        parser.error("--model transformer is measured over shapes: add --shapes or --workload")
    if args.profile_list is not None:
        parser.error(
            "profiles are given for --shapes or --workload; the sections use the scenario's"
        )
    args.models = args.models or [model_choice(name) for name in MODELS]
    names = [name for name, _, _ in args.models]
    if len(set(names)) < len(names):
        parser.error(f"argument --model: two models named alike in {names}")
    args.narrow_vs_wide_batches = args.batch_sizes or NARROW_VS_WIDE_BATCHES
    args.convenience_batches = args.batch_sizes or CONVENIENCE_BATCHES
    args.contexts_batches = args.batch_sizes or CONTEXTS_BATCHES
    return args


def by_shape_options(parser, args) -> None:
    """Reads the shapes mode's options into args.by_shape, args.workload_shapes and
    args.profile_list (argparse's error where they do not fit together)."""
    args.by_shape = bool(args.shapes or args.workload)
    model = args.models[0][1] if args.models else None
    args.profile_list = profiles_from_args(
        parser, args, model if model and model.exists() else None
    )
    if not args.by_shape:
        return
    if args.shapes and args.workload:
        parser.error("give the shapes with --shapes or --workload, not both")
    if not args.models or len(args.models) != 1:
        parser.error("--shapes and --workload measure one model: give --model once")
    if args.profile_list is None:
        if args.models[0][0] != "transformer":
            parser.error("give the model's profiles: --trt-min-shapes, --trt-opt-shapes and "
                         "--trt-max-shapes once per profile, or --profiles FILE")  # fmt: skip
        args.profile_list = profiles_from_command_line(TRANSFORMER_PROFILE_OPTIONS)
    if args.workload:
        from dynamic_shapes.planner.workloads import key_shapes, read_workload

        try:
            histogram = read_workload(args.workload).histogram
        except (OSError, ValueError) as error:
            parser.error(f"argument --workload: {error}")
        args.workload_shapes = [(key_shapes(key), count) for key, count in histogram.items()]
    else:
        try:
            args.workload_shapes = [(parse_request_shapes(items), 1) for items in args.shapes]
        except ValueError as error:
            parser.error(f"argument --shapes: {error}")


def main(argv=None) -> int:
    return cli.main(parse_args, run, argv)


def run(args) -> None:
    if args.by_shape:
        run_by_shape(args)
        return
    # A model file is checked before the GPU is, since a bad one fails the same on any
    # machine; a named model that is missing is written only once there is a GPU to run it.
    missing = {
        name for name, path, _ in args.models if path in MODELS.values() and not path.exists()
    }
    specs = {name: read_model_input(path) for name, path, _ in args.models if name not in missing}
    require_gpu_stack()
    for name, path, _ in args.models:
        if name in missing:
            ensure_model(path)
            specs[name] = read_model_input(path)

    progress = cli.Progress()
    results = {
        "environment": environment(),
        "settings": {"rounds": args.rounds, "reps": args.reps, "warmup": args.warmup},
        "models": {},
        "complete": False,
    }
    try:
        for name, path, exact in args.models:
            spec = specs[name]
            # The scenario's three profiles, and one wide profile, for this model's input.
            wide = profile(spec, *WIDE_RANGE)
            engines = Engines(path, spec, args.engine_dir, progress, profiles_for(spec), wide)
            reference = Reference(path, spec, exact)
            model = results["models"][name] = {
                "path": str(path),
                "input": spec.describe(),
                "checked": "bit for bit" if exact else "within a tolerance",
                "engines": engines.lines,
            }
            for section in args.sections:
                model[section] = MEASURE[section](engines, reference, args, progress)
                model["largest_difference_from_onnx_runtime"] = reference.largest_difference
        results["complete"] = True
    finally:
        progress.done()
        # Whatever was measured is kept, also when a later step fails or is interrupted.
        measured = [
            f"{name} {section}"
            for name, model in results["models"].items()
            for section in SECTIONS
            if section in model
        ]
        if measured:
            write_atomically(args.json, json.dumps(results, indent=2, default=float).encode())
            if not results["complete"]:
                print(f"Kept the figures of {', '.join(measured)} in {args.json}", file=sys.stderr)

    settings = f"{args.rounds} rounds x {args.reps} calls"
    print(f"{results['environment']['summary']}; {settings}\n")
    print(report(results))
    print(f"Wrote {args.json}")
    if args.plot:
        panels = latency_panels(results)
        if panels:
            plot(panels, results["environment"]["summary"], args.plot)
            print(f"Wrote {args.plot}")
        else:
            print(f"Drew no {args.plot}: every latency comparison was left out (see the notes)")


def run_by_shape(args) -> None:
    """The shapes mode: one engine of the given profiles, both routing rules over the shapes."""
    from polygraphy.backend.trt import bytes_from_engine

    from dynamic_shapes.engines import load_or_build_engine

    ((name, path, _),) = args.models
    require_gpu_stack()
    if name == "transformer" and not path.exists():
        write_model("transformer", path)
    progress = cli.Progress()
    folder = args.engine_dir or path.parent
    profiles = {f"profile {i}": p for i, p in enumerate(args.profile_list)}
    results = {
        "environment": environment(),
        "settings": {"rounds": args.rounds, "reps": args.reps, "warmup": args.warmup},
        "model": {"name": name, "path": str(path)},
        "complete": False,
    }
    try:
        engine, how = load_or_build_engine(
            path, folder / f"{path.stem}.shapes.engine", profiles, progress=progress
        )
        progress(how)
        results["model"]["engine"] = how
        serialized = bytes_from_engine(engine)
        del engine  # the dispatchers load engines of their own
        results["routing"] = measure_routing_rules(
            path, serialized, args.workload_shapes, args, progress
        )
        results["complete"] = True
    finally:
        progress.done()
        if "routing" in results:
            write_atomically(args.json, json.dumps(results, indent=2, default=float).encode())
    print(f"{results['environment']['summary']}; {args.rounds} rounds x {args.reps} calls\n")
    print(report_routing(results["routing"]))
    print(f"Wrote {args.json}")


if __name__ == "__main__":
    sys.exit(main())

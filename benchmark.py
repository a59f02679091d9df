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

Every latency is one request, end to end: host-to-device copy, inference, device-to-host copy
and a synchronize before the clock is read. Variants compared with each other run in
alternating rounds, so that drift in the machine's speed affects them alike. After each
comparison, every path's outputs are checked against ONNX Runtime. Engines are saved beside
each model and reused while they fit; a build says so while it runs.

    python3 benchmark.py                      # both models, about 3-4 minutes
    python3 benchmark.py --quick              # a smoke run
    python3 benchmark.py --model yours.onnx --json yours.json --plot yours.png
"""

import argparse
import importlib.util
import json
import sys
from pathlib import Path

from build_model import ensure_model
from dynamic_shapes import cli, options
from dynamic_shapes.environment import environment
from dynamic_shapes.files import write_atomically
from dynamic_shapes.gpu import require_gpu_stack
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
from scenario import MODELS, profile, profiles_for

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
        help="comma-separated batch sizes for sections 1 and 6 "
        "(default: 1,4,16,32,128 and 1,4,32,128)",
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
    options.add_quick(
        parser,
        "a smoke run: 3 rounds of 20 calls, 5 warm-up calls; --rounds, --reps and "
        "--warmup, where given, are kept",
    )
    args = parser.parse_args(argv)
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
    args.models = args.models or [model_choice(name) for name in MODELS]
    names = [name for name, _, _ in args.models]
    if len(set(names)) < len(names):
        parser.error(f"argument --model: two models named alike in {names}")
    options.fill_counts(args, COUNTS, QUICK_COUNTS)
    args.narrow_vs_wide_batches = args.batch_sizes or NARROW_VS_WIDE_BATCHES
    args.convenience_batches = args.batch_sizes or CONVENIENCE_BATCHES
    args.contexts_batches = args.batch_sizes or CONTEXTS_BATCHES
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    return cli.run(args, lambda: run(args))


def run(args) -> None:
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


if __name__ == "__main__":
    sys.exit(main())

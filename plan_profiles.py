#!/usr/bin/env python3
"""
Plans optimization profiles for a model and a workload (the shapes of the requests a service
saw), and proves them by measurement: one wide profile, candidate sets of up to --max-profiles
profiles cut where the workload's shapes cluster, and your own profiles where given are each
built into an engine, and the workload is replayed on each through the dispatcher, as a service
would serve it. Each distinct shape's outputs are checked against ONNX Runtime (bit for bit for
the identity). The report ranks them by mean latency (p50, p99, throughput, context memory,
build time, each beside the wide profile and yours); the best is printed as Polygraphy's
options and written as a profile file that the scripts take (--profiles).

    python3 plan_profiles.py --generate scenario --requests 3000 --write-workload scenario.jsonl
    python3 plan_profiles.py --model convnet --workload scenario.jsonl --write-profiles best.json
    python3 plan_profiles.py --model yours.onnx --workload recorded.jsonl --profiles mine.json \\
        --json report.json

A workload is a JSON Lines file (one request's {input name: shape} a line, as the dispatcher's
recorder writes it) or a histogram file (docs/planning.md).

How long it takes: each candidate costs one engine build, saved in --engine-dir and reused by
the next run while the model, profiles, TensorRT and GPU are the same (seconds for the identity;
for the convnet and the transformer, the build dominates), one ONNX Runtime run per distinct
shape on the CPU, and the replay, about the sum of the workload's latencies plus --warmup
requests (the wide profile's twice: alone, for the planner, then beside the others). The GPU
holds every candidate's engine and contexts at once for the replay. --max-profiles 3 with your
profiles measures up to 4 candidates. For the convnet on the scenario's workload of a few
thousand requests, a whole run is meant to stay within about 10 minutes; --requests replays
only the workload's first N requests, to bound a larger one.
"""

import argparse
import json
import sys
from pathlib import Path

from dynamic_shapes import cli
from dynamic_shapes.files import write_atomically
from dynamic_shapes.planner import generators
from dynamic_shapes.planner.workloads import make_histogram, read_workload, write_requests
from dynamic_shapes.profiles import (
    add_profile_options,
    profiles_from_args,
    write_profiles_file,
)

GENERATORS = ("scenario", "transformer")
DEFAULT_REQUESTS = {"scenario": 3000, "transformer": 2000}
DEFAULT_MAX_PROFILES = 3
# Options that only planning reads: refused without --model, where nothing is planned.
PLANNING_OPTIONS = (
    "--max-profiles", "--threads", "--warmup", "--values", "--engine-dir", "--rebuild", "--json",
    "--write-profiles", "--trt-min-shapes", "--trt-opt-shapes", "--trt-max-shapes", "--profiles",
)  # fmt: skip


def model_path(text) -> Path:
    """A model by name (identity, convnet, transformer: written when missing) or an ONNX file,
    read now, so that a bad one is refused before any work."""
    from build_model import DEFAULT_PATHS
    from dynamic_shapes.onnx_inputs import read_input_dimensions

    if text in DEFAULT_PATHS:
        path = DEFAULT_PATHS[text]
        if not path.exists():
            return path  # written in run(), once there is a GPU to plan on
    else:
        path = Path(text)
    try:
        read_input_dimensions(path)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return path


def value_range(text) -> tuple:
    from dynamic_shapes.planner.requests import parse_value_range

    return cli.checked(parse_value_range)(text)


def parse_args(argv=None):
    parser = cli.make_parser(__file__, __doc__)
    parser.add_argument(
        "--model",
        metavar="M",
        type=model_path,
        help="the model to plan for: identity, convnet or transformer (written when missing), "
        "or an ONNX file",
    )
    source = parser.add_argument_group("the workload (one of)")
    source.add_argument(
        "--workload", type=Path, metavar="FILE", help="a workload file: JSON Lines or histogram"
    )
    source.add_argument(
        "--generate",
        choices=GENERATORS,
        help="generate the walkthrough's scenario workload, or the transformer service's "
        "(docs/planning.md says their mixes)",
    )
    source.add_argument(
        "--requests",
        metavar="N",
        type=cli.positive,
        help="with --generate, how many requests (scenario "
        f"{DEFAULT_REQUESTS['scenario']}, transformer {DEFAULT_REQUESTS['transformer']}); "
        "with --workload, plan for and replay only its first N requests",
    )
    source.add_argument(
        "--seed",
        type=cli.non_negative,
        metavar="S",
        help="with --generate, the generator's seed (0)",
    )
    source.add_argument(
        "--write-workload",
        metavar="FILE",
        type=cli.output_file,
        help="with --generate, write the workload here as JSON Lines (without --model, that is "
        "all the command does)",
    )
    planning = parser.add_argument_group("planning")
    planning.add_argument(
        "--max-profiles",
        metavar="N",
        type=cli.positive,
        help=f"the most profiles a candidate set has (default: {DEFAULT_MAX_PROFILES})",
    )
    planning.add_argument(
        "--threads",
        metavar="N",
        type=cli.positive,
        help="replay with this many threads sending requests at once, each profile with as many "
        "execution contexts (default: 1, one request at a time, in the workload's order)",
    )
    planning.add_argument(
        "--warmup",
        metavar="N",
        type=cli.non_negative,
        help="untimed requests of the workload served before each timed replay, after every "
        "shape was served once and checked (default: 100)",
    )
    planning.add_argument(
        "--values",
        type=value_range,
        action="append",
        metavar="NAME:LOW..HIGH",
        help="the values an integer input's random requests take, both ends included (token "
        "ids within the vocabulary, a mask of ones: attention_mask:1..1); default 0..99",
    )
    planning.add_argument(
        "--engine-dir",
        metavar="DIR",
        type=cli.output_folder,
        help="where each candidate's engine is saved and reused (default: beside the model)",
    )
    planning.add_argument("--rebuild", action="store_true", help="build every engine again")
    for flag, help_ in [
        ("--json", "write every figure and the environment here"),
        (
            "--write-profiles",
            "write the best candidate's profiles here, as the JSON file the scripts' --profiles "
            "takes",
        ),
    ]:
        planning.add_argument(flag, metavar="FILE", type=cli.output_file, help=help_)
    add_profile_options(parser)
    args = parser.parse_args(argv)
    check_args(parser, args)
    return args


def check_args(parser, args) -> None:
    """The rules between options, each refused as a bad argument (exit 2), and the workload and
    profiles read and checked against the model, before any work."""
    if args.workload is not None and args.generate is not None:
        parser.error("argument --generate: not with --workload; give the workload one way")
    if args.workload is None and args.generate is None:
        parser.error("no workload given: give --workload FILE or --generate KIND")
    if args.generate is None:
        for option in ("--seed", "--write-workload"):
            if getattr(args, option[2:].replace("-", "_")) is not None:
                parser.error(f"argument {option}: only with --generate")
    if args.model is None:
        if args.generate is None or args.write_workload is None:
            parser.error(
                "argument --model: required to plan (without it, --generate KIND "
                "--write-workload FILE only writes a workload)"
            )
        given = [option for option in PLANNING_OPTIONS if getattr(args, attribute(option))]
        if given:
            parser.error(f"argument {given[0]}: needs --model, the model to plan for")
    args.seed = 0 if args.seed is None else args.seed
    args.max_profiles = args.max_profiles or DEFAULT_MAX_PROFILES
    args.threads = args.threads or 1
    args.warmup = 100 if args.warmup is None else args.warmup
    args.workload_requests = read_requests(parser, args)
    args.given = None
    args.value_ranges = {}
    if args.model is not None:
        check_against_model(parser, args)


def attribute(option: str) -> str:
    return option[2:].replace("-", "_")


def read_requests(parser, args) -> list:
    """The workload's requests' shape keys, in order: generated, or read from the file (its
    first --requests)."""
    if args.generate is not None:
        count = args.requests or DEFAULT_REQUESTS[args.generate]
        return generate(args.generate, count, args.seed)
    try:
        workload = read_workload(args.workload)
    except ValueError as error:
        parser.error(f"argument --workload: {error}")
    requests = workload.in_order()
    return requests[: args.requests] if args.requests else requests


def generate(kind: str, count: int, seed: int) -> list:
    """The generated workload of the project's models' inputs."""
    import scenario

    if kind == "scenario":
        return generators.scenario_requests(count, scenario.INPUT_NAME, scenario.IMAGE_SHAPE, seed)
    names = (scenario.TOKEN_IDS_NAME, scenario.ATTENTION_MASK_NAME)
    return generators.transformer_requests(count, names, scenario.MAX_SEQUENCE, seed)


def check_against_model(parser, args) -> None:
    """The workload, the given profiles and the value ranges checked against the model: a
    named model not written yet is checked once it is, in run()."""
    from dynamic_shapes.planner.requests import (
        check_value_ranges,
        check_workload_fits_model,
        read_input_dtypes,
    )

    values = dict(args.values or [])
    if len(values) < len(args.values or []):
        parser.error("argument --values: an input is given twice; give each input once")
    args.value_ranges = values
    exists = args.model.exists()
    args.given = profiles_from_args(parser, args, args.model if exists else None)
    if not exists:
        return
    try:
        check_workload_fits_model(make_histogram(args.workload_requests), args.model)
    except ValueError as error:
        parser.error(f"argument --{'workload' if args.workload else 'generate'}: {error}")
    try:
        check_value_ranges(values, read_input_dtypes(args.model), args.model)
    except ValueError as error:
        parser.error(f"argument --values: {error}")


def main(argv=None) -> int:
    return cli.main(parse_args, run, argv)


def run(args) -> None:
    if args.write_workload is not None:
        write_requests(args.write_workload, args.workload_requests)
        print(f"Wrote {len(args.workload_requests)} requests to {args.write_workload}")
    if args.model is None:
        return
    plan(args)


def plan(args) -> None:
    from build_model import DEFAULT_PATHS, write_model
    from dynamic_shapes.environment import environment
    from dynamic_shapes.gpu import require_gpu_stack
    from dynamic_shapes.planner.replay import Settings, plan_profiles, plan_record
    from dynamic_shapes.planner.report import format_report
    from dynamic_shapes.planner.requests import (
        check_value_ranges,
        check_workload_fits_model,
        read_input_dtypes,
    )
    from dynamic_shapes.profiles import check_profiles

    require_gpu_stack()
    if not args.model.exists():
        name = next(name for name, path in DEFAULT_PATHS.items() if path == args.model)
        write_model(name, args.model)
        print(f"Wrote {args.model}")
        check_workload_fits_model(make_histogram(args.workload_requests), args.model)
        check_value_ranges(args.value_ranges, read_input_dtypes(args.model), args.model)
        if args.given is not None:
            check_profiles(args.given, args.model)
    settings = Settings(
        engine_dir=args.engine_dir or args.model.parent,
        threads=args.threads,
        warmup=args.warmup,
        rebuild=args.rebuild,
    )
    progress = cli.Progress()
    try:
        result = plan_profiles(
            args.model,
            args.workload_requests,
            args.max_profiles,
            settings,
            given=args.given,
            value_ranges=args.value_ranges,
            progress=progress,
        )
    finally:
        progress.done()
    print(format_report(result.histogram, result.measurements), end="")
    checked = "bit for bit" if result.exact else "within reference.py's tolerance"
    print(f"Every distinct shape's outputs matched ONNX Runtime's, {checked}.")
    if args.write_profiles:
        write_profiles_file(args.write_profiles, result.best.profiles)
        print(f"Wrote the best profiles to {args.write_profiles} (--profiles takes it)")
    if args.json:
        extra = {"model": str(args.model), "max_profiles": args.max_profiles}
        record = plan_record(result, settings, environment(), extra)
        write_atomically(args.json, (json.dumps(record, indent=2) + "\n").encode())
        print(f"Wrote {args.json}")


if __name__ == "__main__":
    sys.exit(main())

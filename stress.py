#!/usr/bin/env python3
"""
Puts the dispatcher under load and through many lifecycles, and checks that every output is
exact and that no memory leaks:

  load        THREADS threads each send REQUESTS requests of random batch sizes (1..MAX_BATCH);
              every output is compared with its input, and the GPU memory in use and the
              process's resident host memory are compared before and after (after a warm-up).
              With PROCESSES > 1, as many processes do so at once, each with its own Dispatcher
              and THREADS threads: one interpreter's threads take turns holding its lock
  lifecycle   a Dispatcher created, used and closed DISPATCHERS times, PREPARED prepared
              requests (each with its CUDA graphs) prepared, run and closed, and a TrtRunner
              over an owned context activated, used and deactivated ACTIVATIONS times; GPU
              memory compared (and reported, unchecked, for Polygraphy's own deactivate(),
              which leaves each activation's output buffers behind)

    python3 stress.py            # 8 x 10,000 requests, 200 dispatchers, 300 prepared requests
                                 # of each size, 1,000 activations
    python3 stress.py --quick    # the same checks, smaller, in well under a minute
    python3 stress.py --processes 4 --threads 4    # the load from 4 processes of 4 threads
    python3 stress.py --at f6ff2c5  # the same, by that earlier commit's own stress.py

Exits with 1 if any output differs or any request fails, if the GPU memory in use changes by
1 MiB or more, or if the resident host memory of a process grows by more than 16 MiB after the
warm-up.
"""

import importlib.util
import json
import sys

from build_model import ensure_model
from dynamic_shapes import cli, options
from dynamic_shapes.engines import load_or_build_engine
from dynamic_shapes.environment import environment
from dynamic_shapes.files import write_atomically
from dynamic_shapes.gpu import require_gpu_stack
from dynamic_shapes.stress.lifecycle import run_lifecycles
from dynamic_shapes.stress.processes import run_load
from dynamic_shapes.stress.verdicts import notes, verdicts
from scenario import ENGINE_PATH, MODEL_PATH, PROFILES, check_identity

# Requests for one profile are served by this many contexts at once (profile sharing).
CONTEXTS_PER_PROFILE = 4


# The counts --quick makes smaller, by default and for --quick.
COUNTS = {"requests": 10_000, "warmup": 1000, "dispatchers": 200, "prepared": 300,
          "activations": 1000}  # fmt: skip
QUICK_COUNTS = {"requests": 250, "warmup": 100, "dispatchers": 20, "prepared": 30,
                "activations": 100}  # fmt: skip


def parse_args(argv=None):
    parser = cli.make_parser(__file__, __doc__)
    counts = [
        ("--processes", 1, "processes sending requests, each with its own Dispatcher and threads"),
        ("--threads", 8, "threads sending requests at once, in each process"),
        ("--requests", None, "requests per thread"),
        ("--max-batch", 300, "largest batch size of a request"),
        ("--dispatchers", None, "dispatchers created, used and closed"),
        ("--prepared", None, "prepared requests of each size prepared, run and closed"),
        ("--activations", None, "TrtRunner activations, each deactivation style"),
    ]
    for flag, default, help_ in counts:
        shown = COUNTS[flag[2:]] if default is None else default
        parser.add_argument(flag, type=cli.positive, default=default, help=f"{help_} ({shown})")
    parser.add_argument(
        "--warmup",
        type=cli.non_negative,
        help=f"requests per thread before anything is measured ({COUNTS['warmup']})",
    )
    parser.add_argument(
        "--path",
        choices=("lean", "runner"),
        default="lean",
        help="the dispatcher's execution path (docs/serving.md): lean",
    )
    parser.add_argument(
        "--memory",
        choices=("pageable", "page-locked", "gpu"),
        default="pageable",
        help="where the load's requests and outputs live (lean path; gpu needs CuPy): %(default)s",
    )
    options.add_contexts_per_profile(
        parser, CONTEXTS_PER_PROFILE, "execution contexts serving each profile (%(default)s)"
    )
    parser.add_argument(
        "--graphs-after",
        type=cli.positive,
        metavar="N",
        help="serve a shape sent N times before from CUDA graphs of its own, as "
        "Dispatcher(graphs_after=N) does (docs/serving.md; lean path); off by default, as in "
        "the Dispatcher",
    )
    options.add_engine(
        parser,
        ENGINE_PATH,
        "the engine to serve, built and saved there when missing or stale (default: %(default)s)",
        built=True,
    )
    options.add_json(parser, "also write every figure here")
    parser.add_argument(
        "--at",
        metavar="COMMIT",
        help="run the load and the lifecycles of this earlier commit of the project instead, by "
        "its own stress.py from a copy of it out of git, with the counts and options given here "
        "(it needs that commit's requirements); its figures are recorded under that commit, to "
        "compare a change with the code before it in one session",
    )
    options.add_quick(
        parser,
        "8 x 250 requests after 8 x 100, 20 dispatchers, 30 prepared requests of each "
        "size, 100 activations; the counts given explicitly (--requests, --warmup, "
        "--dispatchers, --prepared, --activations) are kept",
    )
    args = parser.parse_args(argv)
    options.check_engine(parser, args.engine, MODEL_PATH)
    if args.graphs_after is not None and args.path == "runner":
        parser.error("--graphs-after needs --path lean; the runner path has no CUDA graphs")
    if args.memory != "pageable" and args.path == "runner":
        parser.error(f"--memory {args.memory} needs --path lean; the runner path is for NumPy")
    if args.memory == "gpu" and importlib.util.find_spec("cupy") is None:
        parser.error(
            "--memory gpu needs CuPy: python3 -m pip install -r requirements-gpu-arrays.txt"
        )
    options.fill_counts(args, COUNTS, QUICK_COUNTS)
    if args.at is not None:
        from dynamic_shapes.stress.earlier import short_commit

        if args.engine != ENGINE_PATH:
            parser.error("--engine with --at: the earlier commit builds and serves its own engine")
        try:
            args.at = short_commit(args.at)
        except ValueError as error:
            parser.error(f"argument --at: {error}")
    return args


# The options an earlier commit's stress.py is given, each as parsed here: every count, filled
# in as --quick or the defaults fill it, so that both commits run the same load.
PASSED_ON = ("processes", "threads", "requests", "warmup", "max_batch", "path", "memory",
             "contexts_per_profile", "dispatchers", "prepared", "activations")  # fmt: skip


def earlier_arguments(args) -> list:
    """The command line of an earlier commit's stress.py for the load `args` asks for."""
    arguments = []
    for name in PASSED_ON:
        arguments += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    if args.graphs_after is not None:
        arguments += ["--graphs-after", str(args.graphs_after)]
    return arguments


def main(argv=None) -> int:
    return cli.main(parse_args, run, argv)


def run(args) -> int:
    if args.at is not None:
        from dynamic_shapes.stress.earlier import run_earlier

        return run_earlier(args.at, earlier_arguments(args), args.json)
    ensure_model(MODEL_PATH)
    require_gpu_stack()
    engine, how = load_or_build_engine(MODEL_PATH, args.engine, PROFILES)
    print(how)
    progress = cli.Progress()
    load = run_load(engine, args, progress)
    lifecycle = run_lifecycles(engine, args, progress, check_identity)
    progress.done()
    results = verdicts(load, lifecycle)
    for passed, line in results:
        print(f"{'PASS' if passed else 'FAIL'}  {line}")
    for line in notes(lifecycle):
        print(f"NOTE  {line}")
    if args.json:
        write_atomically(
            args.json,
            json.dumps(
                {"load": load, "lifecycle": lifecycle, "environment": environment()}, indent=2
            ).encode(),
        )
    return 0 if all(passed for passed, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())

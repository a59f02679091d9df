#!/usr/bin/env python3
"""
Measures the results pages' runs end to end on a GPU machine: records the environment into the
results folder, then runs each run declared in dynamic_shapes/results.py (RUNS) in order, each
Triton run's server started before its load and stopped after it, each MPS run between starting
and stopping NVIDIA's MPS daemon; a run that fails is reported and the next goes on. Last, it
renders docs/results.md and docs/results.zh-CN.md. Before it starts it prints each run with
about how long it takes, to pick the runs that fit the time there is.

    python3 measure.py --list                          # the runs and their estimates; runs none
    python3 measure.py                                 # every run, into this machine's folder
    python3 measure.py --only triton.json triton-tensorrt.json --seconds 3
    python3 measure.py --skip suite.txt --folder results/h100-trt8.6.0

Exit code 1 when a run failed (each is named at the end), 130 after Ctrl-C, which stops the run
in progress, its server and the MPS daemon before it ends.
"""

import subprocess
import sys
from pathlib import Path

import loadgen
from dynamic_shapes import cli
from dynamic_shapes.results import RECORD_ENVIRONMENT, RUNS, results_folder
from dynamic_shapes.results_driver import (
    INTERRUPTED,
    LoadDefaults,
    Settings,
    drive,
    plan_lines,
    select,
    summary,
)
from scenario import ENGINE_PATH

HERE = Path(__file__).resolve().parent
# What a load level costs beyond its measured seconds: its clients' start and warm-up, and a
# second to gather their figures.
LEVEL_OVERHEAD_S = loadgen.STARTUP_S + loadgen.WARMUP_S + 1.0
# The run whose command builds the engine the Triton runs serve (example.py, afresh).
BUILDS_ENGINE = "example.txt"


def folder_option(text) -> Path:
    return results_folder(text, "results/h100-trt8.6.0", "without --folder, this machine's is used")


def parse_args(argv=None):
    parser = cli.make_parser(__file__, __doc__)
    parser.add_argument(
        "--folder",
        type=cli.checked(folder_option),
        help="the results folder to write into (default: this machine's, "
        "results/<gpu>-trt<TensorRT version>, as render_results.py --record-environment names it)",
    )
    parser.add_argument(
        "--only", nargs="+", metavar="FILE", help="run only the runs that write these files"
    )
    parser.add_argument("--skip", nargs="+", metavar="FILE", help="leave these runs out")
    parser.add_argument(
        "--seconds",
        type=cli.seconds,
        help="loadgen.py's measured seconds per level in every Triton run, the soak included "
        "(default: each run's own)",
    )
    parser.add_argument(
        "--list",
        action="store_true",
        help="print the runs that would run, with their commands and estimates, and stop",
    )
    args = parser.parse_args(argv)
    try:
        args.runs = select(RUNS, args.only, args.skip)
    except ValueError as error:
        parser.error(str(error))
    if not args.runs:
        parser.error(
            "no run left to run: --skip leaves out every one --only names (the environment is "
            "recorded before the runs, as none of them)"
        )
    served = [run.file for run in args.runs if run.server]
    builds = BUILDS_ENGINE in {run.file for run in args.runs}
    if served and not builds and not ENGINE_PATH.exists() and not args.list:
        parser.error(
            f"{served[0]} serves {ENGINE_PATH.name}, which is not built yet: add "
            f"{BUILDS_ENGINE}, whose run builds it, to --only"
        )
    return args


def load_defaults() -> LoadDefaults:
    defaults = loadgen.parse_args([])
    return LoadDefaults(len(defaults.concurrency), defaults.seconds, LEVEL_OVERHEAD_S)


def record_environment(folder) -> Path:
    """Records this machine's environment into `folder` (or its own), and returns the folder."""
    command = [sys.executable, *RECORD_ENVIRONMENT.split()[1:], *([str(folder)] if folder else [])]
    result = subprocess.run(command, cwd=HERE, capture_output=True, text=True)
    if result.returncode != 0 or not result.stdout.strip():
        said = (result.stderr.strip() or result.stdout.strip() or "nothing").splitlines()[-1]
        raise RuntimeError(f"recording the environment failed (exit {result.returncode}): {said}")
    return Path(result.stdout.strip().splitlines()[-1])


def run(args) -> int:
    # SIGTERM stops the drive as Ctrl-C does: the run in progress, its server and MPS first.
    cli.interrupt_on_sigterm()
    defaults = load_defaults()
    for line in plan_lines(args.runs, defaults, args.seconds):
        print(line)
    if args.list:
        for one in args.runs:
            print(f"\n{one.file}:" + (f"\n  server: {one.server}" if one.server else ""))
            print(f"  {one.command}" + ("  (under MPS)" if one.mps else ""))
        return 0
    folder = record_environment(args.folder)
    print(f"Recorded the environment in {folder}", flush=True)
    settings = Settings(HERE, folder, args.seconds, say=lambda line: print(line, flush=True))
    outcomes = drive(args.runs, settings, defaults)
    for line in summary(outcomes):
        print(line)
    if outcomes and outcomes[-1].why == INTERRUPTED:
        raise KeyboardInterrupt
    return 0 if all(outcome.ok for outcome in outcomes) else 1


def main(argv=None) -> int:
    return cli.main(parse_args, run, argv)


if __name__ == "__main__":
    sys.exit(main())

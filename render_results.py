#!/usr/bin/env python3
"""
Writes the results pages (docs/results.md, docs/results.zh-CN.md) from the measured runs
committed under results/, one folder per environment: the tables, the provenance of every run,
and whether each target is met. docs/measuring.md says which command writes each run.

    python3 render_results.py                  # write the pages
    python3 render_results.py --check          # fail if a page differs from what the data renders
    python3 render_results.py --record-environment [FOLDER]
                                               # record this machine's environment in FOLDER
                                               # (default: results/<gpu>-trt<TensorRT version>)
"""

import json
import sys
from pathlib import Path

from dynamic_shapes import cli
from dynamic_shapes.environment import environment
from dynamic_shapes.files import write_atomically
from dynamic_shapes.results import ENVIRONMENT_FILE, RESULTS, check_machine_folder, folder_name
from dynamic_shapes.results_pages import render_pages, stale_pages

HERE = Path(__file__).resolve().parent


def parse_args(argv=None):
    parser = cli.make_parser(__file__, __doc__)
    action = parser.add_mutually_exclusive_group()
    action.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 if a results page differs from what results/ renders",
    )
    action.add_argument(
        "--record-environment",
        nargs="?",
        const="",
        metavar="FOLDER",
        help="write this machine's GPU, driver, versions, commit and date into "
        f"FOLDER/{ENVIRONMENT_FILE}, for the text files recorded beside it, and print FOLDER",
    )
    return parser.parse_args(argv)


def run(args) -> None:
    if args.record_environment is not None:
        record = environment()
        folder = Path(args.record_environment or RESULTS / folder_name(record))
        check_machine_folder(folder, record)
        folder.mkdir(parents=True, exist_ok=True)
        write_atomically(folder / ENVIRONMENT_FILE, (json.dumps(record, indent=2) + "\n").encode())
        print(folder)
        return
    if args.check:
        stale = stale_pages(HERE)
        if stale:
            names = ", ".join(str(path.relative_to(HERE)) for path in stale)
            raise RuntimeError(
                f"{names}: not what results/ renders; run python3 render_results.py and commit"
            )
        return
    for path, text in render_pages(HERE).items():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, text.encode())
        print(f"Wrote {path.relative_to(HERE)}")


def main(argv=None) -> int:
    return cli.main(parse_args, run, argv)


if __name__ == "__main__":
    sys.exit(main())

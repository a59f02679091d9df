"""The results pages, rendered from the measured runs committed under results/.

Every figure the documentation cites comes from a run committed as data, one folder per
environment (results/<gpu>-trt<TensorRT version>/, for instance results/h100-trt8.6.0/):

    environment.json      the environment of the text files beside it (render_results.py
                          --record-environment writes it)
    benchmark.json        benchmark.py --json
    stress*.json          stress.py --json, one file per load (stress-mps-6x3-page-locked.json)
    triton*.json          loadgen.py --json against serve.py, one file per server set-up
    example.txt           example.py's output
    inspect.txt           polygraphy inspect model's output
    suite.txt             the test suite's output on that machine

RUNS says which command writes each file. Each JSON carries its environment (GPU, driver,
TensorRT, Python, commit, date); the runs of a folder must agree on what makes the environment
(IDENTITY), so that a table, which never leaves its folder, never mixes environments. The
targets are declared once, in TARGETS; whether each is met is computed from the data.

The pages are written in English and Chinese from the same data; the text differs, the figures
cannot.
"""

import json
import re
from dataclasses import dataclass
from pathlib import Path

from dynamic_shapes.measure.convenience import BASELINE, GPU_BASELINE

PAGES = {"en": Path("docs/results.md"), "zh-CN": Path("docs/results.zh-CN.md")}
RESULTS = Path("results")
ENVIRONMENT_FILE = "environment.json"
# What makes an environment: every run in a folder must agree on these.
IDENTITY = ("gpu", "driver", "tensorrt", "python")
FOLDER_NAME = re.compile(r"^(?P<gpu>[a-z0-9]+)-trt(?P<tensorrt>\d+(\.\d+)*)(-[a-z0-9.]+)*$")
STRESS_FILE = re.compile(r"^stress(-[a-z0-9.-]+)?\.json$")
TRITON_FILE = re.compile(r"^triton(-[a-z0-9.-]+)?\.json$")
TEXT_FILES = ("example.txt", "inspect.txt", "suite.txt")

# benchmark.py's names for its variants (tests/test_results.py holds them to benchmark.py's).
FLOOR, GPU_FLOOR = BASELINE, GPU_BASELINE
PREPARED = "dispatcher, prepared, "
GRAPH = ", CUDA graph"
PAGEABLE_INFER = ("dispatcher, pageable", "dispatcher, pageable, CUDA graph")
ONE_CONTEXT = ", 1 context"


class ResultsError(ValueError):
    """A results folder or file the renderer cannot use; the message says which and why."""


@dataclass(frozen=True)
class Run:
    """A results file and the commands that write it, run from the project's folder with
    `folder` set to the results folder (folder=results/h100-trt8.6.0)."""

    file: str
    command: str
    server: str | None = None  # for a Triton run, serve.py as it runs meanwhile
    mps: bool = False  # run under NVIDIA's Multi-Process Service


MPS = " (MPS)"
RUNS = (
    Run(ENVIRONMENT_FILE, "folder=$(python3 render_results.py --record-environment)"),
    Run(
        "example.txt",
        "rm -f dynamic_identity.engine dynamic_identity.engine.json && "
        "python3 example.py > $folder/example.txt",
    ),
    Run("inspect.txt", "polygraphy inspect model dynamic_identity.engine > $folder/inspect.txt"),
    Run("benchmark.json", "python3 benchmark.py --json $folder/benchmark.json"),
    Run("stress.json", "python3 stress.py --requests 5000 --json $folder/stress.json"),
    Run(
        "stress-8x2-pageable.json",
        "python3 stress.py --processes 8 --threads 2 --requests 5000 "
        "--json $folder/stress-8x2-pageable.json",
    ),
    Run(
        "stress-6x3-page-locked.json",
        "python3 stress.py --processes 6 --threads 3 --memory page-locked --requests 5000 "
        "--json $folder/stress-6x3-page-locked.json",
    ),
    Run(
        "stress-mps-8x2-pageable.json",
        "python3 stress.py --processes 8 --threads 2 --requests 5000 "
        "--json $folder/stress-mps-8x2-pageable.json",
        mps=True,
    ),
    Run(
        "stress-mps-6x3-page-locked.json",
        "python3 stress.py --processes 6 --threads 3 --memory page-locked --requests 5000 "
        "--json $folder/stress-mps-6x3-page-locked.json",
        mps=True,
    ),
    Run(
        "triton.json",
        "python3 loadgen.py --seconds 5 --json $folder/triton.json",
        server="python3 serve.py",
    ),
    Run(
        "triton-no-batcher.json",
        "python3 loadgen.py --seconds 5 --json $folder/triton-no-batcher.json",
        server="python3 serve.py --no-dynamic-batching",
    ),
    Run(
        "triton-http.json",
        "python3 loadgen.py --protocol http --concurrency 1 --seconds 5 "
        "--json $folder/triton-http.json",
        server="python3 serve.py",
    ),
    Run(
        "triton-mixed.json",
        "python3 loadgen.py --batch-sizes 1,4,13,32,50,77,128,300 --concurrency 16 --seconds 5 "
        "--json $folder/triton-mixed.json",
        server="python3 serve.py",
    ),
    Run(
        "triton-4-instances.json",
        "python3 loadgen.py --concurrency 16,64 --seconds 5 --json $folder/triton-4-instances.json",
        server="python3 serve.py --instances 4",
    ),
    Run(
        "triton-4-instances-no-batcher.json",
        "python3 loadgen.py --concurrency 16,64 --seconds 5 "
        "--json $folder/triton-4-instances-no-batcher.json",
        server="python3 serve.py --instances 4 --no-dynamic-batching",
    ),
    Run(
        "triton-4-instances-mps.json",
        "python3 loadgen.py --concurrency 16,64 --seconds 5 "
        "--json $folder/triton-4-instances-mps.json",
        server="python3 serve.py --instances 4",
        mps=True,
    ),
    Run(
        "triton-soak.json",
        "python3 loadgen.py --concurrency 64 --seconds 60 --server-pid PID "
        "--json $folder/triton-soak.json",
        server="python3 serve.py",
    ),
    Run("suite.txt", "python3 -m pytest -q > $folder/suite.txt"),
)
RUN_OF = {run.file: run for run in RUNS}
# Triton set-ups compared with the batcher on and off.
BATCHER_PAIRS = (
    ("triton.json", "triton-no-batcher.json"),
    ("triton-4-instances.json", "triton-4-instances-no-batcher.json"),
)

# ---------------------------------------------------------------------------------------------
# Reading a results folder


@dataclass
class Environment:
    """The runs of one results folder."""

    name: str
    identity: dict  # IDENTITY's values, the same for every run
    runs: dict  # file name -> parsed JSON (dict) or text (str)

    def json_runs(self, pattern) -> dict:
        return {
            name: run
            for name, run in sorted(self.runs.items(), key=lambda item: run_order(item[0]))
            if pattern.match(name)
        }


def run_order(name: str) -> tuple:
    """Declared runs in RUNS's order, then the others by name."""
    names = list(RUN_OF)
    return (names.index(name), "") if name in RUN_OF else (len(names), name)


def read_results(results: Path) -> list:
    """Every environment under `results`, by folder name; none where it is missing."""
    if not results.is_dir():
        return []
    folders = sorted(path for path in results.iterdir() if path.is_dir())
    return [read_environment(folder) for folder in folders if not folder.name.startswith(".")]


def read_environment(folder: Path) -> Environment:
    match = FOLDER_NAME.match(folder.name)
    if not match:
        raise ResultsError(
            f"{folder}: a results folder is named <gpu>-trt<TensorRT version>, lowercase, "
            "such as h100-trt8.6.0 (render_results.py --record-environment names it)"
        )
    runs = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith("."):
            continue
        runs[path.name] = read_run(path)
    if not runs:
        raise ResultsError(f"{folder} holds no run: remove it, or commit a run into it")
    records = {name: run["environment"] for name, run in runs.items() if isinstance(run, dict)}
    texts = [name for name, run in runs.items() if isinstance(run, str)]
    if texts and ENVIRONMENT_FILE not in runs:
        raise ResultsError(
            f"{folder / texts[0]} needs {folder / ENVIRONMENT_FILE} beside it for its "
            f"environment: python3 render_results.py --record-environment {folder}"
        )
    first, identity = next(iter(records.items()))
    identity = {key: identity.get(key) for key in IDENTITY}
    for name, record in records.items():
        for key in IDENTITY:
            if record.get(key) != identity[key]:
                raise ResultsError(
                    f"{folder}: {name} ran with {key} {record.get(key)!r}, {first} with "
                    f"{identity[key]!r}; one folder holds the runs of one environment"
                )
    check_folder_name(folder, match, identity)
    return Environment(folder.name, identity, runs)


def check_folder_name(folder: Path, match, identity: dict) -> None:
    wanted = folder_name(identity)
    gpu = (identity["gpu"] or "").lower()
    if match.group("tensorrt") != identity["tensorrt"] or match.group("gpu") not in gpu:
        raise ResultsError(
            f"{folder}: its runs used {identity['gpu']} and TensorRT {identity['tensorrt']}; "
            f"name the folder for them ({wanted})"
        )


def folder_name(record: dict) -> str:
    """The folder name an environment's runs go into: the GPU's model, lowercase (the first
    word with a digit in its name: h100, a10g, l4), and the TensorRT version."""
    words = re.findall(r"[A-Za-z0-9]+", record.get("gpu") or "")
    model = next((word.lower() for word in words if re.search(r"\d", word)), None)
    if model is None or not record.get("tensorrt"):
        raise ResultsError(
            f"no GPU or no TensorRT recorded (GPU {record.get('gpu')!r}, TensorRT "
            f"{record.get('tensorrt')!r}): results are measured where both are usable"
        )
    return f"{model}-trt{record['tensorrt']}"


def read_run(path: Path):
    """A run file's content: parsed JSON with its environment, or text."""
    name = path.name
    known = name in RUN_OF or STRESS_FILE.match(name) or TRITON_FILE.match(name)
    if not path.is_file() or not known:
        raise ResultsError(
            f"{path}: not a results file; a results folder holds {ENVIRONMENT_FILE}, "
            "benchmark.json, stress*.json, triton*.json, " + ", ".join(TEXT_FILES)
        )
    text = path.read_text(encoding="utf-8")
    if name.endswith(".txt"):
        return text
    try:
        run = json.loads(text)
    except json.JSONDecodeError as error:
        raise ResultsError(f"{path}: not JSON ({error})") from None
    record = run if name == ENVIRONMENT_FILE else run.get("environment")
    if not isinstance(record, dict) or any(key not in record for key in IDENTITY):
        raise ResultsError(
            f"{path}: no environment record with {', '.join(IDENTITY)}; it was written by a "
            "version of the script that did not record one: measure again"
        )
    if name == ENVIRONMENT_FILE:
        return {"environment": run}
    return run


def by_batch(section: dict) -> list:
    """(batch, figures) in batch order: JSON turns the batch keys into strings."""
    return sorted(((int(batch), figures) for batch, figures in section.items()))

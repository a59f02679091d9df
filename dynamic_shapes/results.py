"""The results pages, rendered from the measured runs committed under results/.

Every figure the documentation cites comes from a run committed as data, one folder per
environment (results/<gpu>-trt<TensorRT version>/, for instance results/h100-trt8.6.0/):

    environment.json      the environment of the text files beside it (render_results.py
                          --record-environment writes it)
    benchmark.json        benchmark.py --json
    routing*.json         benchmark.py --shapes ... --json: the two routing rules compared
    plan-*.json           plan_profiles.py --json: the planner's proofs (and the profile files
                          they write beside them, plan-*-profiles.json)
    stress*.json          stress.py --json, one file per load (stress-mps-6x3-page-locked.json)
    triton*.json          loadgen.py --json against serve.py, one file per server set-up, on
                          Triton's Python backend or (triton-tensorrt*.json) its TensorRT backend
    example.txt           example.py's output
    inspect.txt           polygraphy inspect model's output
    suite.txt             the test suite's output on that machine

RUNS says which command writes each file, in the order measure.py runs them. Each JSON carries
its environment (GPU, driver, TensorRT, Python, commit, date); the runs of a folder must agree on
what makes the environment (IDENTITY), so that a table, which never leaves its folder, never
mixes environments. The targets are declared once, in targets.py; whether each is met is
computed from the data.

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
ROUTING_FILE = re.compile(r"^routing(-[a-z0-9.-]+)?\.json$")
PLAN_FILE = re.compile(r"^plan-[a-z0-9.-]+\.json$")
TEXT_FILES = ("example.txt", "inspect.txt", "suite.txt")

# benchmark.py's names for its variants (tests/test_results.py holds them to benchmark.py's).
FLOOR, GPU_FLOOR = BASELINE, GPU_BASELINE
INFER = "dispatcher, "
PREPARED = INFER + "prepared, "
GRAPH = ", CUDA graph"
# infer() of a pageable request whose shape was sent before: its graphs replay.
SHAPE_GRAPHS = INFER + "pageable" + GRAPH
PAGEABLE_INFER = (INFER + "pageable", SHAPE_GRAPHS)
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
    # About how many seconds of the GPU machine the run takes: the whole command's, or for a
    # Triton run the server's start (engine, contexts, graphs), to which measure.py adds each
    # load level from loadgen.py's options. Estimated from each script's steps (engine builds,
    # rounds, requests), to pick the runs that fit the time there is; measure.py prints what
    # each run took, to correct them by.
    estimate_s: int = 0
    # The server refuses part of the load by design (Triton's TensorRT backend refuses a batch
    # no listed profile takes): loadgen.py counts each refusal as an error, and exits 1 once it
    # has written the whole run.
    refusals: bool = False
    # Files the command writes beside `file` that are no run of their own (the planner's
    # profile files, whose profiles plan-*.json holds too).
    also_writes: tuple = ()
    # Render the pages before the run (the test suite checks that they are current).
    render_first: bool = False


# The commit stress.json's load is compared with, run again beside it (stress.py --at): the
# code from before infer() cut its per-request work and replayed graphs of shapes sent again.
EARLIER_COMMIT = "f6ff2c5"
EARLIER_STRESS = f"stress-{EARLIER_COMMIT}.json"
MPS = " (MPS)"
RECORD_ENVIRONMENT = "python3 render_results.py --record-environment"
# The walkthrough's hand-picked profiles as Polygraphy takes them (low latency, dynamic batching,
# offline), given to the planner beside its own.
HAND_PICKED = (
    "--trt-min-shapes 'X:[1,3,28,28]' --trt-opt-shapes 'X:[1,3,28,28]' "
    "--trt-max-shapes 'X:[1,3,28,28]' --trt-min-shapes 'X:[1,3,28,28]' "
    "--trt-opt-shapes 'X:[4,3,28,28]' --trt-max-shapes 'X:[32,3,28,28]' "
    "--trt-min-shapes 'X:[128,3,28,28]'"
)
# Profiles where the two routing rules part: a wide one tuned for single short sequences, and a
# narrow one for batches of 8 x 256.
OVERLAPPING_PROFILES = (
    "--trt-min-shapes input_ids:[1,1] attention_mask:[1,1] "
    "--trt-opt-shapes input_ids:[1,16] attention_mask:[1,16] "
    "--trt-max-shapes input_ids:[16,512] attention_mask:[16,512] "
    "--trt-min-shapes input_ids:[1,1] attention_mask:[1,1] "
    "--trt-opt-shapes input_ids:[8,256] attention_mask:[8,256] "
    "--trt-max-shapes input_ids:[8,256] attention_mask:[8,256]"
)
MIXED_BATCHES = "--batch-sizes 1,4,13,32,50,77,128,300 --concurrency 16 --seconds 5"
RUNS = (
    Run(ENVIRONMENT_FILE, f"folder=$({RECORD_ENVIRONMENT})", estimate_s=5),
    Run(
        "example.txt",
        "rm -f dynamic_identity.engine dynamic_identity.engine.json && "
        "python3 example.py > $folder/example.txt",
        estimate_s=30,
    ),
    Run(
        "inspect.txt",
        "polygraphy inspect model dynamic_identity.engine > $folder/inspect.txt",
        estimate_s=10,
    ),
    Run("benchmark.json", "python3 benchmark.py --json $folder/benchmark.json", estimate_s=300),
    Run(
        "routing.json",
        "python3 benchmark.py --model transformer --shapes input_ids:[1,16] attention_mask:[1,16] "
        "--shapes input_ids:[8,128] attention_mask:[8,128] "
        "--shapes input_ids:[32,512] attention_mask:[32,512] --json $folder/routing.json",
        estimate_s=150,
    ),
    Run(
        "routing-overlapping.json",
        f"python3 benchmark.py --model transformer {OVERLAPPING_PROFILES} "
        "--shapes input_ids:[1,20] attention_mask:[1,20] "
        "--shapes input_ids:[2,100] attention_mask:[2,100] "
        "--shapes input_ids:[4,120] attention_mask:[4,120] "
        "--shapes input_ids:[8,250] attention_mask:[8,250] --json $folder/routing-overlapping.json",
        estimate_s=150,
    ),
    Run(
        "plan-convnet.json",
        "python3 plan_profiles.py --model convnet --generate scenario --requests 3000 "
        f"--max-profiles 3 {HAND_PICKED} --json $folder/plan-convnet.json "
        "--write-profiles $folder/plan-convnet-profiles.json",
        estimate_s=300,
        also_writes=("plan-convnet-profiles.json",),
    ),
    Run(
        "plan-transformer.json",
        "python3 plan_profiles.py --model transformer --generate transformer --requests 2000 "
        "--max-profiles 3 --values input_ids:0..999 --values attention_mask:1..1 "
        "--json $folder/plan-transformer.json "
        "--write-profiles $folder/plan-transformer-profiles.json",
        estimate_s=420,
        also_writes=("plan-transformer-profiles.json",),
    ),
    Run(
        "stress.json",
        "python3 stress.py --requests 5000 --json $folder/stress.json",
        estimate_s=90,
    ),
    Run(
        # The same load from page-locked arrays: what the pageable load's staging copies cost.
        "stress-page-locked.json",
        "python3 stress.py --requests 5000 --memory page-locked "
        "--json $folder/stress-page-locked.json",
        estimate_s=90,
    ),
    Run(
        EARLIER_STRESS,
        f"python3 stress.py --requests 5000 --at {EARLIER_COMMIT} --json $folder/{EARLIER_STRESS}",
        estimate_s=120,
    ),
    Run(
        "stress-graphs.json",
        "python3 stress.py --requests 5000 --graphs-after 1 --json $folder/stress-graphs.json",
        estimate_s=90,
    ),
    Run(
        "stress-8x2-pageable.json",
        "python3 stress.py --processes 8 --threads 2 --requests 5000 "
        "--json $folder/stress-8x2-pageable.json",
        estimate_s=90,
    ),
    Run(
        "stress-6x3-page-locked.json",
        "python3 stress.py --processes 6 --threads 3 --memory page-locked --requests 5000 "
        "--json $folder/stress-6x3-page-locked.json",
        estimate_s=90,
    ),
    Run(
        "stress-mps-8x2-pageable.json",
        "python3 stress.py --processes 8 --threads 2 --requests 5000 "
        "--json $folder/stress-mps-8x2-pageable.json",
        mps=True,
        estimate_s=90,
    ),
    Run(
        "stress-mps-6x3-page-locked.json",
        "python3 stress.py --processes 6 --threads 3 --memory page-locked --requests 5000 "
        "--json $folder/stress-mps-6x3-page-locked.json",
        mps=True,
        estimate_s=90,
    ),
    Run(
        "triton.json",
        "python3 loadgen.py --seconds 5 --json $folder/triton.json",
        server="python3 serve.py",
        estimate_s=30,
    ),
    Run(
        "triton-no-batcher.json",
        "python3 loadgen.py --seconds 5 --json $folder/triton-no-batcher.json",
        server="python3 serve.py --no-dynamic-batching",
        estimate_s=30,
    ),
    Run(
        "triton-http.json",
        "python3 loadgen.py --protocol http --concurrency 1 --seconds 5 "
        "--json $folder/triton-http.json",
        server="python3 serve.py",
        estimate_s=30,
    ),
    Run(
        "triton-mixed.json",
        f"python3 loadgen.py {MIXED_BATCHES} --json $folder/triton-mixed.json",
        server="python3 serve.py",
        estimate_s=30,
    ),
    Run(
        "triton-4-instances.json",
        "python3 loadgen.py --concurrency 16,64 --seconds 5 --json $folder/triton-4-instances.json",
        server="python3 serve.py --instances 4",
        estimate_s=60,
    ),
    Run(
        "triton-4-instances-no-batcher.json",
        "python3 loadgen.py --concurrency 16,64 --seconds 5 "
        "--json $folder/triton-4-instances-no-batcher.json",
        server="python3 serve.py --instances 4 --no-dynamic-batching",
        estimate_s=60,
    ),
    Run(
        "triton-4-instances-mps.json",
        "python3 loadgen.py --concurrency 16,64 --seconds 5 "
        "--json $folder/triton-4-instances-mps.json",
        server="python3 serve.py --instances 4",
        mps=True,
        estimate_s=60,
    ),
    Run(
        "triton-tensorrt.json",
        "python3 loadgen.py --seconds 5 --json $folder/triton-tensorrt.json",
        server="python3 serve.py --backend tensorrt",
        estimate_s=15,
    ),
    Run(
        "triton-tensorrt-no-batcher.json",
        "python3 loadgen.py --seconds 5 --json $folder/triton-tensorrt-no-batcher.json",
        server="python3 serve.py --backend tensorrt --no-dynamic-batching",
        estimate_s=15,
    ),
    Run(
        "triton-tensorrt-no-graphs.json",
        "python3 loadgen.py --seconds 5 --json $folder/triton-tensorrt-no-graphs.json",
        server="python3 serve.py --backend tensorrt --no-cuda-graphs",
        estimate_s=15,
    ),
    Run(
        "triton-tensorrt-4-instances.json",
        "python3 loadgen.py --concurrency 16,64 --seconds 5 "
        "--json $folder/triton-tensorrt-4-instances.json",
        server="python3 serve.py --backend tensorrt --instances 4",
        estimate_s=20,
    ),
    Run(
        "triton-tensorrt-4-instances-no-batcher.json",
        "python3 loadgen.py --concurrency 16,64 --seconds 5 "
        "--json $folder/triton-tensorrt-4-instances-no-batcher.json",
        server="python3 serve.py --backend tensorrt --instances 4 --no-dynamic-batching",
        estimate_s=20,
    ),
    Run(
        "triton-tensorrt-mixed.json",
        f"python3 loadgen.py {MIXED_BATCHES} --json $folder/triton-tensorrt-mixed.json",
        server="python3 serve.py --backend tensorrt",
        estimate_s=15,
        refusals=True,
    ),
    Run(
        "triton-soak.json",
        "python3 loadgen.py --concurrency 64 --seconds 60 --server-pid PID "
        "--json $folder/triton-soak.json",
        server="python3 serve.py",
        estimate_s=30,
    ),
    # Written aside and moved in whole: a results file being written would make the suite's
    # own check of the pages fail.
    Run(
        "suite.txt",
        "python3 -m pytest -q > $folder/.suite.txt; mv $folder/.suite.txt $folder/suite.txt",
        estimate_s=600,
        render_first=True,
    ),
)
RUN_OF = {run.file: run for run in RUNS}
# A declared command's measured seconds per load level (loadgen.py --seconds).
SECONDS = re.compile(r"--seconds (\S+)")
# Files a run writes beside its own, which the renderer passes over.
COMPANIONS = {name for run in RUNS for name in run.also_writes}
# Triton set-ups compared with the batcher on and off.
BATCHER_PAIRS = (
    ("triton.json", "triton-no-batcher.json"),
    ("triton-4-instances.json", "triton-4-instances-no-batcher.json"),
    ("triton-tensorrt.json", "triton-tensorrt-no-batcher.json"),
    ("triton-tensorrt-4-instances.json", "triton-tensorrt-4-instances-no-batcher.json"),
)
# Triton's two backends side by side, on the same batch-1 requests over gRPC: the Python backend
# as serve.py starts it (what every other set-up is held against), then its other set-ups, then
# the TensorRT backend's, the repository export_triton.py writes first.
PYTHON_AS_STARTED = "triton.json"
TENSORRT_AS_EXPORTED = "triton-tensorrt.json"
BACKENDS_BATCH_ONE = (
    PYTHON_AS_STARTED,
    "triton-no-batcher.json",
    "triton-4-instances.json",
    "triton-4-instances-no-batcher.json",
    "triton-4-instances-mps.json",
    TENSORRT_AS_EXPORTED,
    "triton-tensorrt-no-batcher.json",
    "triton-tensorrt-no-graphs.json",
    "triton-tensorrt-4-instances.json",
    "triton-tensorrt-4-instances-no-batcher.json",
)
# The same mixed batches (1 to 300) on each backend.
BACKENDS_MIXED = ("triton-mixed.json", "triton-tensorrt-mixed.json")
TENSORRT_BACKEND = "--backend tensorrt"


def backend_of(file: str) -> str:
    """ "tensorrt" or "python": the backend a declared Triton run's server serves with."""
    return "tensorrt" if TENSORRT_BACKEND in (RUN_OF[file].server or "") else "python"


def server_of(file: str) -> str:
    """The set-up of a declared Triton run: its server's command, and MPS where it ran under it."""
    run = RUN_OF[file]
    return f"`{run.server}`" + (MPS if run.mps else "")


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


def results_folder(folder, example="h100-trt8.6.0",
                   hint="render_results.py --record-environment names it") -> Path:  # fmt: skip
    """`folder` as a Path, or ResultsError unless it is named as a results folder is; the
    message gives `example` and `hint`."""
    folder = Path(folder)
    if not FOLDER_NAME.match(folder.name):
        raise ResultsError(
            f"{folder}: a results folder is named <gpu>-trt<TensorRT version>, lowercase, "
            f"such as {example} ({hint})"
        )
    return folder


def read_environment(folder: Path) -> Environment:
    match = FOLDER_NAME.match(results_folder(folder).name)
    runs = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.name in COMPANIONS:
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


def check_machine_folder(folder: Path, record: dict) -> None:
    """Refuses a folder named for another machine now, rather than the renderer after the runs;
    a machine without a GPU or TensorRT names no folder, and its record is written as asked."""
    try:
        wanted = folder_name(record)
    except ResultsError:
        return
    if folder.name != wanted:
        raise ValueError(
            f"{folder}: this machine's runs ({record['gpu']}, TensorRT {record['tensorrt']}) go "
            f"into a folder named {wanted}"
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
    patterns = (STRESS_FILE, TRITON_FILE, ROUTING_FILE, PLAN_FILE)
    known = name in RUN_OF or any(pattern.match(name) for pattern in patterns)
    if not path.is_file() or not known:
        raise ResultsError(
            f"{path}: not a results file; a results folder holds {ENVIRONMENT_FILE}, "
            "benchmark.json, routing*.json, plan-*.json, stress*.json, triton*.json, "
            + ", ".join(TEXT_FILES)
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


def images_per_s(run: dict) -> float:
    """A stress run's images served per second of its load."""
    return run["load"]["images_served"] / run["load"]["seconds"]

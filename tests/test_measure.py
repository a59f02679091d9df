"""measure.py and the driver under it: which runs, in which order, with which commands, and the
lifecycle of a Triton run's server and of MPS around each run, against stand-in commands (a
process that prints serve.py's "Serving" line and waits to be stopped; a daemon that logs its
start and stop). What the real runs measure is the GPU's to say."""

import os
import signal
import sys
import textwrap
import time
from pathlib import Path

import pytest

import measure
from dynamic_shapes import results
from dynamic_shapes.results import Run
from dynamic_shapes.results_driver import (
    INTERRUPTED,
    LoadDefaults,
    Settings,
    drive,
    estimate_s,
    load_command,
    plan_lines,
    select,
    summary,
)
from tests.support import run_script

DEFAULTS = LoadDefaults(levels=4, seconds=10.0, overhead_s=7.0)
FOLDER = Path("results/h100-trt8.6.0")
# A stand-in for serve.py: says what serve.py says once it serves, then waits to be stopped,
# and leaves a mark when it is.
SERVER = textwrap.dedent(
    """
    import os, signal, sys, time
    print("Wrote repository/dynamic_identity", flush=True)
    if sys.argv[1] == "fail":
        print("serve.py: no TensorRT backend in backends/", flush=True)
        sys.exit(1)
    if sys.argv[1] == "stubborn":  # a server that will not stop, with a child of its own
        import subprocess
        child = subprocess.Popen(["sleep", "60"])
        open("child", "w").write(str(child.pid))
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print(f"Serving dynamic_identity ... (tritonserver pid {child.pid})", flush=True)
        while True:
            time.sleep(0.05)
    def stopped(number, frame):
        open("stopped", "a").write(f"{signal.Signals(number).name}\\n")
        sys.exit(0)
    signal.signal(signal.SIGTERM, stopped)
    print(f"Serving dynamic_identity on 127.0.0.1: HTTP 8000, gRPC 8001, metrics 8002 "
          f"(tritonserver pid {os.getpid()}). Ctrl-C stops it.", flush=True)
    while True:
        time.sleep(0.05)
    """
)
# Writes its arguments' last one into the first: a run's file.
WRITE = "python3 -c 'import sys; open(sys.argv[1], \"w\").write(sys.argv[-1])'"


@pytest.fixture
def project(tmp_path):
    (tmp_path / FOLDER).mkdir(parents=True)
    (tmp_path / "server.py").write_text(SERVER)
    (tmp_path / "daemon.py").write_text(
        "import sys\nopen('daemon.log', 'a').write(sys.argv[1] + ' ' + sys.stdin.read())\n"
    )
    return tmp_path


def settings_for(project, lines=None) -> Settings:
    return Settings(
        project, FOLDER, seconds=None,
        mps_start=(sys.executable, "daemon.py", "start"),
        mps_stop=(sys.executable, "daemon.py", "stop"),
        render=("bash", "-c", "echo rendered >> rendered.log"),
        ready_timeout_s=20.0, stop_timeout_s=1.0,
        say=(lines.append if lines is not None else lambda line: None),
    )  # fmt: skip


def served(file, command=None, **options) -> Run:
    """A Triton run against the stand-in server, whose load writes the server's pid."""
    return Run(file, command or f"{WRITE} $folder/{file} --server-pid PID",
               server="python3 server.py ok",
               **options)  # fmt: skip


def test_the_runs_come_in_the_declared_order_whatever_the_order_asked():
    picked = select(results.RUNS, ["triton.json", "benchmark.json", "suite.txt"])
    assert [run.file for run in picked] == ["benchmark.json", "triton.json", "suite.txt"]
    everything = select(results.RUNS, skip=["suite.txt"])
    assert [run.file for run in everything] == [
        run.file for run in results.RUNS if run.file not in ("environment.json", "suite.txt")
    ]


def test_a_file_no_run_writes_is_refused_with_the_runs_there_are():
    result = run_script("measure.py", "--only", "benchmark.json", "triton-tensorrt-mixd.json")
    assert result.returncode == 2
    assert "no declared run writes triton-tensorrt-mixd.json; the runs: environment.json" in (
        result.stderr
    )
    result = run_script("measure.py", "--only", "suite.txt", "--skip", "suite.txt")
    assert result.returncode == 2 and "no run left to run" in result.stderr


def test_a_results_folder_is_named_as_the_renderer_reads_it():
    result = run_script("measure.py", "--folder", "results/H100", "--list")
    assert result.returncode == 2
    assert "named <gpu>-trt<TensorRT version>" in result.stderr


def test_the_triton_runs_want_the_engine_built_or_the_run_that_builds_it(tmp_path):
    if measure.ENGINE_PATH.exists():
        pytest.skip(f"{measure.ENGINE_PATH.name} is built here")
    result = run_script("measure.py", "--only", "triton-tensorrt.json")
    assert result.returncode == 2
    assert "add example.txt, whose run builds it, to --only" in result.stderr
    assert measure.parse_args(["--only", "example.txt", "triton-tensorrt.json"]).runs


def test_the_load_gets_the_servers_pid_and_the_seconds_asked_for():
    soak = results.RUN_OF["triton-soak.json"].command
    assert load_command(soak, 2, 4321) == (
        "python3 loadgen.py --concurrency 64 --seconds 2 --server-pid 4321 "
        "--json $folder/triton-soak.json"
    )
    assert load_command("python3 loadgen.py --json x.json", 3.5) == (
        "python3 loadgen.py --seconds 3.5 --json x.json"
    )
    benchmark = results.RUN_OF["benchmark.json"].command
    assert load_command(benchmark, 2, 4321) == benchmark


def test_a_triton_runs_estimate_counts_its_levels_and_their_seconds():
    sweep = results.RUN_OF["triton.json"]  # four levels of 5 s
    assert estimate_s(sweep, DEFAULTS) == sweep.estimate_s + 4 * (5 + 7)
    assert estimate_s(sweep, DEFAULTS, seconds=2) == sweep.estimate_s + 4 * (2 + 7)
    two = results.RUN_OF["triton-tensorrt-4-instances.json"]  # --concurrency 16,64
    assert estimate_s(two, DEFAULTS) == two.estimate_s + 2 * (5 + 7)
    benchmark = results.RUN_OF["benchmark.json"]
    assert estimate_s(benchmark, DEFAULTS, seconds=2) == benchmark.estimate_s > 0
    lines = plan_lines([benchmark, sweep], DEFAULTS)
    total = benchmark.estimate_s + sweep.estimate_s + 4 * 12
    assert lines[-1] == f"2 runs, about {total / 60:.1f} min of the GPU machine"


def test_every_declared_run_has_an_estimate():
    assert all(run.estimate_s > 0 for run in results.RUNS)


def test_list_prints_each_run_its_commands_and_the_total_and_runs_nothing():
    result = run_script("measure.py", "--list", "--only", "triton-soak.json", "--seconds", "2")
    assert result.returncode == 0, result.stderr
    soak = results.RUN_OF["triton-soak.json"]
    assert f"server: {soak.server}" in result.stdout
    assert soak.command in result.stdout
    assert f"1 runs, about {(soak.estimate_s + 9) / 60:.1f} min" in result.stdout


def test_the_server_serves_the_load_and_is_stopped_after_it(project):
    lines = []
    outcomes = drive([served("triton-a.json")], settings_for(project, lines), DEFAULTS)
    assert [(o.file, o.ok) for o in outcomes] == [("triton-a.json", True)]
    pid = int((project / FOLDER / "triton-a.json").read_text())  # the pid the server printed
    assert (project / "stopped").read_text() == "SIGTERM\n"
    assert not running(pid)
    assert "    server: Wrote repository/dynamic_identity" in lines
    assert (project / "rendered.log").read_text() == "rendered\n"  # once, at the end


def test_a_failed_load_stops_its_server_and_the_next_run_goes_on(project):
    runs = [served("triton-a.json", "exit 3"), served("triton-b.json")]
    outcomes = drive(runs, settings_for(project), DEFAULTS)
    assert [(o.file, o.ok, o.why) for o in outcomes] == [
        ("triton-a.json", False, "exited 3 and wrote no triton-a.json"),
        ("triton-b.json", True, ""),
    ]
    assert (project / "stopped").read_text() == "SIGTERM\nSIGTERM\n"
    assert summary(outcomes) == [
        "1 of 2 runs done: triton-b.json",
        "FAILED triton-a.json: exited 3 and wrote no triton-a.json",
    ]


def test_a_server_that_ends_before_serving_fails_its_run_with_its_reason(project):
    run = Run("triton-a.json", f"{WRITE} $folder/triton-a.json x", server="python3 server.py fail")
    (outcome,) = drive([run], settings_for(project), DEFAULTS)[:1]
    assert not outcome.ok
    assert outcome.why == (
        "the server exited (1) before serving: serve.py: no TensorRT backend in backends/"
    )
    assert not (project / FOLDER / "triton-a.json").exists()  # no load without a server


def test_refusals_by_design_pass_a_whole_run_but_not_a_cut_one(project):
    whole = f"{WRITE} $folder/triton-m.json '{{\"complete\": true}}' && exit 1"
    cut = f"{WRITE} $folder/triton-n.json '{{\"complete\": false}}' && exit 1"
    runs = [served("triton-m.json", whole, refusals=True),
            served("triton-n.json", cut, refusals=True),
            served("triton-o.json", whole.replace("-m.", "-o."))]  # fmt: skip
    outcomes = drive(runs, settings_for(project), DEFAULTS)
    assert [(o.ok, o.why) for o in outcomes] == [
        (True, "exited 1: the server's refusals, by design"),
        (False, "exited 1"),
        (False, "exited 1"),
    ]


def test_mps_runs_between_the_daemons_start_and_stop_failed_or_not(project):
    runs = [Run("stress-mps.json", "exit 2", mps=True),
            Run("stress-mps-b.json", f"{WRITE} $folder/stress-mps-b.json x", mps=True)]  # fmt: skip
    outcomes = drive(runs, settings_for(project), DEFAULTS)
    assert [o.ok for o in outcomes] == [False, True]
    assert (project / "daemon.log").read_text() == "start stop quit\nstart stop quit\n"


def test_the_pages_are_rendered_before_a_run_that_asks_and_at_the_end(project):
    runs = [Run("suite.txt", "cat rendered.log > $folder/suite.txt", render_first=True)]
    (outcome,) = drive(runs, settings_for(project), DEFAULTS)
    assert outcome.ok
    assert (project / FOLDER / "suite.txt").read_text() == "rendered\n"
    assert (project / "rendered.log").read_text() == "rendered\nrendered\n"


def test_ctrl_c_stops_the_load_and_the_server_and_ends_the_drive(project):
    # The load interrupts the drive, as Ctrl-C would, then waits to be stopped itself.
    load = f"kill -INT {os.getpid()}; sleep 30"
    runs = [served("triton-a.json", load), served("triton-b.json")]
    began = time.monotonic()
    outcomes = drive(runs, settings_for(project), DEFAULTS)
    assert time.monotonic() - began < 20
    assert [(o.file, o.why) for o in outcomes] == [("triton-a.json", INTERRUPTED)]
    assert (project / "stopped").read_text() == "SIGTERM\n"
    assert not (project / "rendered.log").exists()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_the_environment_is_recorded_into_the_folder_given(tmp_path):
    folder = tmp_path / "results" / "h100-trt8.6.0"
    assert measure.record_environment(folder) == folder
    assert (folder / "environment.json").is_file()


def running(pid: int) -> bool:
    """Whether a process runs (a zombie, killed and not yet reaped, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def test_a_server_that_will_not_stop_is_killed_with_what_it_started(project):
    run = Run("triton-a.json", f"{WRITE} $folder/triton-a.json x",
              server="python3 server.py stubborn")  # fmt: skip
    (outcome,) = drive([run], settings_for(project), DEFAULTS)
    assert outcome.ok
    child = int((project / "child").read_text())
    deadline = time.monotonic() + 5
    while running(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not running(child)


def test_without_mps_an_mps_run_fails_saying_so_and_the_next_goes_on(project):
    settings = settings_for(project)
    settings = Settings(**{**settings.__dict__, "mps_start": ("no-mps-control-here", "-d")})
    runs = [Run("stress-mps.json", f"{WRITE} $folder/stress-mps.json x", mps=True),
            Run("stress.json", f"{WRITE} $folder/stress.json x")]  # fmt: skip
    outcomes = drive(runs, settings, DEFAULTS)
    assert [o.ok for o in outcomes] == [False, True]
    assert outcomes[0].why.startswith("cannot start MPS (no-mps-control-here -d): ")
    assert not (project / FOLDER / "stress-mps.json").exists()


def test_a_failed_commands_text_output_is_set_aside_where_the_pages_do_not_read_it(project):
    runs = [Run("example.txt", "echo 'Built half' > $folder/example.txt && exit 1"),
            Run("benchmark.json", f"{WRITE} $folder/benchmark.json x && exit 1")]  # fmt: skip
    outcomes = drive(runs, settings_for(project), DEFAULTS)
    aside = project / FOLDER / ".example.txt.failed"
    assert [o.why for o in outcomes] == [f"exited 1; its output is in {FOLDER / aside.name}",
                                         "exited 1"]  # fmt: skip
    assert aside.read_text() == "Built half\n"
    assert not (project / FOLDER / "example.txt").exists()
    assert (project / FOLDER / "benchmark.json").exists()  # kept, as benchmark.py keeps it

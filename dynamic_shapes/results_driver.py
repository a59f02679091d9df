"""Runs declared results runs (results.RUNS) one after the other, as the GPU machine should
spend its time: each command with `folder` set to the results folder, a Triton run's server
started first and stopped after (its "Serving ..." line awaited, the tritonserver pid handed to
the load where it asks for it), an MPS run between starting and stopping NVIDIA's MPS daemon.
A run that fails is reported and the next one goes on; the server and the daemon are stopped
whatever happens, Ctrl-C included.

Every command runs in a session of its own, so that stopping it reaches every process it
started (a load's client processes, serve.py's tritonserver) and nothing else. Nothing here
needs a GPU: the commands do.
"""

import itertools
import json
import os
import queue
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from dynamic_shapes.results import ENVIRONMENT_FILE, SECONDS

# What serve.py prints once its model is ready; it names tritonserver's process id.
SERVING = re.compile(r"^Serving \S+ .*\(tritonserver pid (?P<pid>\d+)\)")
SERVER_PID = re.compile(r"--server-pid PID\b")
LOADGEN = "loadgen.py"
# serve.py itself waits up to 300 s for the model (serve.READY_TIMEOUT_S), then says why not.
READY_TIMEOUT_S = 360.0
# serve.py stops tritonserver within 30 s of SIGTERM, or kills it.
STOP_TIMEOUT_S = 45.0
MPS_START = ("nvidia-cuda-mps-control", "-d")
MPS_STOP = ("nvidia-cuda-mps-control",)  # reads "quit" on its standard input
RENDER = ("python3", "render_results.py")
INTERRUPTED = "interrupted (Ctrl-C or SIGTERM)"


@dataclass(frozen=True)
class LoadDefaults:
    """loadgen.py's defaults and what a level costs beyond its measured seconds (its clients'
    start and warm-up, and the gathering of their figures), for the estimates."""

    levels: int
    seconds: float
    overhead_s: float


@dataclass(frozen=True)
class Settings:
    project: Path  # where the commands run
    folder: Path  # the results folder, as `folder` in the commands
    seconds: float | None = None  # loadgen.py's --seconds in every Triton run, where given
    mps_start: tuple = MPS_START
    mps_stop: tuple = MPS_STOP
    render: tuple = RENDER
    ready_timeout_s: float = READY_TIMEOUT_S
    stop_timeout_s: float = STOP_TIMEOUT_S  # then what is left of a server or a run is killed
    say: object = field(default=print)  # where the progress goes, a line at a time


@dataclass
class Outcome:
    file: str
    ok: bool
    seconds: float
    why: str = ""  # the failure, or what a run that passed needs said (its refusals)


def select(runs, only=None, skip=None) -> list:
    """The runs named in `only` (all where None) less those in `skip`, in the order declared;
    ValueError naming a file no run writes. The environment is recorded before any run and is
    none of them."""
    declared = [run.file for run in runs]
    for name in [*(only or []), *(skip or [])]:
        if name not in declared:
            raise ValueError(f"no declared run writes {name}; the runs: {', '.join(declared)}")
    return [
        run
        for run in runs
        if run.file != ENVIRONMENT_FILE
        and (only is None or run.file in only)
        and run.file not in (skip or [])
    ]


def load_command(command: str, seconds=None, server_pid=None) -> str:
    """The run's command with loadgen.py's --seconds set to `seconds` (where given) and PID
    replaced by the server's process id."""
    if seconds is not None and LOADGEN in command:
        value = f"--seconds {seconds:g}"
        if SECONDS.search(command):
            command = SECONDS.sub(value, command)
        else:
            command = command.replace(LOADGEN, f"{LOADGEN} {value}", 1)
    if server_pid is not None:
        command = SERVER_PID.sub(f"--server-pid {server_pid}", command)
    return command


def estimate_s(run, defaults: LoadDefaults, seconds=None) -> float:
    """About how many seconds of the GPU machine a run takes: its declared estimate, and for a
    Triton run each load level on top."""
    if run.server is None or LOADGEN not in run.command:
        return float(run.estimate_s)
    words = shlex.split(load_command(run.command, seconds))
    levels, level_s = defaults.levels, defaults.seconds
    for flag, value in itertools.pairwise(words):
        if flag == "--concurrency":
            levels = len(value.split(","))
        elif flag == "--seconds":
            level_s = float(value)
    return run.estimate_s + levels * (level_s + defaults.overhead_s)


def minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def plan_lines(runs, defaults: LoadDefaults, seconds=None) -> list:
    """The runs in order with each one's estimate, and the total."""
    estimates = [estimate_s(run, defaults, seconds) for run in runs]
    width = max((len(run.file) for run in runs), default=0)
    lines = [
        f"{index:>3}  {run.file:<{width}}  {minutes(estimate):>9}"
        + ("  (MPS)" if run.mps else "")
        + (f"  server: {run.server}" if run.server else "")
        for index, (run, estimate) in enumerate(zip(runs, estimates, strict=True), 1)
    ]
    return [*lines, f"{len(runs)} runs, about {minutes(sum(estimates))} of the GPU machine"]


def environment(settings: Settings) -> dict:
    """The commands' environment: `folder` set, and this interpreter first on PATH, so that
    python3 in the commands is the Python the runs are driven from."""
    env = dict(os.environ)
    env["folder"] = str(settings.folder)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def start(command, settings: Settings, **options) -> subprocess.Popen:
    return subprocess.Popen(
        command, cwd=settings.project, env=environment(settings), start_new_session=True,
        **options,
    )  # fmt: skip


def stop_group(process: subprocess.Popen, first: int, timeout_s: float, group=True) -> None:
    """Where the process still runs: sends `first` to its session (or to it alone), and after
    `timeout_s` kills what is left of the session (a server its parent did not stop in time)."""
    if process.poll() is not None:
        return
    with suppress(ProcessLookupError):  # it ended meanwhile
        if group:
            os.killpg(process.pid, first)
        else:
            process.send_signal(first)
    with suppress(subprocess.TimeoutExpired):
        process.wait(timeout_s)
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def run_command(command: str, settings: Settings) -> int:
    """Runs `command` in bash, its output passed through; its exit status. Ctrl-C (or SIGTERM)
    stops it as Ctrl-C in its terminal would, then ends the drive."""
    process = start(["bash", "-c", command], settings)
    try:
        return process.wait()
    finally:
        stop_group(process, signal.SIGINT, settings.stop_timeout_s)


class Server:
    """A Triton run's server: serve.py, started and awaited until it serves, always stopped."""

    def __init__(self, command: str, settings: Settings):
        self.settings = settings
        self.lines = queue.Queue()
        self.process = start(
            ["bash", "-c", f"exec {command}"], settings, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, errors="replace", bufsize=1,
        )  # fmt: skip
        self.last = ""
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_until_serving(self) -> int:
        """The tritonserver pid serve.py prints once it serves; RuntimeError with serve.py's
        last line if it ends first, or does not serve in time."""
        deadline = time.monotonic() + self.settings.ready_timeout_s
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError(
                    f"the server did not say it serves within {self.settings.ready_timeout_s:g}"
                    f" s; its last line: {self.last or '(none)'}"
                ) from None
            if line is None:
                self.process.wait()
                raise RuntimeError(
                    f"the server exited ({self.process.returncode}) before serving: "
                    f"{self.last or '(no output)'}"
                )
            if line.strip():
                self.last = line.strip()
            self.settings.say(f"    server: {line}")
            match = SERVING.match(line)
            if match:
                return int(match.group("pid"))

    def stop(self):
        # serve.py stops tritonserver, and it its Python backend's processes, on SIGTERM as on
        # Ctrl-C, each in turn; what is left after that is killed.
        stop_group(self.process, signal.SIGTERM, self.settings.stop_timeout_s, group=False)


@contextmanager
def serving(command: str, settings: Settings):
    server = Server(command, settings)
    try:
        yield server.wait_until_serving()
    finally:
        server.stop()


@contextmanager
def mps(settings: Settings):
    """NVIDIA's MPS daemon, started for the block and stopped after it, whatever happens."""
    try:
        started = subprocess.run(
            settings.mps_start, cwd=settings.project, capture_output=True, text=True
        )
    except OSError as error:  # no such command: MPS comes with NVIDIA's driver
        raise RuntimeError(f"cannot start MPS ({' '.join(settings.mps_start)}): {error}") from None
    if started.returncode != 0:
        raise RuntimeError(
            f"{' '.join(settings.mps_start)} exited {started.returncode}: "
            f"{(started.stderr or started.stdout).strip() or '(no output)'}"
        )
    try:
        yield
    finally:
        subprocess.run(settings.mps_stop, cwd=settings.project, input="quit\n", text=True)


def written_whole(path: Path) -> bool:
    """Whether a run's JSON is there and complete (loadgen.py marks a cut run)."""
    try:
        return json.loads(path.read_text()).get("complete", True) is not False
    except (OSError, ValueError):
        return False


def run_one(run, settings: Settings) -> Outcome:
    """One run, its server and MPS around it; what became of it."""
    began = time.monotonic()
    path = Path(settings.project) / settings.folder / run.file
    before = path.stat().st_mtime_ns if path.exists() else None
    try:
        with ExitStack() as stack:
            if run.mps:
                stack.enter_context(mps(settings))
            pid = stack.enter_context(serving(run.server, settings)) if run.server else None
            status = run_command(load_command(run.command, settings.seconds, pid), settings)
    except (RuntimeError, OSError) as error:  # the run fails; the drive goes on
        return Outcome(run.file, False, time.monotonic() - began, str(error))
    elapsed = time.monotonic() - began
    fresh = path.exists() and path.stat().st_mtime_ns != before
    if not fresh:
        return Outcome(run.file, False, elapsed, f"exited {status} and wrote no {run.file}")
    if status == 0:
        return Outcome(run.file, True, elapsed)
    if run.refusals and status == 1 and written_whole(path):
        return Outcome(run.file, True, elapsed, "exited 1: the server's refusals, by design")
    if path.suffix == ".txt":
        # A command's output cut short is no result: set aside, where the pages do not read it
        # (a JSON run marks itself incomplete, and keeps what it measured).
        aside = path.with_name(f".{path.name}.failed")
        path.replace(aside)
        where = Path(settings.folder) / aside.name
        return Outcome(run.file, False, elapsed, f"exited {status}; its output is in {where}")
    return Outcome(run.file, False, elapsed, f"exited {status}")


def render(settings: Settings) -> bool:
    status = subprocess.run(settings.render, cwd=settings.project, env=environment(settings))
    return status.returncode == 0


def drive(runs, settings: Settings, defaults: LoadDefaults) -> list:
    """Runs `runs` in order, saying what each is about to do and how each went; renders the
    pages before any run that asks for it and at the end. Returns each run's Outcome; after
    Ctrl-C (or SIGTERM), the runs so far and the one it stopped, without rendering."""
    say = settings.say
    outcomes = []
    left = sum(estimate_s(run, defaults, settings.seconds) for run in runs)
    for index, run in enumerate(runs, 1):
        estimate = estimate_s(run, defaults, settings.seconds)
        say(f"[{index}/{len(runs)}] {run.file}: about {minutes(estimate)} "
            f"({minutes(left)} left in all)")  # fmt: skip
        left -= estimate
        began = time.monotonic()
        try:
            if run.render_first and not render(settings):
                say("    rendering the pages failed; the run goes on")
            outcome = run_one(run, settings)
        except KeyboardInterrupt:
            outcomes.append(Outcome(run.file, False, time.monotonic() - began, INTERRUPTED))
            return outcomes
        outcomes.append(outcome)
        verdict = "done" if outcome.ok else "FAILED"
        say(f"[{index}/{len(runs)}] {run.file}: {verdict} in {minutes(outcome.seconds)}"
            + (f": {outcome.why}" if outcome.why else ""))  # fmt: skip
    if not render(settings):
        outcomes.append(Outcome("docs/results*.md", False, 0.0, "render_results.py failed"))
    return outcomes


def summary(outcomes) -> list:
    """What the drive did: the runs that passed, and each that failed, with why."""
    passed = [o.file for o in outcomes if o.ok]
    failed = [o for o in outcomes if not o.ok]
    lines = [
        f"{len(passed)} of {len(outcomes)} runs done" + (f": {', '.join(passed)}" if passed else "")
    ]
    lines += [f"FAILED {o.file}: {o.why}" for o in failed]
    return lines

"""The load of an earlier commit of this project, run by that commit's own stress.py, so that
a change can be measured against the code before it in one session, on one machine: the commit
is copied out of this checkout's git history into a temporary folder, its stress.py runs there
with the arguments given, and its figures are recorded with this machine's environment, under
that commit."""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from dynamic_shapes.environment import PROJECT, environment, git
from dynamic_shapes.files import write_atomically

# The counts of a run that does little more than build the engine.
SMALLEST_RUN = ("--threads", "1", "--requests", "1", "--warmup", "0", "--dispatchers", "1",
                "--prepared", "1", "--activations", "1")  # fmt: skip


def short_commit(commit: str, project=PROJECT) -> str:
    """The commit's short name; ValueError where this checkout's history does not hold it."""
    try:
        return git(project, "rev-parse", "--short", "--verify", "--quiet", f"{commit}^{{commit}}")
    except (OSError, subprocess.SubprocessError):
        raise ValueError(
            f"no commit {commit!r} in the git history of {project} (a shallow clone holds none "
            "before its own: git fetch --unshallow)"
        ) from None


def copy_out(commit: str, folder, project=PROJECT) -> None:
    """The commit's tracked files, as they were, into `folder`."""
    with subprocess.Popen(
        ["git", "archive", "--format=tar", commit], cwd=project, stdout=subprocess.PIPE
    ) as archive:
        untar = subprocess.run(["tar", "-x", "-C", str(folder)], stdin=archive.stdout)
        archive.stdout.close()
    if archive.returncode or untar.returncode:
        raise RuntimeError(f"could not copy commit {commit} out of git (git archive | tar -x)")


def run_earlier(commit: str, arguments: list, json_path=None, project=PROJECT) -> int:
    """Runs `commit`'s stress.py with `arguments` and returns its exit code; with `json_path`,
    writes its figures there with the environment, under `commit`. Nothing is written where
    that run wrote no figures."""
    name = short_commit(commit, project)
    with tempfile.TemporaryDirectory(prefix=f"stress-{name}-") as folder:
        copy_out(name, folder, project)
        print(f"stress.py of commit {name}, from a copy in {folder}", flush=True)
        # The smallest run first builds the engine, so that the measured run loads it, as a
        # run in a checkout whose engine is built does: a process that has built an engine
        # keeps the builder's host and GPU memory. Exit 1 is a check that failed, not the run.
        built = subprocess.run([sys.executable, "stress.py", *SMALLEST_RUN], cwd=folder)
        if built.returncode not in (0, 1):
            raise RuntimeError(
                f"stress.py of commit {name} could not build its engine (exit "
                f"{built.returncode}; its output above says why, and that commit's requirements "
                f"are in git show {name}:requirements.txt)"
            )
        figures = Path(folder) / "figures.json"
        wanted = ["--json", str(figures)] if json_path else []
        code = subprocess.run([sys.executable, "stress.py", *arguments, *wanted], cwd=folder)
        if json_path and not figures.is_file():
            print(f"stress.py of commit {name} wrote no figures", file=sys.stderr)
            return code.returncode or 1
        if json_path:
            record = json.loads(figures.read_text())
            # Marked, so that the results pages compare it and do not judge it as this code's.
            record["at"] = name
            record["environment"] = {**environment(), "commit": name}
            write_atomically(json_path, json.dumps(record, indent=2).encode())
    return code.returncode

"""stress.py's load across processes, without a GPU: how the processes' shares add up, and how
a process that fails stops the others and is reported."""

import json
import re
import tempfile

import pytest

import stress
from dynamic_shapes.environment import git
from dynamic_shapes.stress.earlier import SMALLEST_RUN, run_earlier
from dynamic_shapes.stress.processes import (
    ANOTHER_PROCESS_FAILED,
    combine_shares,
    serve_load_in_processes,
)
from dynamic_shapes.stress.verdicts import verdicts
from tests.support import run_script

# A lifecycle run without a leak, for the verdicts on a load.
LIFECYCLE = {
    "dispatchers": 1, "dispatchers_device_mib_delta": 0.0, "prepared": 1,
    "prepared_batches": [1], "prepared_device_mib_delta": 0.0, "activations": 1,
    "activations_device_mib_delta": 0.0,
}  # fmt: skip


def share(served, started, finished, host_before, host_after):
    return {
        "requests_served": served,
        "images_served": served * 10,
        "errors": [],
        "started": started,
        "finished": finished,
        "cpu_seconds": served * 2e-3,
        "seconds_in_infer": served * 1e-3,
        "seconds_checking": served * 2e-4,
        "device_mib_before": 900.0,
        "device_mib_after": 900.5,
        "host_rss_mib_before": host_before,
        "host_rss_mib_after": host_after,
        "host_rss_mib_checkpoints": [(served, host_after)],
        "mps": False,
        "graphs": {
            "hits": served - 10,
            "misses": 10,
            "captures": 5,
            "evictions": 0,
            "busy": 0,
            "shapes": 5,
            "bytes": 2**20,
        },
    }


def test_shares_add_up_over_the_time_from_the_first_start_to_the_last_finish():
    args = stress.parse_args(["--processes", "2", "--threads", "3", "--requests", "100"])
    shares = [share(300, 10.0, 14.0, 500.0, 501.0), share(300, 10.5, 15.0, 480.0, 490.0)]
    load = combine_shares(shares, args)
    assert (load["requests_served"], load["images_served"], load["errors"]) == (600, 6000, 0)
    assert load["seconds"] == 5.0
    assert load["cpu_cores_busy"] == pytest.approx(0.24)  # 1.2 s of CPU time in 5 s
    assert load["infer_us_per_request"] == pytest.approx(1000.0)
    assert load["check_us_per_request"] == pytest.approx(200.0)
    # The host memory checked is that of the process whose memory grew most.
    assert (load["host_rss_mib_before"], load["host_rss_mib_after"]) == (480.0, 490.0)
    assert [p["host_rss_mib_after"] for p in load["per_process"]] == [501.0, 490.0]
    assert [p["graphs"]["hits"] for p in load["per_process"]] == [290, 290]

    results = verdicts(load, LIFECYCLE)
    assert [passed for passed, _ in results] == [True, True, True, True, True, True]
    assert "load: 2 processes x 3 threads x 100 requests" in results[0][1]
    # Where MPS served every process, the report says so.
    for one in shares:
        one["mps"] = True
    text = verdicts(combine_shares(shares, args), LIFECYCLE)[0][1]
    assert "load: 2 processes under MPS x 3 threads" in text
    assert "120 requests/s, 1200 images/s" in results[0][1]
    assert "of the process whose memory grew most 480.0 MiB" in results[2][1]


def test_a_load_process_that_fails_is_reported_and_the_others_stop(tmp_path):
    # Each process loads the engine again; here there is none to load.
    args = stress.parse_args(["--processes", "2", "--engine", str(tmp_path / "missing.engine")])
    with pytest.raises(RuntimeError) as raised:
        serve_load_in_processes(args, progress=None)
    assert re.match(r"load process [01]: \w+", str(raised.value)), raised.value
    assert ANOTHER_PROCESS_FAILED not in str(raised.value)


def test_quick_keeps_the_counts_given_explicitly():
    args = stress.parse_args(["--quick", "--requests", "5"])
    assert (args.requests, args.warmup, args.dispatchers) == (5, 100, 20)
    assert (args.prepared, args.activations) == (30, 100)
    args = stress.parse_args(["--quick", "--warmup", "0", "--activations", "7"])
    assert (args.requests, args.warmup, args.activations) == (250, 0, 7)
    args = stress.parse_args([])
    assert (args.requests, args.warmup, args.dispatchers) == (10_000, 1000, 200)
    assert (args.prepared, args.activations) == (300, 1000)
    help_text = " ".join(run_script("stress.py", "--help").stdout.split())
    assert "the counts given explicitly (--requests, --warmup, --dispatchers, --prepared, " in (
        help_text
    )


def test_the_graphs_of_shapes_sent_again_are_off_unless_asked_and_said_where_on():
    assert stress.parse_args([]).graphs_after is None  # as the Dispatcher's default
    args = stress.parse_args(["--threads", "3", "--requests", "100", "--graphs-after", "1"])
    shares = [share(300, 10.0, 14.0, 500.0, 501.0)]
    load = combine_shares(shares, args)
    assert load["graphs_after"] == 1
    line = verdicts(load, LIFECYCLE)[0][1]
    assert "4 context(s) per profile, graphs of a shape after 1 request(s)): 300 served" in line
    args.graphs_after = None
    line = verdicts(combine_shares(shares, args), LIFECYCLE)[0][1]
    assert "4 context(s) per profile): 300 served" in line
    result = run_script("stress.py", "--path", "runner", "--graphs-after", "1")
    assert result.returncode == 2
    assert "--graphs-after needs --path lean" in result.stderr


def git_repo(folder, stress_text):
    """A git repository whose one commit holds `stress_text` as stress.py; its short name."""
    folder.mkdir()
    (folder / "stress.py").write_text(stress_text)

    git(folder, "init", "-q")
    git(folder, "add", "stress.py")
    git(folder, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "earlier")
    return git(folder, "rev-parse", "--short", "HEAD")


# An earlier stress.py that writes its arguments as its figures, and fails where told to.
EARLIER_STRESS = """
import json, os, sys
args = sys.argv[1:]
with open(os.environ["STRESS_LOG"], "a") as log:
    log.write(" ".join(args) + "\\n")
if "--fail" in args or ("--threads" in args and os.environ.get("BUILD_FAILS")):
    sys.exit(3)
if "--json" in args and "--quiet" not in args:
    with open(args[args.index("--json") + 1], "w") as f:
        json.dump({"load": {"args": args[: args.index("--json")]}, "lifecycle": {}}, f)
sys.exit(1 if "--verdict-fails" in args else 0)
"""


def test_an_earlier_commit_runs_its_own_stress_and_its_figures_name_that_commit(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("STRESS_LOG", str(tmp_path / "log"))
    commit = git_repo(tmp_path / "repo", EARLIER_STRESS)
    out = tmp_path / "earlier.json"
    code = run_earlier(commit, ["--requests", "7"], out, project=tmp_path / "repo")
    assert code == 0
    # The smallest run builds the engine first; the measured run loads it.
    first, measured = (tmp_path / "log").read_text().splitlines()
    assert first == " ".join(SMALLEST_RUN)
    assert measured.startswith("--requests 7 --json ")
    record = json.loads(out.read_text())
    assert record["load"]["args"] == ["--requests", "7"]
    assert record["environment"]["commit"] == commit
    assert record["at"] == commit  # an earlier commit's run, which the pages only compare
    assert record["environment"]["python"]  # this machine's environment around it
    # A run that wrote its figures and failed its verdicts keeps them, with its exit code.
    assert run_earlier(commit, ["--verdict-fails"], out, project=tmp_path / "repo") == 1
    assert json.loads(out.read_text())["load"]["args"] == ["--verdict-fails"]


def test_an_earlier_commit_that_writes_nothing_leaves_the_file_as_it_was(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("STRESS_LOG", str(tmp_path / "log"))
    commit = git_repo(tmp_path / "repo", EARLIER_STRESS)
    out = tmp_path / "earlier.json"
    out.write_text("before")
    assert run_earlier(commit, ["--fail"], out, project=tmp_path / "repo") == 3
    assert out.read_text() == "before"
    assert f"stress.py of commit {commit} wrote no figures" in capsys.readouterr().err
    # Exit 0 without figures is no run either.
    assert run_earlier(commit, ["--quiet"], out, project=tmp_path / "repo") == 1
    assert out.read_text() == "before"
    with pytest.raises(ValueError, match="no commit 'nosuchcommit' in the git history"):
        run_earlier("nosuchcommit", [], out, project=tmp_path / "repo")
    # Where its engine could not be built, the measured run is not started.
    monkeypatch.setenv("BUILD_FAILS", "1")
    (tmp_path / "log").unlink()
    with pytest.raises(RuntimeError, match=f"git show {commit}:requirements.txt"):
        run_earlier(commit, ["--requests", "7"], out, project=tmp_path / "repo")
    assert len((tmp_path / "log").read_text().splitlines()) == 1
    assert out.read_text() == "before"


def test_an_earlier_commits_copy_is_removed_after_its_run(tmp_path, monkeypatch):
    monkeypatch.setenv("STRESS_LOG", str(tmp_path / "log"))
    commit = git_repo(tmp_path / "repo", EARLIER_STRESS)
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    assert run_earlier(commit, [], tmp_path / "out.json", project=tmp_path / "repo") == 0
    assert list((tmp_path / "tmp").iterdir()) == []


def test_at_passes_on_every_count_and_refuses_an_unknown_commit():
    args = stress.parse_args(["--quick", "--threads", "3", "--memory", "page-locked"])
    passed = stress.earlier_arguments(args)
    pairs = dict(zip(passed[::2], passed[1::2], strict=True))
    assert pairs == {
        "--processes": "1", "--threads": "3", "--requests": "250", "--warmup": "100",
        "--max-batch": "300", "--path": "lean", "--memory": "page-locked",
        "--contexts-per-profile": "4", "--dispatchers": "20", "--prepared": "30",
        "--activations": "100",
    }  # fmt: skip
    args = stress.parse_args(["--graphs-after", "2"])
    assert stress.earlier_arguments(args)[-2:] == ["--graphs-after", "2"]
    result = run_script("stress.py", "--at", "nosuchcommit")
    assert result.returncode == 2
    assert "argument --at: no commit 'nosuchcommit'" in result.stderr
    result = run_script("stress.py", "--at", "HEAD", "--engine", "other.engine")
    assert result.returncode == 2
    assert "--engine with --at: the earlier commit builds and serves its own" in result.stderr

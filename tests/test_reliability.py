"""Faults and load on a real GPU: bad engine files, engine reuse, and the stress run."""

import hashlib
import json
import os
import re

import pytest

from dynamic_shapes.engines import (
    build_engine,
    build_record,
    record_path,
    reuse_verdict,
    save_engine,
)
from scenario import MODEL_PATH, PROFILES
from tests.support import run_script

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def engine():
    return build_engine(MODEL_PATH, PROFILES)


@pytest.fixture(scope="module")
def good_engine_bytes(engine, tmp_path_factory):
    path = tmp_path_factory.mktemp("good") / "dynamic_identity.engine"
    save_engine(engine, path, build_record(MODEL_PATH, PROFILES))
    return path.read_bytes()


@pytest.mark.parametrize("damage", ["empty", "garbage", "truncated", "flipped bytes"])
def test_a_damaged_engine_file_raises_engine_load_error(good_engine_bytes, tmp_path, damage):
    data = {
        "empty": b"",
        "garbage": os.urandom(4096),
        "truncated": good_engine_bytes[: len(good_engine_bytes) // 2],
        "flipped bytes": good_engine_bytes[:64]
        + bytes(b ^ 0xFF for b in good_engine_bytes[64:256])
        + good_engine_bytes[256:],
    }[damage]
    path = tmp_path / "damaged.engine"
    path.write_bytes(data)
    # In a process of its own: should TensorRT crash on some damage, this test fails and says
    # so, instead of taking the whole test run down with it.
    result = run_script(
        "-c",
        "import sys; from dynamic_shapes.engines import EngineLoadError, load_engine\n"
        "try:\n    load_engine(sys.argv[1])\nexcept EngineLoadError as error:\n"
        "    print(error); sys.exit(3)",
        str(path),
    )
    assert result.returncode == 3, f"exit {result.returncode}: {result.stdout}{result.stderr}"
    expected = "is empty" if damage == "empty" else "could not deserialize"
    assert expected in result.stdout


def run_example(engine_path, *args):
    result = run_script("example.py", "--engine", str(engine_path), *args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "offline again    (profile 2, kept by its context)" in result.stdout
    return result.stdout.splitlines()


def test_example_reuses_its_engine_and_rebuilds_for_each_reason(tmp_path):
    path = tmp_path / "dynamic_identity.engine"
    first = run_example(path)
    assert any(
        re.match(r"Built dynamic_identity.engine in \d+\.\d s because there is no", line)
        for line in first
    )
    assert any(line.startswith("Reusing dynamic_identity.engine: same model and profiles, TensorRT")
               for line in run_example(path))  # fmt: skip

    def rebuild_line(*args):
        return next(
            line for line in run_example(path, *args) if line.startswith(("Built", "Reusing"))
        )

    assert re.match(
        r"Built dynamic_identity.engine in \d+\.\d s because a rebuild was asked for",
        rebuild_line("--rebuild"),
    )
    record = json.loads(record_path(path).read_text())
    record_path(path).write_text(json.dumps({**record, "tensorrt": "7.2.3"}))
    assert "because it was built by TensorRT 7.2.3, this is" in rebuild_line()
    record_path(path).write_text(
        json.dumps({**json.loads(record_path(path).read_text()), "gpu": "Other GPU"})
    )
    assert "because it was built for Other GPU, this is" in rebuild_line()
    path.write_bytes(path.read_bytes()[:1000])
    assert rebuild_line().endswith(
        "because the engine file is not the one saved with it; it has 3 profiles"
    )
    # Without its record the file is no longer known as the project's: refused, not rebuilt.
    record_path(path).unlink()
    refused = run_script("example.py", "--engine", str(path))
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert refused.stderr.splitlines()[-1] == (
        f"example.py: error: argument --engine: {path} exists and is not an engine this project "
        f"saved (there is no {record_path(path).name} beside it); refusing to overwrite it: name "
        "another engine path, or delete the file if it is an old engine"
    )


def test_an_engine_that_passes_its_record_but_does_not_load_is_rebuilt(tmp_path):
    path = tmp_path / "dynamic_identity.engine"
    run_example(path)
    # As if another TensorRT wrote a file that its record vouches for.
    path.write_bytes(os.urandom(4096))
    record = json.loads(record_path(path).read_text())
    record["engine_sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    record_path(path).write_text(json.dumps(record))
    line = next(line for line in run_example(path) if line.startswith(("Built", "Reusing")))
    assert "could not deserialize" in line


def fail_the_third_fsync(monkeypatch):
    """Makes the third fsync raise KeyboardInterrupt: in save_engine, the engine file's, after
    its record is in place (each atomic write syncs its file, then its folder)."""
    real_fsync, calls = os.fsync, []

    def fsync_then_fail_the_third(fd):
        calls.append(fd)
        if len(calls) == 3:
            raise KeyboardInterrupt
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync_then_fail_the_third)


def test_an_interrupted_engine_write_makes_the_engine_rebuilt_not_trusted(
    engine, tmp_path, monkeypatch
):
    path = tmp_path / "dynamic_identity.engine"
    wanted = build_record(MODEL_PATH, PROFILES)
    save_engine(engine, path, wanted)
    old_engine = path.read_bytes()
    other = build_engine(MODEL_PATH, dict(list(PROFILES.items())[:2]))  # a different engine

    fail_the_third_fsync(monkeypatch)  # the record is in place, the engine is not
    with pytest.raises(KeyboardInterrupt):
        save_engine(other, path, wanted)
    monkeypatch.undo()
    assert path.read_bytes() == old_engine
    assert reuse_verdict(path, wanted) == "the engine file is not the one saved with it"
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name, record_path(path).name]


def test_a_first_save_interrupted_before_the_engine_is_rebuilt_on_the_next_run(
    engine, tmp_path, monkeypatch
):
    path = tmp_path / "dynamic_identity.engine"
    fail_the_third_fsync(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        save_engine(engine, path, build_record(MODEL_PATH, PROFILES))
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == [record_path(path).name]
    # The record left behind claims the path for the project: the next run builds there.
    line = next(line for line in run_example(path) if line.startswith(("Built", "Reusing")))
    assert line.startswith("Built dynamic_identity.engine in ")
    assert line.endswith("because there is no dynamic_identity.engine yet; it has 3 profiles")


@pytest.mark.parametrize(
    ("memory", "processes", "threads"),
    [("pageable", 1, 8), ("page-locked", 1, 8), ("pageable", 2, 3)],
)
def test_stress_quick_serves_every_request_exactly_and_leaks_nothing(
    tmp_path, memory, processes, threads
):
    out = tmp_path / "stress.json"
    engine = tmp_path / "dynamic_identity.engine"
    result = run_script(
        "stress.py", "--quick", "--memory", memory, "--json", str(out), "--engine", str(engine),
        "--processes", str(processes), "--threads", str(threads),
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    figures = json.loads(out.read_text())
    assert figures["load"]["requests_served"] == processes * threads * 250
    assert [share["requests_served"] for share in figures["load"]["per_process"]] == [
        threads * 250
    ] * processes
    assert figures["load"]["errors"] == 0
    assert (figures["load"]["memory"], figures["load"]["contexts_per_profile"]) == (memory, 4)
    assert figures["load"]["infer_us_per_request"] > 0 < figures["load"]["check_us_per_request"]
    assert 0 < figures["load"]["cpu_cores_busy"] <= figures["load"]["cpu_cores"]
    assert result.stdout.count("PASS") == 6

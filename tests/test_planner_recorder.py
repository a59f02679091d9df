"""Recording a service's workload: lines a reader reads back, bounded in size, appended by
several recorders, threads and processes without a torn or mixed line, and a line cut short by
another writer skipped and counted (CPU only)."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from dynamic_shapes.planner.recorder import WorkloadRecorder
from dynamic_shapes.planner.workloads import read_workload, shape_key
from scenario import HERE

SHAPES = {"input_ids": (4, 128), "attention_mask": (4, 128)}


def test_each_request_is_one_json_line_a_reader_reads_back_in_order(tmp_path):
    path = tmp_path / "workload.jsonl"
    with WorkloadRecorder(path, 1 << 20) as recorder:
        recorder.record(SHAPES)
        # Shapes as arrays give them: NumPy's integers too.
        recorder.record({"input_ids": np.zeros((1, 37)).shape, "attention_mask": (np.int64(1), 37)})
    assert path.read_text().splitlines()[0] == '{"input_ids": [4, 128], "attention_mask": [4, 128]}'
    assert json.loads(path.read_text().splitlines()[1]) == {
        "input_ids": [1, 37],
        "attention_mask": [1, 37],
    }
    assert read_workload(path).requests == (
        shape_key(SHAPES),
        shape_key({"input_ids": (1, 37), "attention_mask": (1, 37)}),
    )
    assert (recorder.recorded, recorder.dropped) == (2, 0)


def test_the_file_stays_within_max_bytes_and_what_is_dropped_is_counted(tmp_path):
    path = tmp_path / "workload.jsonl"
    line = len(b'{"input_ids": [4, 128], "attention_mask": [4, 128]}\n')
    recorder = WorkloadRecorder(path, 10 * line + line // 2)
    for _ in range(25):
        recorder.record(SHAPES)
    assert path.stat().st_size == 10 * line
    assert (recorder.recorded, recorder.dropped, recorder.full) == (10, 15, True)
    # Full stays full: a smaller line that would fit is dropped too, and the file is untouched.
    recorder.record({"X": (1,)})
    assert (recorder.recorded, recorder.dropped) == (10, 16)
    assert path.stat().st_size == 10 * line
    recorder.close()
    recorder.record(SHAPES)
    assert recorder.dropped == 17


def test_recorders_append_to_what_is_there_within_one_bound(tmp_path):
    path = tmp_path / "workload.jsonl"
    with WorkloadRecorder(path, 1000) as first:
        for _ in range(3):
            first.record({"X": (1, 3, 28, 28)})
    with WorkloadRecorder(path, 1000) as second:
        for _ in range(100):
            second.record({"X": (128, 3, 28, 28)})
    workload = read_workload(path)
    assert workload.requests[:3] == (shape_key({"X": (1, 3, 28, 28)}),) * 3
    assert set(workload.requests[3:]) == {shape_key({"X": (128, 3, 28, 28)})}
    assert path.stat().st_size <= 1000 < path.stat().st_size + len('{"X": [128, 3, 28, 28]}\n')
    assert second.recorded + 3 == len(workload.requests)


def test_a_line_another_writer_cut_short_is_skipped_and_counted(tmp_path):
    path = tmp_path / "workload.jsonl"
    with WorkloadRecorder(path, 1 << 20) as recorder:
        recorder.record({"X": (1, 3)})
    # A writer that died in the middle of a line, after the recorder's line...
    with open(path, "a") as file:
        file.write('{"X": [32, ')
    workload = read_workload(path)
    assert (workload.requests, workload.torn_lines) == ((shape_key({"X": (1, 3)}),), 1)
    # ...and a recorder that opens the file after it: its lines start on a line of their own.
    with WorkloadRecorder(path, 1 << 20) as recorder:
        recorder.record({"X": (4, 3)})
        recorder.record({"X": (8, 3)})
    workload = read_workload(path)
    assert workload.requests == tuple(shape_key({"X": (b, 3)}) for b in (1, 4, 8))
    assert workload.torn_lines == 1


def test_threads_never_mix_their_lines(tmp_path):
    path = tmp_path / "workload.jsonl"
    recorder = WorkloadRecorder(path, 1 << 20)
    threads = [
        threading.Thread(
            target=lambda b=batch: [recorder.record({"X": (b, 3, 28, 28)}) for _ in range(400)]
        )
        for batch in range(1, 9)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    recorder.close()
    workload = read_workload(path)
    assert workload.torn_lines == 0
    assert workload.histogram == {shape_key({"X": (b, 3, 28, 28)}): 400 for b in range(1, 9)}
    assert recorder.recorded == 3200


RECORD_FOREVER = (
    "import sys\n"
    "from dynamic_shapes.planner.recorder import WorkloadRecorder\n"
    "recorder = WorkloadRecorder(sys.argv[1], 1 << 30)\n"
    "batch = int(sys.argv[2])\n"
    "shapes = {'input_ids': (batch, 128), 'attention_mask': (batch, 128)}\n"
    "recorder.record(shapes)  # a line of its own in the file before the other fills it\n"
    "print('ready', flush=True)\n"
    "while True:\n"
    "    recorder.record(shapes)\n"
)


def test_processes_killed_while_recording_leave_only_whole_lines(tmp_path):
    path = tmp_path / "workload.jsonl"
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", RECORD_FOREVER, str(path), str(batch)],
            cwd=HERE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for batch in (1, 2)
    ]
    try:
        for process in processes:
            assert process.stdout.readline() == "ready\n"
        deadline = time.monotonic() + 30
        while path.stat().st_size < 200_000 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        for process in processes:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=30)
            process.stdout.close()
    workload = read_workload(path)
    assert workload.torn_lines == 0
    assert set(workload.histogram) == {
        shape_key({"input_ids": (b, 128), "attention_mask": (b, 128)}) for b in (1, 2)
    }
    assert sum(workload.histogram.values()) * 50 < path.stat().st_size


@pytest.mark.parametrize("max_bytes", [0, -1, 1.5])
def test_a_bound_that_is_no_size_is_refused(tmp_path, max_bytes):
    with pytest.raises(ValueError, match="give the file's largest size in bytes"):
        WorkloadRecorder(tmp_path / "workload.jsonl", max_bytes)


def test_a_file_that_cannot_be_opened_is_refused_by_name(tmp_path):
    with pytest.raises(ValueError, match=r"cannot record the workload to .*absent"):
        WorkloadRecorder(tmp_path / "absent" / "workload.jsonl", 1000)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full, a full disk")
def test_a_failed_write_stops_recording_and_never_fails_the_request():
    # Every write to /dev/full fails as a write to a full disk does.
    with WorkloadRecorder("/dev/full", 1 << 20) as recorder:
        recorder.record({"X": (1,)})
        recorder.record({"X": (2,)})
    assert isinstance(recorder.error, OSError)
    assert (recorder.recorded, recorder.dropped, recorder.full) == (0, 2, True)

"""loadgen.py without a server: its arguments, how it reads Triton's metrics, and its report."""

import pytest

import loadgen
from tests.support import run_script

METRICS = """\
# HELP nv_inference_request_success Number of successful inference requests
# TYPE nv_inference_request_success counter
nv_inference_request_success{model="dynamic_identity",version="1"} 1200
nv_inference_request_success{model="other",version="1"} 7
# HELP nv_inference_exec_count Number of model executions performed
# TYPE nv_inference_exec_count counter
nv_inference_exec_count{model="dynamic_identity",version="1"} 300
nv_inference_exec_count{model="dynamic_identity",version="2"} 100
nv_inference_exec_count{model="other",version="1"} 7
nv_inference_request_duration_us{model="dynamic_identity",version="1"} 600000
nv_inference_queue_duration_us{model="dynamic_identity",version="1"} 120000
nv_inference_compute_input_duration_us{model="dynamic_identity",version="1"} 12000
nv_inference_compute_infer_duration_us{model="dynamic_identity",version="1"} 360000
nv_inference_compute_output_duration_us{model="dynamic_identity",version="1"} 24000
nv_inference_request_duration_us{model="other",version="1"} 99
# HELP nv_gpu_memory_used_bytes GPU used memory, in bytes
# TYPE nv_gpu_memory_used_bytes gauge
nv_gpu_memory_used_bytes{gpu_uuid="GPU-1"} 2147483648
nv_gpu_memory_used_bytes{gpu_uuid="GPU-2"} 1073741824
"""


def test_the_models_counters_are_read_from_prometheus_text_summed_over_versions():
    counters = loadgen.model_counters(METRICS, "dynamic_identity")
    assert counters["nv_inference_request_success"] == 1200.0
    assert counters["nv_inference_exec_count"] == 400.0
    assert counters["nv_inference_request_duration_us"] == 600000.0
    assert counters["nv_gpu_memory_used_bytes"] == 3.0 * 2**30
    missing = loadgen.model_counters(METRICS, "missing")
    assert missing["nv_inference_request_success"] == missing["nv_inference_exec_count"] == 0.0
    assert missing["nv_gpu_memory_used_bytes"] == 3.0 * 2**30  # the GPUs', whatever the model


def test_the_servers_time_per_request_is_split_as_perf_analyzer_splits_it():
    before = dict.fromkeys(loadgen.model_counters("", "dynamic_identity"), 0.0)
    after = loadgen.model_counters(METRICS, "dynamic_identity")
    assert loadgen.server_times(before, after) == {
        "server_us": 500.0,
        "queue_us": 100.0,
        "compute_input_us": 10.0,
        "compute_infer_us": 300.0,
        "compute_output_us": 20.0,
    }
    # No request served over a level: no time, rather than a division by zero.
    assert set(loadgen.server_times(after, after).values()) == {0.0}


def test_the_report_is_a_table_in_perf_analyzers_terms():
    server = {
        "server_us": 900.0, "queue_us": 100.0, "compute_input_us": 10.0,
        "compute_infer_us": 300.0, "compute_output_us": 20.0,
        "gpu_memory_mib_before": 500.0, "gpu_memory_mib_after": 500.0,
    }  # fmt: skip
    level = loadgen.summarize(64, [1000, 2000, 3000, 4000], 4, 2.0, 0, 3.0, server)
    assert level["requests_per_s"] == 2.0 and level["images_per_s"] == 2.0
    assert level["p50_us"] == 2.5
    header, row = loadgen.report([level]).splitlines()
    assert header.split() == [
        "concurrency", "requests/s", "images/s", "p50", "us", "p90", "us", "p99", "us",
        "server", "us", "queue", "us", "compute", "us", "requests/exec", "errors",
        "GPU", "MiB", "+/-", "server", "RSS", "MiB", "+/-",
    ]  # fmt: skip
    # No server RSS where no --server-pid was given.
    assert row.split()[0] == "64" and row.split()[-7:] == [
        "900", "100", "330", "3.00", "0", "+0.0", "-"
    ]  # fmt: skip


def test_the_resident_memory_of_a_process_tree_counts_its_children():
    import os
    import subprocess
    import sys

    code = "import time; print('up', flush=True); time.sleep(30)"
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "up\n"  # running, its interpreter loaded
        alone = loadgen.resident_memory(child.pid)
        assert alone > 1 << 20  # a Python interpreter takes a few MiB
        assert loadgen.resident_memory(os.getpid()) >= alone  # this process, and the child
    finally:
        child.kill()
        child.wait()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--concurrency", "1,0"], "must be 1 or more: 0"),
        (["--batch-sizes", "x"], "argument --batch-sizes"),
        (["--seconds", "0"], "argument --seconds: must be more than 0"),
        (["--protocol", "udp"], "argument --protocol: invalid choice"),
    ],
)
def test_bad_arguments_are_refused_before_any_work(options, message):
    result = run_script("loadgen.py", *options)
    assert result.returncode == 2 and message in result.stderr


def test_without_a_server_it_says_so_in_one_line(tmp_path):
    result = run_script("loadgen.py", "--metrics-port", "1", "--seconds", "1")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("loadgen.py: no Triton metrics at http://127.0.0.1:1/metrics")
    assert result.stderr.rstrip().endswith("start the server first (serve.py)")

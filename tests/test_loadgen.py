"""loadgen.py without a server: its arguments, how it reads Triton's metrics, and its report."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

import loadgen
from scenario import HERE
from tests.support import free_ports, run_script, tritonserver, wait_for, write_cpu_repository

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


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--seconds", "nan"], "argument --seconds: must be a finite number of seconds: nan"),
        (["--seconds", "inf"], "argument --seconds: must be a finite number of seconds: inf"),
        (["--seconds", "1e400"], "argument --seconds: must be a finite number of seconds"),
        (["--server-pid", "999999999"], "argument --server-pid: no process 999999999 is running"),
        (["--metrics-port", "70000"], "argument --metrics-port: must be 65535 or less: 70000"),
        (["--http-port", "8001"], "argument --http-port: 8001 is the port of --grpc-port too"),
        (["--model", "../x"], "argument --model: '../x' cannot name a model"),
        (["--host", "a b"], "argument --host: not a host name or IP address: 'a b'"),
    ],
)
def test_values_out_of_range_are_refused_naming_the_option(options, message):
    result = run_script("loadgen.py", *options)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines()[-1] == f"loadgen.py: error: {message}" or (
        result.stderr.splitlines()[-1].startswith(f"loadgen.py: error: {message}")
    ), result.stderr


def test_a_figure_that_could_not_be_read_is_not_measured_rather_than_zero():
    without_gpu = METRICS.split("# HELP nv_gpu_memory_used_bytes")[0]
    assert loadgen.model_counters(without_gpu, "dynamic_identity")[loadgen.GPU_MEMORY] is None
    server = {
        "server_us": 0.0, "queue_us": 0.0, "compute_input_us": 0.0, "compute_infer_us": 0.0,
        "compute_output_us": 0.0, "gpu_memory_mib_before": None, "gpu_memory_mib_after": None,
        "server_rss_mib_before": 80.0, "server_rss_mib_after": None,
    }  # fmt: skip
    # Every request failed: no throughput, no latencies, the errors beside them.
    level = loadgen.summarize(4, [], 0, 2.0, 1392, 0.0, server)
    assert level["requests"] == 0 and level["requests_per_s"] == 0.0 and level["errors"] == 1392
    assert level["p50_us"] is level["p99_us"] is None
    row = loadgen.report([level]).splitlines()[1].split()
    assert row[:6] == ["4", "0", "0", "-", "-", "-"]
    assert row[-5:] == ["1392", "not", "measured", "not", "measured"]
    args = loadgen.parse_args(["--server-pid", str(os.getpid())])
    assert loadgen.not_measured(args, [level]) == [
        "GPU memory in use (the server's metrics have no nv_gpu_memory_used_bytes)",
        f"server RSS (no process {os.getpid()} to read, --server-pid)",
    ]


def test_the_memory_of_a_process_that_is_gone_is_not_measured():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert loadgen.resident_memory(child.pid) is None


# A real server, on the CPU: Triton's Python backend serving an identity model, and a model
# that refuses every request.


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    pytest.importorskip("pytriton", reason="needs nvidia-pytriton: requirements-triton.txt")
    workspace = tmp_path_factory.mktemp("triton")
    repository = write_cpu_repository(workspace / "repository")
    http, grpc, metrics = free_ports(3)
    ports = {"http": http, "grpc": grpc, "metrics": metrics}
    with tritonserver(workspace, repository, ports) as process:
        for model in ("identity", "refuser"):
            wait_for(f"http://127.0.0.1:{http}/v2/models/{model}/ready")
        yield {"pid": process.pid, **ports}


def load(server, *options, **kwargs):
    ports = [f"--{kind}-port={server[kind]}" for kind in ("http", "grpc", "metrics")]
    return run_script("loadgen.py", *ports, "--seconds", "1", *options, **kwargs)


def test_figures_the_server_cannot_give_fail_the_run_after_it_is_written(server, tmp_path):
    out = tmp_path / "load.json"
    result = load(server, "--model", "identity", "--concurrency", "2", "--json", str(out),
                  "--server-pid", str(server["pid"]))  # fmt: skip
    # Without a GPU, Triton reports no GPU memory: the run says so and fails.
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr == (
        "loadgen.py: not measured: GPU memory in use (the server's metrics have no "
        "nv_gpu_memory_used_bytes)\n"
    )
    (level,) = json.loads(out.read_text())["levels"]
    assert level["requests"] > 0 and level["errors"] == 0
    assert level["gpu_memory_mib_before"] is None and level["server_rss_mib_after"] > 0
    assert "not measured" in result.stdout.splitlines()[1]


def test_a_model_that_refuses_every_request_serves_nothing_per_second(server, tmp_path):
    out = tmp_path / "load.json"
    result = load(server, "--model", "refuser", "--concurrency", "2", "--json", str(out))
    assert result.returncode == 1
    (level,) = json.loads(out.read_text())["levels"]
    assert level["requests"] == level["requests_per_s"] == level["images_per_s"] == 0
    assert level["p50_us"] is None and level["errors"] > 0
    assert "error: batch 1: " in result.stderr and "refused" in result.stderr


def test_a_model_the_server_does_not_have_is_one_line(server):
    result = load(server, "--model", "nosuch")
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == (
        f"loadgen.py: the server at 127.0.0.1:{server['grpc']} has no model nosuch ready "
        "(--model)\n"
    )


def test_ctrl_c_ends_in_one_line_and_keeps_the_levels_measured(server, tmp_path):
    out = tmp_path / "load.json"
    ports = [f"--{kind}-port={server[kind]}" for kind in ("http", "grpc", "metrics")]
    command = [sys.executable, "loadgen.py", *ports, "--seconds", "1", "--model", "identity",
               "--concurrency", "1,3,5", "--json", str(out)]  # fmt: skip
    # A session of its own, whose processes all get the SIGINT, as a terminal's Ctrl-C does.
    process = subprocess.Popen(
        command, cwd=HERE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        header, first = process.stdout.readline(), process.stdout.readline()
        assert header.split()[0] == "concurrency" and first.split()[0] == "1"
        time.sleep(2)  # the clients of the next level are running
        os.killpg(process.pid, signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert (process.returncode, stderr) == (130, "loadgen.py: interrupted\n")
    figures = json.loads(out.read_text())
    assert not figures["complete"] and [r["concurrency"] for r in figures["levels"]] == [1]
    # No client left running (multiprocessing's own helper ends once it sees the script gone).
    deadline = time.monotonic() + 10
    while subprocess.run(["pgrep", "-s", str(process.pid)], capture_output=True).stdout:
        assert time.monotonic() < deadline, "processes of the run are left running"
        time.sleep(0.2)

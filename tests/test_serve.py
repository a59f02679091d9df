"""serve.py without a GPU: the repository it writes for Triton's Python backend, read back
through Triton's ModelConfig; its arguments; and the real tritonserver started on an engine it
cannot serve, which must end in one line that says why, with nothing left running."""

import contextlib
import http.server
import re
import socket
import subprocess
import sys
import threading

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

import serve
from build_model import write_model
from scenario import HERE, MODEL_PATH, PROFILES
from tests.support import free_ports, run_script, tritonserver, write_cpu_repository
from tests.test_triton_export import ENGINE_BYTES, save_fake_engine

PROGRESS = re.compile(r"^\[ *\d+\.\d s\] ")


@pytest.fixture
def engine(tmp_path):
    return save_fake_engine(tmp_path, MODEL_PATH, PROFILES)


def write(engine, repository, *options):
    argv = ["serve.py", "--engine", str(engine), "--repository", str(repository), "--no-serve"]
    result = run_script(*argv, *options)
    assert result.returncode == 0, result.stderr
    model = repository / "dynamic_identity"
    return model, text_format.Parse((model / "config.pbtxt").read_text(), mc.ModelConfig())


def test_the_repository_holds_the_model_its_engine_and_what_it_imports(engine, tmp_path):
    model, config = write(engine, tmp_path / "repository")
    assert (config.name, config.backend, config.max_batch_size) == (
        "dynamic_identity",
        "python",
        1024,
    )
    (x,), (y,) = config.input, config.output
    assert (x.name, x.data_type, list(x.dims)) == ("X", mc.TYPE_FP32, [3, 28, 28])
    assert (y.name, y.data_type, list(y.dims)) == ("Y", mc.TYPE_FP32, [3, 28, 28])
    # The dispatcher splits any batch, so the batcher may gather any: it prefers what the
    # profiles are tuned for (opt 4) and top out at (32, 128).
    assert list(config.dynamic_batching.preferred_batch_size) == [4, 32, 128]
    assert config.dynamic_batching.max_queue_delay_microseconds == 100
    assert config.parameters["engine"].string_value == "dynamic_identity.engine"
    assert config.parameters["contexts_per_profile"].string_value == "1"
    (group,) = config.instance_group
    assert (group.kind, group.count) == (mc.ModelInstanceGroup.KIND_GPU, 1)
    version = model / "1"
    source = HERE / "triton_model" / "model.py"
    assert (version / "model.py").read_bytes() == source.read_bytes()
    assert (version / "dynamic_identity.engine").read_bytes() == ENGINE_BYTES
    assert (version / "dynamic_identity.engine.json").is_file()
    # The served model imports the library alone: the scenario stays with the scripts.
    assert not (version / "scenario.py").exists()
    assert (version / "dynamic_shapes" / "dispatch.py").is_file()
    assert not list(version.rglob("__pycache__"))


def test_the_repository_carries_the_modules_the_model_imports_and_they_import_alone(
    engine, tmp_path
):
    model, _ = write(engine, tmp_path / "repository")
    version = model / "1"
    copied = sorted(
        ".".join(path.relative_to(version).with_suffix("").parts).removesuffix(".__init__")
        for path in (version / "dynamic_shapes").rglob("*.py")
    )
    assert "dynamic_shapes.serving.lean_executor" in copied
    # What only the scripts use stays behind.
    assert "dynamic_shapes.measure" not in copied and "dynamic_shapes.cli" not in copied
    # Imported from the repository's own folder, as Triton's Python backend imports it.
    code = "import importlib\n" + "".join(f"importlib.import_module({m!r})\n" for m in copied)
    code += "import dynamic_shapes; print(dynamic_shapes.__file__)"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=version, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(version / "dynamic_shapes" / "__init__.py")


def test_the_batcher_is_settable_and_can_be_turned_off(engine, tmp_path):
    options = ["--max-queue-delay-us", "0", "--preferred-batch-sizes", "8,64"]
    options += ["--contexts-per-profile", "2", "--instances", "3"]
    _, config = write(engine, tmp_path / "a", *options)
    assert list(config.dynamic_batching.preferred_batch_size) == [8, 64]
    assert config.dynamic_batching.max_queue_delay_microseconds == 0
    assert config.parameters["contexts_per_profile"].string_value == "2"
    assert config.instance_group[0].count == 3
    _, config = write(engine, tmp_path / "b", "--no-dynamic-batching", "--max-batch-size", "300")
    assert not config.HasField("dynamic_batching") and config.max_batch_size == 300


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--no-serve"], "--no-serve writes the repository only: name it with --repository"),
        (
            ["--no-dynamic-batching", "--preferred-batch-sizes", "4"],
            "--preferred-batch-sizes configures the dynamic batcher; drop one of them",
        ),
        (["--preferred-batch-sizes", "4,x"], "not a comma-separated list of integers: '4,x'"),
        (["--preferred-batch-sizes", "0"], "batch sizes must be 1 or more: '0'"),
        (
            ["--preferred-batch-sizes", ""],
            "argument --preferred-batch-sizes: name at least one batch size; "
            "--no-dynamic-batching turns the batcher off",
        ),
        (["--http-port", "0"], "argument --http-port: must be 1 or more: 0"),
        (["--instances", "0"], "argument --instances: must be 1 or more: 0"),
        (["--metrics-port", "70000"], "argument --metrics-port: must be 65535 or less: 70000"),
        (["--grpc-port", "8000"], "argument --grpc-port: 8000 is the port of --http-port too"),
        (
            ["--http-port", "9000", "--metrics-port", "9000"],
            "argument --metrics-port: 9000 is the port of --http-port too",
        ),
        (
            ["--preferred-batch-sizes", "2000"],
            "argument --preferred-batch-sizes: preferred batch sizes [2000] must be from 1 to "
            "the max batch size 1024 (--max-batch-size)",
        ),
        (
            ["--max-batch-size", "10", "--preferred-batch-sizes", "4,32"],
            "argument --preferred-batch-sizes: preferred batch sizes [4, 32] must be from 1 to "
            "the max batch size 10 (--max-batch-size)",
        ),
        (
            ["--preferred-batch-sizes", "4,2147483648"],
            "argument --preferred-batch-sizes: batch sizes must be 2147483647 or less",
        ),
        (["--max-batch-size", "2147483648"], "argument --max-batch-size: must be 2147483647 or"),
        (["--instances", "2147483648"], "argument --instances: must be 2147483647 or less"),
        (
            ["--max-queue-delay-us", "99999999999999999999"],
            "argument --max-queue-delay-us: must be 18446744073709551615 or less",
        ),
        (["--name", "../evil"], "argument --name: '../evil' cannot name a model: use letters,"),
        (["--name", "a b"], "argument --name: 'a b' cannot name a model"),
        (["--name", "a/b"], "argument --name: 'a/b' cannot name a model"),
        (["--name", "x\n"], "argument --name: 'x\\n' cannot name a model"),
        (["--name", ".."], "argument --name: '..' cannot name a model"),
        (
            ["--engine", "my model.engine"],
            "argument --name: 'my model' cannot name a model: use letters, digits, '_', '.' and "
            "'-', up to 100, the first a letter, digit or '_' (the engine name gives it)",
        ),
        (["--host", "a b"], "argument --host: not a host name or IP address: 'a b'"),
    ],
)
def test_bad_arguments_are_refused_before_any_work(options, message):
    result = run_script("serve.py", *options)
    assert result.returncode == 2 and message in result.stderr
    assert result.stderr.splitlines()[-1].startswith("serve.py: error: argument ") or (
        "--no-serve" in options or "--no-dynamic-batching" in options
    )


def test_a_small_max_batch_size_keeps_the_preferred_sizes_that_fit(engine, tmp_path):
    _, config = write(engine, tmp_path / "a", "--max-batch-size", "10")
    assert config.max_batch_size == 10
    assert list(config.dynamic_batching.preferred_batch_size) == [4]
    # None fit: the batcher gathers what comes, up to the max.
    _, config = write(engine, tmp_path / "b", "--max-batch-size", "3")
    assert config.HasField("dynamic_batching")
    assert not config.dynamic_batching.preferred_batch_size
    assert config.dynamic_batching.max_queue_delay_microseconds == 100


def test_an_engine_built_from_another_model_is_refused_in_one_line(engine, tmp_path):
    other = tmp_path / "other.onnx"
    write_model("convnet", other)
    result = run_script(
        "serve.py", "--engine", str(engine), "--model", str(other), "--no-serve",
        "--repository", str(tmp_path / "r"),
    )  # fmt: skip
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == (
        f"serve.py: dynamic_identity.engine was not built from {other}: pass the model it was "
        "built from with --model\n"
    )
    assert not (tmp_path / "r").exists()


def test_a_repository_replaces_only_one_this_project_wrote(engine, tmp_path):
    repository = tmp_path / "repository"
    argv = ["--engine", str(engine), "--repository", str(repository), "--no-serve"]
    assert run_script("serve.py", *argv, "--name", "first").returncode == 0
    assert (repository / "first" / "config.pbtxt").is_file()
    model, _ = write(engine, repository)  # the earlier model goes: the repository is replaced
    assert sorted(p.name for p in repository.iterdir()) == [
        ".dynamic_shapes_repository",
        "dynamic_identity",
    ]
    assert model.is_dir()
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("mine")
    for script, option in [("serve.py", "--repository"), ("export_triton.py", "--output")]:
        argv = [script, "--engine", str(engine), option, str(theirs)]
        result = run_script(*argv, *(["--no-serve"] if script == "serve.py" else []))
        assert result.returncode == 2
        assert result.stderr.splitlines()[-1] == (
            f"{script}: error: argument {option}: {theirs} holds files this project did not "
            "write; name a new or empty folder"
        )
    assert [p.name for p in theirs.iterdir()] == ["notes.txt"]
    assert (theirs / "notes.txt").read_text() == "mine"
    # Either script replaces what the other wrote.
    argv = ["export_triton.py", "--engine", str(engine), "--output", str(repository)]
    assert run_script(*argv).returncode == 0
    assert sorted(p.name for p in repository.iterdir()) == [
        ".dynamic_shapes_repository",
        "dynamic_identity",
        "dynamic_identity_all_profiles",
    ]
    assert (repository / "dynamic_identity" / "1" / "model.plan").is_file()


def test_a_model_the_server_cannot_load_ends_in_one_line_and_leaves_nothing_running(
    engine, tmp_path
):
    pytest.importorskip("pytriton", reason="needs nvidia-pytriton: requirements-triton.txt")
    http, grpc, metrics = free_ports(3)
    ports = ["--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics)]
    result = run_script(
        "serve.py", "--engine", str(engine), *ports, env={"TMPDIR": str(tmp_path)}, timeout=240
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    # Without a GPU, Triton refuses the GPU instance group; with one, the engine (these bytes
    # are no plan) cannot be deserialized. Either way the reason is the server's own.
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(
        "serve.py: tritonserver exited (1): failed to load 'dynamic_identity' version 1: "
    ), result.stderr
    assert not list(tmp_path.glob("serve-*"))  # the temporary repository is gone
    running = subprocess.run(["pgrep", "-f", f"http-port={http}"], capture_output=True)
    assert running.returncode == 1, running.stdout  # no server left behind


def failure_lines(result) -> list:
    """stderr without the progress lines: the failure, which must be one line."""
    return [line for line in result.stderr.splitlines() if not PROGRESS.match(line)]


class AnotherServer(http.server.BaseHTTPRequestHandler):
    """A server that answers every request with 200, as a Triton already serving the model
    would answer serve.py's readiness check."""

    def do_GET(self):
        body = b'{"name": "another server"}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_):
        pass


@pytest.fixture
def another_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), AnotherServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_a_port_another_server_holds_is_refused_before_starting(engine, another_server):
    grpc, metrics = free_ports(2)
    ports = ["--http-port", str(another_server), "--grpc-port", str(grpc)]
    result = run_script("serve.py", "--engine", str(engine), *ports, "--metrics-port", str(metrics))
    assert result.returncode == 1 and "Serving" not in result.stdout
    assert result.stdout == ""  # not even the repository is written
    assert failure_lines(result) == [
        f"serve.py: cannot listen on 127.0.0.1 port {another_server} (--http-port): Address "
        "already in use; stop what listens there or choose another port"
    ]


def test_another_server_that_answers_is_never_taken_for_its_own(another_server, tmp_path):
    # Its own server: a process that never answers, and another that answers everything.
    own = subprocess.Popen(["sleep", "30"])
    try:
        log = tmp_path / "tritonserver.log"
        log.write_text('I1206 04:16:17.573640 5667 server.cc:1] "still loading"\n')
        urls = {
            "http": f"http://127.0.0.1:{another_server}",
            "metrics": f"http://127.0.0.1:{another_server}",
        }
        with pytest.raises(RuntimeError, match="the model was not ready after 2 s: still loading"):
            serve.wait_until_ready(own, urls, "serve.py-1-abcd", "dynamic_identity", 2, log)
    finally:
        own.kill()
        own.wait()


@pytest.fixture
def triton_output(tmp_path):
    """The output of the real tritonserver started with `ports` (after any options), once it
    has exited or been stopped."""
    pytest.importorskip("pytriton", reason="needs nvidia-pytriton: requirements-triton.txt")
    repository = write_cpu_repository(tmp_path / "repository", names=["identity"])

    def run(ports, *options):
        with (
            tritonserver(tmp_path, repository, ports, *options) as server,
            contextlib.suppress(subprocess.TimeoutExpired),
        ):
            server.wait(60)
        return tmp_path / "tritonserver.log"

    return run


def test_triton_refusing_its_options_is_reported_by_its_reason_not_its_usage(triton_output):
    http, metrics = free_ports(2)
    log = triton_output({"http": http, "grpc": http, "metrics": metrics})
    assert log.read_text().startswith("Usage: tritonserver")
    assert serve.last_error(log) == (
        "The server cannot listen to HTTP requests and GRPC requests at the same address and "
        f"port 127.0.0.1:{http}"
    )


def test_a_port_taken_after_the_check_is_reported_by_tritons_reason(triton_output):
    http, grpc, metrics = free_ports(3)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", metrics))
        taken.listen()
        log = triton_output({"http": http, "grpc": grpc, "metrics": metrics})
    assert serve.last_error(log) == (
        f"failed to start Metrics service: Unavailable - Socket '127.0.0.1:{metrics}' already "
        "in use"
    )


def test_the_tensorrt_backend_gets_the_repository_export_triton_writes(engine, tmp_path):
    served, exported = tmp_path / "served", tmp_path / "exported"
    argv = ["serve.py", "--engine", str(engine), "--repository", str(served), "--no-serve"]
    result = run_script(*argv, "--backend", "tensorrt", "--instances", "2", "--no-cuda-graphs")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"Wrote {served / 'dynamic_identity'}",
        f"Wrote {served / 'dynamic_identity_all_profiles'}",
    ]
    argv = ["export_triton.py", "--engine", str(engine), "--output", str(exported)]
    assert run_script(*argv, "--instances", "2", "--no-cuda-graphs").returncode == 0
    for model in ("dynamic_identity", "dynamic_identity_all_profiles"):
        ours, theirs = (folder / model / "config.pbtxt" for folder in (served, exported))
        config = text_format.Parse(ours.read_text(), mc.ModelConfig())
        assert config == text_format.Parse(theirs.read_text(), mc.ModelConfig())
        assert config.backend == "tensorrt" and config.instance_group[0].count == 2
        assert (served / model / "1" / "model.plan").read_bytes() == ENGINE_BYTES
        assert ours.read_text().startswith("# Written by serve.py for dynamic_identity.engine")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            ["--backend", "tensorrt", "--preferred-batch-sizes", "4"],
            "--preferred-batch-sizes configures the Python backend's model; drop it or "
            "--backend tensorrt",
        ),
        (["--backend", "tensorrt", "--max-batch-size", "64"], "--max-batch-size configures"),
        (["--backend", "tensorrt", "--contexts-per-profile", "2"], "--contexts-per-profile conf"),
        (["--backend-directory", "/opt"], "--backend-directory goes with --backend tensorrt"),
        (["--no-cuda-graphs"], "--no-cuda-graphs goes with --backend tensorrt"),
        (["--backend", "onnxruntime"], "argument --backend: invalid choice: 'onnxruntime'"),
    ],
)
def test_options_of_the_other_backend_are_refused(options, message):
    result = run_script("serve.py", *options)
    assert result.returncode == 2 and message in result.stderr.splitlines()[-1]


def test_a_backend_folder_without_the_tensorrt_backend_is_named_in_one_line(engine, tmp_path):
    pytest.importorskip("pytriton", reason="needs nvidia-pytriton: requirements-triton.txt")
    folder = tmp_path / "backends"
    (folder / "python").mkdir(parents=True)
    options = ["--backend", "tensorrt", "--backend-directory", str(folder)]
    result = run_script("serve.py", "--engine", str(engine), *options)
    assert result.returncode == 1 and result.stdout == ""  # nothing written, nothing started
    assert failure_lines(result) == [
        f"serve.py: no TensorRT backend in {folder} (looked for "
        f"{folder / 'tensorrt' / 'libtriton_tensorrt.so'}): it comes with NVIDIA's Triton "
        "container, not with nvidia-pytriton; name a folder that holds one with "
        "--backend-directory"
    ]


def test_a_server_that_does_not_stop_in_time_is_killed_and_its_last_log_line_told(
    tmp_path, monkeypatch, capsys
):
    log = tmp_path / "tritonserver.log"
    log.write_text(
        'I1206 08:00:00.000000 1 server.cc:307] "Waiting for in-flight requests to complete."\n'
        'I1206 08:00:01.000000 1 server.cc:338] "Timeout 29: Found 1 live models and 0 '
        'in-flight non-inference requests"\n\n'
    )
    # A server that ignores Ctrl-C, as one that waits for a model that does not unload.
    ignoring = (
        "import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); "
        "print(flush=True); time.sleep(60)"
    )
    server = subprocess.Popen([sys.executable, "-c", ignoring], stdout=subprocess.PIPE)
    server.stdout.readline()  # SIGINT is ignored from here on
    monkeypatch.setattr(serve, "STOP_TIMEOUT_S", 0.5)
    serve.stop(server, log)
    server.stdout.close()
    assert server.returncode == -9
    assert capsys.readouterr().err == (
        "serve.py: tritonserver did not stop within 0.5 s and was killed; its log's last line: "
        "Timeout 29: Found 1 live models and 0 in-flight non-inference requests\n"
    )

"""serve.py without a GPU: the repository it writes for Triton's Python backend, read back
through Triton's ModelConfig; its arguments; and the real tritonserver started on an engine it
cannot serve, which must end in one line that says why, with nothing left running."""

import socket
import subprocess
import sys

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from scenario import HERE, MODEL_PATH, PROFILES
from tests.support import run_script
from tests.test_triton_export import ENGINE_BYTES, save_fake_engine


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
        (["--http-port", "0"], "argument --http-port: must be 1 or more: 0"),
        (["--instances", "0"], "argument --instances: must be 1 or more: 0"),
    ],
)
def test_bad_arguments_are_refused_before_any_work(options, message):
    result = run_script("serve.py", *options)
    assert result.returncode == 2 and message in result.stderr


def free_ports(count) -> list:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


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

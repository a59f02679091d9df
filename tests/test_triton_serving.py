"""The engine served by the real Triton server (serve.py, nvidia-pytriton's tritonserver) and
spoken to with Triton's own client, over HTTP and gRPC, through either backend: Triton's Python
backend with the dispatcher, and Triton's TensorRT backend with the repository export_triton.py
writes (skipped, saying why, where the server has no TensorRT backend). Exact answers,
splitting or refusing what no profile takes, refusals that leave the server serving, a client
that disconnects, load from processes, a clean stop on SIGTERM; for the TensorRT backend, the
config it serves, its log, and the CUDA graphs it captured and replayed. The server binds to
localhost, and is always stopped."""

import functools
import json
import re
import signal
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest

from dynamic_shapes.engines import load_or_build_engine
from scenario import HERE, MODEL_PATH, PROFILES, random_images
from tests.support import free_ports, run_script, tritonserver, wait_for

pytestmark = pytest.mark.gpu
MODEL = "dynamic_identity"
ALL_PROFILES = "dynamic_identity_all_profiles"
BACKENDS = ["python", "tensorrt"]
# Every batch each backend's models serve whole, or split (the dispatcher: 50, 127, 300, 1024).
SERVED = {
    "python": {MODEL: (1, 4, 32, 50, 127, 128, 300, 1024)},
    "tensorrt": {MODEL: (1, 2, 4, 13, 32), ALL_PROFILES: (1, 2, 4, 13, 32, 128)},
}
# What Triton 2.51 with the TensorRT backend r23.12 answered, quoted from a run
# (tests/data/triton_tensorrt_served.json): a batch above max_batch_size, refused by Triton's
# core, and a batch no listed profile takes, refused by the backend.
ABOVE_MAX = "inference request batch-size must be <= 32 for 'dynamic_identity'"
NO_PROFILE = (
    "request specifies invalid shape for input 'X' for dynamic_identity_all_profiles_0_0. "
    "Error details: model expected the shape of dimension 0 to be between 1 and 1 but "
    "received {batch}"
)


def tensorrt_backend_or_skip():
    """The backend folder that holds Triton's TensorRT backend, as serve.py finds it; skips the
    test, saying where it looked, where there is none."""
    import serve

    binary, _, _ = serve.tritonserver()
    try:
        return serve.tensorrt_backend_folder(binary, None)
    except RuntimeError as error:
        pytest.skip(str(error))


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    pytest.importorskip("pytriton", reason="needs nvidia-pytriton: requirements-triton.txt")
    engine = tmp_path_factory.mktemp("engine") / "dynamic_identity.engine"
    load_or_build_engine(MODEL_PATH, engine, PROFILES)
    return engine


@pytest.fixture(scope="module", params=BACKENDS)
def server(request, engine):
    if request.param == "tensorrt":
        tensorrt_backend_or_skip()
    http, grpc, metrics = free_ports(3)
    command = [
        sys.executable, "serve.py", "--engine", str(engine), "--http-port", str(http),
        "--grpc-port", str(grpc), "--metrics-port", str(metrics), "--backend", request.param,
    ]  # fmt: skip
    process = subprocess.Popen(
        command, cwd=HERE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        line = process.stdout.readline()  # "Wrote ..."
        while line and not line.startswith("Serving"):
            line = process.stdout.readline()
        assert line.startswith(f"Serving {MODEL} on 127.0.0.1"), process.stderr.read()
        pid = int(re.search(r"tritonserver pid (\d+)", line).group(1))
        yield {
            "process": process, "http": http, "grpc": grpc, "metrics": metrics, "pid": pid,
            "backend": request.param,
        }  # fmt: skip
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(60)


def gone(server) -> str:
    """What serve.py said before it exited; a tritonserver that outlives it and holds its pipes
    open is waited for a few seconds only."""
    process = server["process"]
    try:
        out, err = process.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        return f"serve.py exited with {process.returncode}; its output is held by another process"
    return f"serve.py exited with {process.returncode}: {out}{err}"


def clients(server):
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    return {
        "http": (httpclient, httpclient.InferenceServerClient(f"127.0.0.1:{server['http']}")),
        "grpc": (grpcclient, grpcclient.InferenceServerClient(f"127.0.0.1:{server['grpc']}")),
    }


def infer(triton, client, images, name="X", dtype="FP32", model=MODEL):
    tensor = triton.InferInput(name, list(images.shape), dtype)
    tensor.set_data_from_numpy(images)
    return client.infer(model, [tensor]).as_numpy("Y")


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_every_batch_a_model_takes_is_served_exactly(server, protocol):
    triton, client = clients(server)[protocol]
    for model, batches in SERVED[server["backend"]].items():
        assert client.is_model_ready(model)
        for batch in batches:
            images = random_images(batch, seed=batch)
            assert np.array_equal(infer(triton, client, images, model=model), images), batch


def refused(call, status: str, words: str) -> None:
    """Fails unless `call` is refused with `status` (a pattern over the HTTP status and the gRPC
    code) and a message that holds `words`."""
    from tritonclient.utils import InferenceServerException

    with pytest.raises(InferenceServerException) as error:
        call()
    assert re.search(status, str(error.value.status())), error.value
    assert words.lower() in error.value.message().lower(), error.value.message()


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_bad_requests_get_invalid_arg_and_the_server_keeps_serving(server, protocol):
    triton, client = clients(server)[protocol]
    images = random_images(2)
    # Refused by Triton's core against the config, before either backend sees them.
    too_big = {"python": (1025, "1024"), "tensorrt": (33, ABOVE_MAX)}[server["backend"]]
    cases = [
        (lambda: infer(triton, client, images.astype(np.float16), dtype="FP16"), "FP16"),
        (lambda: infer(triton, client, random_images(2)[:, :, :, :27].copy()), "shape"),
        (lambda: infer(triton, client, images, name="input"), "input"),
        (lambda: infer(triton, client, random_images(1)[:0]), "byte size"),
        (lambda: infer(triton, client, random_images(too_big[0])), too_big[1]),
    ]
    for call, words in cases:
        refused(call, r"400|INVALID_ARG", words)
        assert np.array_equal(infer(triton, client, images), images)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_batch_no_listed_profile_takes_is_refused_by_the_tensorrt_backend(server, protocol):
    if server["backend"] != "tensorrt":
        pytest.skip("the Python backend's dispatcher splits such a batch (the test above)")
    triton, client = clients(server)[protocol]
    # 33 and 127 as that run answered; 129 takes the same path now that Triton batches nothing
    # for this model (it used to refuse 129 itself, as above its max_batch_size).
    for batch in (33, 127, 129):
        images = random_images(batch, seed=batch)
        call = functools.partial(infer, triton, client, images, model=ALL_PROFILES)
        refused(call, r"500|INTERNAL", NO_PROFILE.format(batch=batch))
        one = random_images(1)
        assert np.array_equal(infer(triton, client, one, model=ALL_PROFILES), one)


def test_a_client_that_disconnects_mid_request_harms_nothing(server):
    import tritonclient.grpc as grpcclient

    images = random_images({"python": 300, "tensorrt": 32}[server["backend"]], seed=7)
    for _ in range(10):
        client = grpcclient.InferenceServerClient(f"127.0.0.1:{server['grpc']}")
        tensor = grpcclient.InferInput("X", list(images.shape), "FP32")
        tensor.set_data_from_numpy(images)
        # tritonclient calls back with result= and error= keywords, at once if the answer
        # is already in.
        client.async_infer(MODEL, [tensor], callback=lambda result, error: None)
        client.close()  # gone before the answer
    triton, client = clients(server)["grpc"]
    try:
        assert np.array_equal(infer(triton, client, images), images)
    finally:
        time.sleep(0.5)  # a server that is going down has gone by now
        assert server["process"].poll() is None, gone(server)


def test_load_from_processes_is_exact_and_batched(server, tmp_path):
    out = tmp_path / "load.json"
    ports = ["--grpc-port", str(server["grpc"]), "--metrics-port", str(server["metrics"])]
    result = run_script(
        "loadgen.py", *ports, "--concurrency", "1,16", "--seconds", "2", "--json", str(out),
        "--server-pid", str(server["pid"]), timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    levels = json.loads(out.read_text())["levels"]
    assert [level["errors"] for level in levels] == [0, 0]
    assert all(level["requests"] > 0 for level in levels)
    assert all(level["server_rss_mib_after"] > 0 for level in levels)
    # 16 clients sending batch 1: the dynamic batcher gathers several per execution.
    assert levels[1]["requests_per_execution"] > 1.5


def test_sigterm_stops_the_server_and_leaves_nothing_running(server):
    process = server["process"]
    assert process.poll() is None, gone(server)
    process.send_signal(signal.SIGTERM)
    assert process.wait(60) == 0, gone(server)
    assert "Stopping tritonserver" in process.stdout.read()
    assert "was killed" not in process.stderr.read()  # it stopped as Ctrl-C stops it
    time.sleep(1)
    running = subprocess.run(
        ["pgrep", "-f", f"http-port={server['http']}"], capture_output=True, text=True
    )
    assert running.returncode == 1, running.stdout


def substance(config) -> dict:
    """A ModelConfig as a dict without its empty parts: Triton serves every message of a config
    filled in, where a part left at its defaults says no more than one left out."""
    from google.protobuf import json_format

    def prune(value):
        if isinstance(value, dict):
            value = {key: prune(item) for key, item in value.items()}
            return {key: item for key, item in value.items() if item not in ({}, [])}
        if isinstance(value, list):
            return [prune(item) for item in value]
        return value

    return prune(json_format.MessageToDict(config))


def test_the_tensorrt_backend_serves_the_configs_written_with_a_clean_log_and_graphs(
    engine, tmp_path
):
    """The repository export_triton.py writes, served with a verbose log: the configs Triton
    serves are the ones written (but for the GPUs and the group's name), nothing is logged as
    an error, and the one graph intended (batch 1, on each of dynamic_identity's two contexts)
    is captured, and replayed for a batch of 1 but not of 4."""
    from google.protobuf import json_format, text_format
    from tritonclient.grpc import model_config_pb2 as mc

    import export_triton

    backends = tensorrt_backend_or_skip()
    repository = tmp_path / "repository"
    assert export_triton.main(["--engine", str(engine), "--output", str(repository)]) == 0
    written = {
        path.parent.name: text_format.Parse(path.read_text(), mc.ModelConfig())
        for path in repository.glob("*/config.pbtxt")
    }
    http, grpc, metrics = free_ports(3)
    ports = {"http": http, "grpc": grpc, "metrics": metrics}
    with tritonserver(tmp_path, repository, ports, "--log-verbose=1", backends=backends):
        wait_for(f"http://127.0.0.1:{http}/v2/health/ready", timeout_s=300)
        for name, config in written.items():
            with urllib.request.urlopen(f"http://127.0.0.1:{http}/v2/models/{name}/config") as r:
                served = json_format.Parse(r.read(), mc.ModelConfig(), ignore_unknown_fields=True)
            for group in served.instance_group:
                group.ClearField("name")
                group.ClearField("gpus")
            assert substance(served) == substance(config), name
        triton, client = clients({"http": http, "grpc": grpc})["http"]
        for batch, model in ((1, MODEL), (4, MODEL), (1, ALL_PROFILES)):
            images = random_images(batch, seed=batch)
            assert np.array_equal(infer(triton, client, images, model=model), images)
    log = (tmp_path / "tritonserver.log").read_text(errors="replace")
    assert [line for line in log.splitlines() if line.startswith("E")] == []
    captured = re.findall(r"captured CUDA graph for (\S+), batch size (\d+)", log)
    assert captured == [(f"{MODEL}_0_0", "1")] * 2
    runs = re.findall(r"Context with profile (\d+) \[\d+\] is (launching CUDA graph|being ex)", log)
    assert runs == [("0", "launching CUDA graph"), ("1", "being ex"), ("0", "being ex")]

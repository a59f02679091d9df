"""The engine served by the real Triton server (serve.py, nvidia-pytriton's tritonserver) and
spoken to with Triton's own client, over HTTP and gRPC: exact answers, splitting, refusals
that leave the server serving, a client that disconnects, load from processes, and a clean
stop on SIGTERM. The server binds to localhost, and is always stopped."""

import json
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from dynamic_shapes.engines import load_or_build_engine
from scenario import HERE, MODEL_PATH, PROFILES, random_images
from tests.support import free_ports, run_script

pytestmark = pytest.mark.gpu
MODEL = "dynamic_identity"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    pytest.importorskip("pytriton", reason="needs nvidia-pytriton: requirements-triton.txt")
    engine = tmp_path_factory.mktemp("engine") / "dynamic_identity.engine"
    load_or_build_engine(MODEL_PATH, engine, PROFILES)
    http, grpc, metrics = free_ports(3)
    command = [
        sys.executable, "serve.py", "--engine", str(engine), "--http-port", str(http),
        "--grpc-port", str(grpc), "--metrics-port", str(metrics),
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
        yield {"process": process, "http": http, "grpc": grpc, "metrics": metrics, "pid": pid}
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(60)


def clients(server):
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    return {
        "http": (httpclient, httpclient.InferenceServerClient(f"127.0.0.1:{server['http']}")),
        "grpc": (grpcclient, grpcclient.InferenceServerClient(f"127.0.0.1:{server['grpc']}")),
    }


def infer(triton, client, images, name="X", dtype="FP32"):
    tensor = triton.InferInput(name, list(images.shape), dtype)
    tensor.set_data_from_numpy(images)
    return client.infer(MODEL, [tensor]).as_numpy("Y")


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_every_batch_is_served_exactly_splitting_what_no_profile_takes(server, protocol):
    triton, client = clients(server)[protocol]
    assert client.is_model_ready(MODEL)
    for batch in (1, 4, 32, 50, 127, 128, 300, 1024):  # 50, 127, 300, 1024: split
        images = random_images(batch, seed=batch)
        assert np.array_equal(infer(triton, client, images), images), batch


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_bad_requests_get_invalid_arg_and_the_server_keeps_serving(server, protocol):
    from tritonclient.utils import InferenceServerException

    triton, client = clients(server)[protocol]
    images = random_images(2)
    cases = [
        (lambda: infer(triton, client, images.astype(np.float16), dtype="FP16"), "FP16"),
        (lambda: infer(triton, client, random_images(2)[:, :, :, :27].copy()), "shape"),
        (lambda: infer(triton, client, images, name="input"), "input"),
        (lambda: infer(triton, client, random_images(1)[:0]), "byte size"),
        (lambda: infer(triton, client, random_images(1025)), "1024"),
    ]
    for call, word in cases:
        with pytest.raises(InferenceServerException) as error:
            call()
        assert re.search(r"400|INVALID_ARG", str(error.value.status())), error.value
        assert word.lower() in error.value.message().lower(), error.value.message()
    assert np.array_equal(infer(triton, client, images), images)


def test_a_client_that_disconnects_mid_request_harms_nothing(server):
    import tritonclient.grpc as grpcclient

    images = random_images(300, seed=7)
    for _ in range(10):
        client = grpcclient.InferenceServerClient(f"127.0.0.1:{server['grpc']}")
        tensor = grpcclient.InferInput("X", list(images.shape), "FP32")
        tensor.set_data_from_numpy(images)
        client.async_infer(MODEL, [tensor], callback=lambda *_: None)
        client.close()  # gone before the answer
    triton, client = clients(server)["grpc"]
    assert np.array_equal(infer(triton, client, images), images)


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
    process.send_signal(signal.SIGTERM)
    assert process.wait(60) == 0
    assert "Stopping tritonserver" in process.stdout.read()
    time.sleep(1)
    running = subprocess.run(
        ["pgrep", "-f", f"http-port={server['http']}"], capture_output=True, text=True
    )
    assert running.returncode == 1, running.stdout

"""The transformer on Triton's Python backend: its config (dynamic dimensions as -1, the mask
for padding, the batcher left to gather equal shapes), and, on a GPU with nvidia-pytriton,
requests of several sequence lengths served by serve.py's tritonserver against ONNX Runtime.
The server binds to localhost, and is always stopped."""

import re
import signal
import subprocess
import sys

import numpy as np
import pytest
from tritonclient.grpc import model_config_pb2 as mc

import build_model
from dynamic_shapes.onnx_inputs import read_model_tensors
from dynamic_shapes.triton import python_config
from scenario import (
    ATTENTION_MASK_NAME,
    HERE,
    HIDDEN_SIZE,
    HIDDEN_STATES_NAME,
    TOKEN_IDS_NAME,
    TRANSFORMER_PROFILE_OPTIONS,
    random_tokens,
)
from tests.support import free_ports

RANGES = [(1, 1, 1), (1, 8, 32), (32, 32, 32)]  # the transformer's batch per profile


@pytest.fixture(scope="module")
def transformer(tmp_path_factory):
    path = tmp_path_factory.mktemp("transformer") / "dynamic_transformer.onnx"
    build_model.write_model("transformer", path)
    return path


def test_the_config_gives_dynamic_dimensions_as_minus_one_and_the_mask(transformer):
    inputs, outputs = read_model_tensors(transformer)
    assert [(s.name, s.item_shape) for s in inputs] == [(TOKEN_IDS_NAME, (-1,)),
                                                        (ATTENTION_MASK_NAME, (-1,))]  # fmt: skip
    assert [(s.name, s.item_shape) for s in outputs] == [(HIDDEN_STATES_NAME, (-1, HIDDEN_SIZE))]
    config = python_config(
        "transformer", RANGES, inputs, outputs, "t.engine", pad_with_mask=ATTENTION_MASK_NAME
    )
    assert [list(tensor.dims) for tensor in config.input] == [[-1], [-1]]
    assert list(config.output[0].dims) == [-1, HIDDEN_SIZE]
    assert config.input[0].data_type == mc.DataType.Value("TYPE_INT32")
    # The batcher gathers requests of equal shapes only: no input allows ragged batches.
    assert config.HasField("dynamic_batching")
    assert not any(tensor.allow_ragged_batch for tensor in config.input)
    assert config.parameters["pad_with_mask"].string_value == ATTENTION_MASK_NAME
    plain = python_config("transformer", RANGES, inputs, outputs, "t.engine")
    assert "pad_with_mask" not in plain.parameters
    with pytest.raises(ValueError, match="'mask' is not an input of the model"):
        python_config("transformer", RANGES, inputs, outputs, "t.engine", pad_with_mask="mask")


@pytest.fixture(scope="module")
def server(transformer, tmp_path_factory):
    pytest.importorskip("pytriton", reason="needs nvidia-pytriton: requirements-triton.txt")
    from dynamic_shapes.engines import load_or_build_engine
    from dynamic_shapes.profiles import profiles_from_command_line

    profiles = profiles_from_command_line(TRANSFORMER_PROFILE_OPTIONS, model_path=transformer)
    engine = tmp_path_factory.mktemp("engine") / "dynamic_transformer.engine"
    load_or_build_engine(transformer, engine, {f"profile {i}": p for i, p in enumerate(profiles)})
    http, grpc, metrics = free_ports(3)
    command = [
        sys.executable, "serve.py", "--engine", str(engine), "--model", str(transformer),
        "--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics),
    ]  # fmt: skip
    process = subprocess.Popen(
        command, cwd=HERE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        line = process.stdout.readline()
        while line and not line.startswith("Serving"):
            line = process.stdout.readline()
        assert line.startswith("Serving dynamic_transformer on 127.0.0.1"), process.stderr.read()
        assert re.search(r"tritonserver pid (\d+)", line)
        yield {"http": http, "grpc": grpc}
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        _, errors = process.communicate(timeout=60)
    # serve.py stops the server as Ctrl-C does, and says so where it had to kill it instead.
    assert "was killed" not in errors, errors


@pytest.mark.gpu
def test_requests_of_several_sequence_lengths_are_served_as_onnx_runtime_computes(
    server, transformer
):
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    from dynamic_shapes.reference import OnnxRuntimeReference, mismatch

    reference = OnnxRuntimeReference(transformer)
    client = httpclient.InferenceServerClient(f"127.0.0.1:{server['http']}", concurrency=8)

    def tensors(feed):
        found = []
        for name, array in feed.items():
            tensor = httpclient.InferInput(name, list(array.shape), "INT32")
            tensor.set_data_from_numpy(array)
            found.append(tensor)
        return found

    def infer(feed):
        return client.infer("dynamic_transformer", tensors(feed)).as_numpy(HIDDEN_STATES_NAME)

    shapes = [(1, 16), (1, 100), (4, 16), (8, 128), (40, 100), (2, 7), (3, 512), (1, 16)]
    feeds = [random_tokens(batch, sequence, seed=i) for i, (batch, sequence) in enumerate(shapes)]
    # Sent at once, so that the batcher sees requests of different lengths together.
    pending = [client.async_infer("dynamic_transformer", tensors(feed)) for feed in feeds]
    results = [request.get_result().as_numpy(HIDDEN_STATES_NAME) for request in pending]
    for feed, states in zip(feeds, results, strict=True):
        expected = reference(feed)
        problem = mismatch({HIDDEN_STATES_NAME: states}, expected, exact=False)
        assert problem is None, f"{feed[TOKEN_IDS_NAME].shape}: {problem}"
    with pytest.raises(InferenceServerException, match="no profile holds the request"):
        infer(random_tokens(2, 600))
    assert np.isfinite(infer(random_tokens(1, 16))).all()  # serving on after a refusal
    client.close()  # no connection left open for the server to wait on when it stops

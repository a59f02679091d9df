"""Bad input at the edges, without a GPU: model files, and the engine-reuse decision."""

import hashlib
import json

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import pytest

from dynamic_shapes.engines import record_path, reuse_verdict
from dynamic_shapes.onnx_inputs import read_model_input
from dynamic_shapes.tensors import TensorSpec
from scenario import MODEL_INPUT, MODEL_PATH, check_model_fits_profiles
from tests.support import run_script


def write_identity_model(path, name="X", shape=("batch", 3, 28, 28), dtype=np.float32):
    x = gs.Variable(name, dtype=dtype, shape=shape)
    y = gs.Variable("Y", dtype=dtype, shape=shape)
    graph = gs.Graph(
        nodes=[gs.Node("Identity", inputs=[x], outputs=[y])], inputs=[x], outputs=[y], opset=17
    )
    onnx.save(gs.export_onnx(graph), path)
    return path


def test_the_scenario_model_fits_its_profiles():
    assert read_model_input(MODEL_PATH) == MODEL_INPUT
    check_model_fits_profiles(MODEL_PATH)


@pytest.mark.parametrize(
    ("kwargs", "takes"),
    [
        ({"name": "images"}, "images float32 [batch, 3, 28, 28]"),
        ({"shape": ("batch", 1, 28, 28)}, "X float32 [batch, 1, 28, 28]"),
        ({"dtype": np.float16}, "X float16 [batch, 3, 28, 28]"),
    ],
)
def test_a_model_whose_input_does_not_fit_the_profiles_is_refused(tmp_path, kwargs, takes):
    path = write_identity_model(tmp_path / "other.onnx", **kwargs)
    with pytest.raises(ValueError) as error:
        check_model_fits_profiles(path)
    assert str(error.value) == (
        f"{path} takes {takes}, but the profiles are written for X float32 [batch, 3, 28, 28]"
    )


def test_another_models_input_is_read(tmp_path):
    path = write_identity_model(tmp_path / "m.onnx", name="tokens", shape=("n", 16, 8))
    assert read_model_input(path) == TensorSpec("tokens", np.dtype(np.float32), (16, 8))


def bad_model_files(tmp_path):
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(MODEL_PATH.read_bytes()[:60])
    not_onnx = tmp_path / "notes.onnx"
    not_onnx.write_text("this is not a model\n")
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    # Bytes that protobuf parses into a message without a graph.
    graphless = tmp_path / "graphless.onnx"
    graphless.write_bytes(onnx.ModelProto(ir_version=8).SerializeToString())
    return {
        "missing": (tmp_path / "missing.onnx", "no model at {path}"),
        "folder": (tmp_path, "{path} is a folder, not an ONNX model"),
        "not ONNX": (not_onnx, "{path} is not an ONNX model, or is truncated"),
        "truncated": (truncated, "{path} is not an ONNX model, or is truncated"),
        "empty": (empty, "{path} is empty, not an ONNX model"),
        "no graph": (graphless, "{path} is not an ONNX model: it holds no graph"),
    }


@pytest.mark.parametrize(
    "case", ["missing", "folder", "not ONNX", "truncated", "empty", "no graph"]
)
def test_bad_model_files_are_refused_by_example_py_in_one_line(tmp_path, case):
    path, message = bad_model_files(tmp_path)[case]
    result = run_script("example.py", "--model", str(path))
    assert result.returncode == 1
    assert result.stderr.startswith("example.py: " + message.format(path=path)), result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert "Traceback" not in result.stderr


def model_with_input(path, value_info):
    y = onnx.helper.make_tensor_value_info("Y", onnx.TensorProto.FLOAT, None)
    node = onnx.helper.make_node("Identity", ["X"], ["Y"])
    graph = onnx.helper.make_graph([node], "g", [value_info], [y])
    onnx.save(onnx.helper.make_model(graph), path)
    return path


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        (None, "has no shape; export the model with input shapes, a dynamic batch first"),
        ([], "is a scalar; a first, dynamic batch dimension is needed"),
    ],
)
def test_an_input_without_a_batch_dimension_is_refused_saying_what_it_lacks(
    tmp_path, shape, message
):
    x = onnx.helper.make_tensor_value_info("X", onnx.TensorProto.FLOAT, shape)
    path = model_with_input(tmp_path / "m.onnx", x)
    with pytest.raises(ValueError) as error:
        read_model_input(path)
    assert str(error.value) == f"input X of {path} {message}"


def test_verbose_shows_the_traceback(tmp_path):
    result = run_script("example.py", "--model", str(tmp_path / "missing.onnx"), "--verbose")
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "no model at" in result.stderr


def test_example_refuses_a_model_that_does_not_fit_the_profiles(tmp_path):
    path = write_identity_model(tmp_path / "gray.onnx", shape=("batch", 1, 28, 28))
    result = run_script("example.py", "--model", str(path))
    assert result.returncode == 1
    assert result.stderr == (
        f"example.py: {path} takes X float32 [batch, 1, 28, 28], but the profiles are written "
        "for X float32 [batch, 3, 28, 28]\n"
    )


# The engine-reuse decision, on stand-in files: it reads bytes and records, not TensorRT.

RECORD = "dynamic_identity.engine.json, which says what the engine was built from,"
WANTED = {
    "model_sha256": "m" * 64,
    "profiles": {
        "low latency": {"X": {"min": [1, 3, 28, 28], "opt": [1, 3, 28, 28], "max": [1, 3, 28, 28]}}
    },
    "profile_sharing": True,
    "tensorrt": "8.6.0",
    "gpu": "NVIDIA H100 80GB HBM3",
}


@pytest.fixture
def saved(tmp_path):
    """An 'engine' file and a record that matches WANTED."""
    engine = tmp_path / "dynamic_identity.engine"
    engine.write_bytes(b"engine bytes")
    record = {**WANTED, "engine_sha256": hashlib.sha256(b"engine bytes").hexdigest()}
    record_path(engine).write_text(json.dumps(record))
    return engine


def edit_record(engine, **changes):
    record = json.loads(record_path(engine).read_text())
    record_path(engine).write_text(json.dumps({**record, **changes}))


def drop_from_record(engine, key):
    record = json.loads(record_path(engine).read_text())
    del record[key]
    record_path(engine).write_text(json.dumps(record))


def test_an_engine_with_a_matching_record_is_reused(saved):
    assert reuse_verdict(saved, WANTED) is None


def test_a_record_from_another_json_key_order_still_matches(saved):
    record = json.loads(record_path(saved).read_text())
    record_path(saved).write_text(json.dumps(dict(reversed(record.items())), indent=4))
    assert reuse_verdict(saved, WANTED) is None


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda e: e.unlink(), "there is no dynamic_identity.engine yet"),
        (lambda e: record_path(e).unlink(), f"{RECORD} is missing"),
        (lambda e: record_path(e).write_text("{not json"), f"{RECORD} is unreadable"),
        (lambda e: record_path(e).write_text("null"), f"{RECORD} is unreadable"),
        (lambda e: record_path(e).write_text("[]"), f"{RECORD} is unreadable"),
        (
            lambda e: record_path(e).write_text("{}"),
            f"{RECORD} is incomplete (no engine_sha256, model_sha256, profiles, tensorrt, gpu)",
        ),
        (
            # Engines saved before the record said so: their contexts cannot share profiles.
            lambda e: drop_from_record(e, "profile_sharing"),
            "it was built without profile sharing",
        ),
        (lambda e: e.write_bytes(b"engine by"), "the engine file is not the one saved with it"),
        (lambda e: e.write_bytes(b""), "the engine file is not the one saved with it"),
        (
            lambda e: edit_record(e, model_sha256="0" * 64),
            "the model changed since the engine was built",
        ),
        (lambda e: edit_record(e, profiles={}), "the profiles changed since the engine was built"),
        (
            lambda e: edit_record(e, tensorrt="10.13.0"),
            "it was built by TensorRT 10.13.0, this is 8.6.0",
        ),
        (
            lambda e: edit_record(e, gpu="NVIDIA A100-SXM4-80GB"),
            "it was built for NVIDIA A100-SXM4-80GB, this is NVIDIA H100 80GB HBM3",
        ),
    ],
)
def test_each_reason_to_rebuild(saved, change, reason):
    change(saved)
    assert reuse_verdict(saved, WANTED) == reason

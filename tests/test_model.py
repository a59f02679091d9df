"""The ONNX model: structure, validity, reproducibility and identity semantics (CPU only)."""

import numpy as np
import onnx
import pytest
from onnx.reference import ReferenceEvaluator

import build_model
from scenario import MODEL_PATH, random_images


@pytest.fixture(scope="module")
def model():
    return build_model.make_model()


def dims(value_info):
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def test_input_and_output_are_float32_with_a_named_dynamic_batch(model):
    (x,) = model.graph.input
    (y,) = model.graph.output
    assert (x.name, y.name) == ("X", "Y")
    for tensor in (x, y):
        assert tensor.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
        assert dims(tensor) == ["batch", 3, 28, 28]
        assert not tensor.type.tensor_type.shape.dim[0].HasField("dim_value")


def test_one_identity_node_from_x_to_y(model):
    (node,) = model.graph.node
    assert (node.op_type, list(node.input), list(node.output)) == ("Identity", ["X"], ["Y"])


def test_opset_and_ir_version_that_tensorrt_8_6_parses(model):
    assert [(o.domain, o.version) for o in model.opset_import] == [("", 17)]
    assert model.ir_version == 8


def test_two_builds_are_byte_identical_and_equal_the_committed_file(tmp_path):
    first, second = tmp_path / "first.onnx", tmp_path / "second.onnx"
    assert build_model.main(["--output", str(first)]) == 0
    assert build_model.main(["--output", str(second)]) == 0
    assert first.read_bytes() == second.read_bytes() == MODEL_PATH.read_bytes()


def test_ensure_model_writes_the_default_model_only_where_it_is_missing(tmp_path, monkeypatch):
    default = tmp_path / "dynamic_identity.onnx"
    monkeypatch.setattr(build_model, "MODEL_PATH", default)
    build_model.ensure_model(tmp_path / "yours.onnx")  # a model the user named: theirs
    assert list(tmp_path.iterdir()) == []
    build_model.ensure_model(default)
    assert default.read_bytes() == MODEL_PATH.read_bytes()
    default.write_bytes(b"kept")
    build_model.ensure_model(default)  # present: never overwritten
    assert default.read_bytes() == b"kept"


@pytest.mark.parametrize("batch", [1, 4, 7, 32, 128])
def test_reference_evaluator_returns_the_input_exactly(model, batch):
    images = random_images(batch, seed=batch)
    (output,) = ReferenceEvaluator(model).run(None, {"X": images})
    assert output.dtype == np.float32
    assert np.array_equal(output, images)

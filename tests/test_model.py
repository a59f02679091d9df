"""The ONNX models: structure, validity, reproducibility and semantics (CPU only)."""

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx.reference import ReferenceEvaluator

import build_model
from dynamic_shapes.reference import ATOL, RTOL, OnnxRuntimeReference, mismatch
from scenario import MODEL_PATH, random_images


@pytest.fixture(scope="module")
def model():
    return build_model.make_model()


@pytest.fixture(scope="module")
def convnet(tmp_path_factory):
    path = tmp_path_factory.mktemp("convnet") / "dynamic_convnet.onnx"
    build_model.write_model("convnet", path)
    return path


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


def test_opset_and_ir_version_that_tensorrt_8_6_parses(model, convnet):
    for each in (model, onnx.load(convnet)):
        assert [(o.domain, o.version) for o in each.opset_import] == [("", 17)]
        assert each.ir_version == 8


def test_two_builds_are_byte_identical_and_equal_the_committed_file(tmp_path):
    first, second = tmp_path / "first.onnx", tmp_path / "second.onnx"
    assert build_model.main(["--output", str(first)]) == 0
    assert build_model.main(["--output", str(second)]) == 0
    assert first.read_bytes() == second.read_bytes() == MODEL_PATH.read_bytes()


def test_two_convnet_builds_are_byte_identical(convnet, tmp_path):
    again = tmp_path / "again.onnx"
    assert build_model.main(["--model", "convnet", "--output", str(again)]) == 0
    assert again.read_bytes() == convnet.read_bytes()


def test_ensure_model_writes_a_named_model_only_where_it_is_missing(tmp_path, monkeypatch):
    default = tmp_path / "dynamic_identity.onnx"
    monkeypatch.setitem(build_model.MODELS, "identity", default)
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


def test_the_convnet_is_nine_convolutions_down_to_ten_outputs(convnet):
    graph = onnx.load(convnet).graph
    ops = [node.op_type for node in graph.node]
    assert ops == ["Conv", "Relu"] * 9 + ["GlobalAveragePool", "Flatten", "Gemm"]
    (x,), (y,) = graph.input, graph.output
    assert dims(x) == ["batch", 3, 28, 28] and dims(y) == ["batch", 10]
    weights = {init.name: onnx.numpy_helper.to_array(init) for init in graph.initializer}
    channels = [weights[node.input[1]].shape[0] for node in graph.node if node.op_type == "Conv"]
    assert channels == [64, 64, 128, 128, 256, 256, 512, 512, 512]


def test_onnx_runtime_agrees_with_onnx_reference_on_the_convnet(convnet):
    # The reference the engines are checked against, checked itself against an independent
    # implementation: ONNX's own, in NumPy.
    images = random_images(3, seed=11)
    (reference,) = ReferenceEvaluator(str(convnet)).run(None, {"X": images})
    expected = {"Y": reference}
    outputs = OnnxRuntimeReference(convnet)({"X": images})
    assert mismatch(outputs, expected, exact=False) is None
    # Outputs of order 1, the scale the tolerance is written for, and distinct per image.
    assert 0.1 < np.abs(outputs["Y"]).max() < 10
    assert not np.allclose(outputs["Y"][0], outputs["Y"][1], rtol=RTOL, atol=ATOL)


def test_onnx_runtime_runs_on_the_cpu_only(convnet):
    assert OnnxRuntimeReference(convnet).session.get_providers() == ["CPUExecutionProvider"]
    assert "CPUExecutionProvider" in onnxruntime.get_available_providers()

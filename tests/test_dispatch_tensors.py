"""A model with two inputs and two outputs, served by the dispatcher as it serves the identity:
every path, every tensor checked exactly, and the same refusals."""

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import pytest
from polygraphy.backend.trt import Profile

from build_model import IR_VERSION, OPSET
from dynamic_shapes.dispatch import Dispatcher
from dynamic_shapes.engines import build_engine
from scenario import BATCH_SIZES, IMAGE_SHAPE, random_images

pytestmark = pytest.mark.gpu

LABELS = 4  # int32 labels per image


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    """Y = X + X (exact in float32) and L = labels, with the scenario's profiles on both inputs."""
    X = gs.Variable("X", dtype=np.float32, shape=("batch", *IMAGE_SHAPE))
    labels = gs.Variable("labels", dtype=np.int32, shape=("batch", LABELS))
    L = gs.Variable("L", dtype=np.int32, shape=("batch", LABELS))
    Y = gs.Variable("Y", dtype=np.float32, shape=("batch", *IMAGE_SHAPE))
    nodes = [
        gs.Node("Identity", inputs=[labels], outputs=[L]),
        gs.Node("Add", inputs=[X, X], outputs=[Y]),
    ]
    graph = gs.Graph(nodes=nodes, inputs=[X, labels], outputs=[L, Y], opset=OPSET)
    model = gs.export_onnx(graph)
    model.ir_version = IR_VERSION
    path = tmp_path_factory.mktemp("pair") / "pair.onnx"
    onnx.save(model, str(path))
    profiles = {}
    for use_case, (low, opt, high) in BATCH_SIZES.items():
        profile = Profile()
        for name, item_shape in [("X", IMAGE_SHAPE), ("labels", (LABELS,))]:
            profile.add(
                name, min=(low, *item_shape), opt=(opt, *item_shape), max=(high, *item_shape)
            )
        profiles[use_case] = profile
    return build_engine(path, profiles)


def request(batch):
    rng = np.random.default_rng(batch)
    return {
        "X": random_images(batch, seed=batch),
        "labels": rng.integers(0, 1000, (batch, LABELS), np.int32),
    }


def check(request, outputs):
    assert set(outputs) == {"L", "Y"}
    assert np.array_equal(outputs["Y"], request["X"] + request["X"])
    assert np.array_equal(outputs["L"], request["labels"])


@pytest.mark.parametrize("path", ["lean", "runner"])
def test_two_inputs_and_two_outputs_for_every_batch_from_1_to_300(engine, path):
    with Dispatcher(engine, path=path) as dispatcher:
        assert [s.name for s in dispatcher.inputs] == ["X", "labels"]
        assert sorted(dispatcher.output_names) == ["L", "Y"]
        for batch in range(1, 301):
            feed = request(batch)
            check(feed, dispatcher.infer(feed))


def test_page_locked_and_gpu_tensors_mixed_in_one_request(engine):
    with Dispatcher(engine) as dispatcher:
        for batch in (1, 4, 128, 300):
            feed = request(batch)
            inputs = dispatcher.page_locked_inputs(batch)
            outputs = dispatcher.page_locked_outputs(batch)
            for name, array in feed.items():
                inputs[name][:] = array
            assert dispatcher.infer(inputs, out=outputs) is outputs
            check(feed, outputs)
        cupy = pytest.importorskip("cupy", reason="GPU tensors are tested with CuPy")
        feed = request(77)
        out = {
            "Y": cupy.empty((77, *IMAGE_SHAPE), cupy.float32),
            "L": np.empty((77, LABELS), np.int32),
        }
        dispatcher.infer({"X": cupy.asarray(feed["X"]), "labels": feed["labels"]}, out=out)
        check(feed, {"Y": cupy.asnumpy(out["Y"]), "L": out["L"]})


def test_each_tensor_is_checked_and_refused_by_name(engine):
    with Dispatcher(engine) as dispatcher:
        feed = request(3)
        cases = [
            (feed["X"], "this model has 2 inputs ['X', 'labels']; pass {name: array}"),
            ({"X": feed["X"]}, "no input ['labels']; this model has inputs ['X', 'labels']"),
            (
                {**feed, "labels": feed["labels"].astype(np.int64)},
                "expected labels int32 [batch, 4], got dtype int64",
            ),
            (
                {**feed, "labels": feed["labels"][:2]},
                "the inputs' batch sizes differ: {'X': 3, 'labels': 2}",
            ),
        ]
        for bad, message in cases:
            with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("(", r"\(")):
                dispatcher.infer(bad)
        with pytest.raises(ValueError, match="this model has 2 outputs"):
            dispatcher.infer(feed, out=np.empty((3, *IMAGE_SHAPE), np.float32))
        check(feed, dispatcher.infer(feed))

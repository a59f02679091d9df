"""The dispatcher serving the transformer on a real GPU, on every path, against ONNX Runtime
(reference.py's tolerance): requests routed over batch and sequence length by both rules, split
along the batch, padded up to a profile that holds them, and refused; and the identity engine
served by shape (with a recorder) exactly as by batch."""

import numpy as np
import pytest

import build_model
from dynamic_shapes.dispatch import Dispatcher
from dynamic_shapes.engines import build_engine
from dynamic_shapes.profiles import profiles_from_command_line
from dynamic_shapes.reference import OnnxRuntimeReference, mismatch
from scenario import (
    ATTENTION_MASK_NAME,
    HIDDEN_STATES_NAME,
    MODEL_PATH,
    PROFILES,
    TOKEN_IDS_NAME,
    TRANSFORMER_PROFILE_OPTIONS,
    check_identity,
    random_images,
    random_tokens,
)

pytestmark = pytest.mark.gpu

# (batch, sequence): every profile's min, opt and max, shapes between, and batches no profile
# holds at their sequence (split along the batch: 40 = 32 + 8, 33 x 512 = 32 on profile 2 + 1).
SHAPES = [(1, 1), (1, 16), (1, 64), (1, 65), (8, 128), (3, 17), (32, 512), (40, 100), (33, 512)]
CONFIGURATIONS = {
    "lean with CUDA graphs": {"path": "lean", "cuda_graphs": True},
    "lean": {"path": "lean", "cuda_graphs": False},
    "lean, 2 contexts per profile": {"path": "lean", "contexts_per_profile": 2},
    "runner": {"path": "runner"},
    "narrowest": {"routing": "narrowest"},  # the default is nearest-opt
}
# Bucketed sequence lengths with a gap between them, for padding: 1..64 and 128..256.
BUCKET_OPTIONS = (
    "--trt-min-shapes input_ids:[1,1] attention_mask:[1,1] "
    "--trt-opt-shapes input_ids:[4,64] attention_mask:[4,64] "
    "--trt-max-shapes input_ids:[8,64] attention_mask:[8,64] "
    "--trt-min-shapes input_ids:[1,128] attention_mask:[1,128] "
    "--trt-opt-shapes input_ids:[4,256] attention_mask:[4,256] "
    "--trt-max-shapes input_ids:[8,256] attention_mask:[8,256]"
)


@pytest.fixture(scope="module")
def transformer(tmp_path_factory):
    path = tmp_path_factory.mktemp("transformer") / "dynamic_transformer.onnx"
    build_model.write_model("transformer", path)
    return path


def engine_for(model, options):
    profiles = profiles_from_command_line(options, model_path=model)
    return build_engine(model, {f"profile {i}": p for i, p in enumerate(profiles)})


@pytest.fixture(scope="module")
def engine(transformer):
    return engine_for(transformer, TRANSFORMER_PROFILE_OPTIONS)


@pytest.fixture(scope="module")
def buckets(transformer):
    return engine_for(transformer, BUCKET_OPTIONS)


@pytest.fixture(scope="module")
def reference(transformer):
    return OnnxRuntimeReference(transformer)


@pytest.fixture(scope="module")
def cupy():
    return pytest.importorskip(
        "cupy", reason="GPU-resident requests are tested with CuPy: requirements-gpu-arrays.txt"
    )


def check(outputs, feed, reference, what):
    states = outputs[HIDDEN_STATES_NAME] if isinstance(outputs, dict) else outputs
    problem = mismatch({HIDDEN_STATES_NAME: states}, reference(feed), exact=False)
    assert problem is None, f"{what}: {problem}"


def shapes_of(feed) -> dict:
    return {name: array.shape for name, array in feed.items()}


@pytest.mark.parametrize("configuration", list(CONFIGURATIONS))
def test_every_shape_agrees_with_onnx_runtime(engine, reference, configuration):
    with Dispatcher(engine, **CONFIGURATIONS[configuration]) as dispatcher:
        assert dispatcher.output_names == [HIDDEN_STATES_NAME]
        for batch, sequence in SHAPES:
            feed = random_tokens(batch, sequence, seed=batch * 1000 + sequence)
            check(dispatcher.infer(feed), feed, reference, f"({batch}, {sequence})")
            again = random_tokens(batch, sequence, seed=1)  # a shape served before: kept plans
            check(dispatcher.infer(again), again, reference, f"({batch}, {sequence}) again")


def test_page_locked_arrays_and_out(engine, reference):
    with Dispatcher(engine) as dispatcher:
        for batch, sequence in [(1, 16), (5, 300), (40, 100)]:
            feed = random_tokens(batch, sequence, seed=sequence)
            shapes = shapes_of(feed)
            inputs = dispatcher.page_locked_inputs(shapes)
            outputs = dispatcher.page_locked_outputs(shapes)
            assert outputs[HIDDEN_STATES_NAME].shape == (batch, sequence, 256)
            for name, array in feed.items():
                inputs[name][:] = array
            assert dispatcher.infer(inputs, out=outputs) is outputs
            check(outputs, feed, reference, f"page-locked ({batch}, {sequence})")
        with pytest.raises(ValueError, match="a batch size alone does not give the shapes"):
            dispatcher.page_locked_inputs(4)


def test_gpu_arrays_are_served_on_the_gpu(engine, reference, cupy):
    with Dispatcher(engine) as dispatcher:
        for batch, sequence in [(1, 16), (8, 128), (40, 100)]:
            feed = random_tokens(batch, sequence, seed=sequence)
            on_gpu = {name: cupy.asarray(array) for name, array in feed.items()}
            out = cupy.empty((batch, sequence, 256), cupy.float32)
            assert dispatcher.infer(on_gpu, out=out) is out
            check(cupy.asnumpy(out), feed, reference, f"GPU ({batch}, {sequence})")


@pytest.mark.parametrize("shape", [(1, 16), (5, 300), (32, 512), (40, 100)])
def test_prepared_requests_of_any_shape(engine, reference, shape):
    feed = random_tokens(*shape, seed=3)
    with Dispatcher(engine) as dispatcher:
        prepared = dispatcher.prepare(shapes_of(feed))
        # Contexts of the request's own, each of one shape: every chunk replays a graph.
        assert prepared.uses_graphs
        for seed in (3, 4):  # new data in place, run again
            feed = random_tokens(*shape, seed=seed)
            for name, array in feed.items():
                prepared.inputs[name][:] = array
            check(prepared.run(), feed, reference, f"prepared {shape}, seed {seed}")
        prepared.close()
        with pytest.raises(ValueError, match="a batch size alone does not give the shapes"):
            dispatcher.prepare(4)


def test_a_sequence_no_profile_holds_is_refused_with_the_ranges(engine):
    with Dispatcher(engine) as dispatcher:
        with pytest.raises(ValueError) as refused:
            dispatcher.infer(random_tokens(2, 600))
        message = str(refused.value)
        assert "input_ids:[2,600] attention_mask:[2,600]" in message
        assert "profile 1: min input_ids:[1,1] attention_mask:[1,1] " in message
        assert "max input_ids:[32,512] attention_mask:[32,512]" in message
        check_served = random_tokens(1, 16)  # the dispatcher serves on after a refusal
        assert dispatcher.infer(check_served).shape == (1, 16, 256)


def test_padded_requests_give_the_unpadded_states(buckets, reference):
    with Dispatcher(buckets, pad_with_mask=ATTENTION_MASK_NAME) as dispatcher:
        for batch, sequence in [(3, 100), (8, 65), (1, 127), (20, 100), (2, 64), (2, 200)]:
            feed = random_tokens(batch, sequence, seed=sequence)
            result = dispatcher.infer(feed)
            assert result.shape == (batch, sequence, 256)
            check(result, feed, reference, f"padded ({batch}, {sequence})")
        feed = random_tokens(3, 100, seed=5)
        out = np.empty((3, 100, 256), np.float32)
        assert dispatcher.infer(feed, out=out) is out
        check(out, feed, reference, "padded into out")
        with pytest.raises(ValueError, match=r"out must be a NumPy array float32 \(3, 100, 256\)"):
            dispatcher.infer(feed, out=np.empty((4, 100, 256), np.float32))
        shapes = dispatcher.output_shapes(shapes_of(feed))
        assert shapes[HIDDEN_STATES_NAME][0] == (3, 100, 256)
        with pytest.raises(ValueError, match="prepare the padded shapes"):
            dispatcher.prepare(shapes_of(feed))
        with pytest.raises(ValueError, match="found no profile either"):
            dispatcher.infer(random_tokens(2, 300))
    with (
        Dispatcher(buckets) as dispatcher,
        pytest.raises(ValueError, match=r"dimension 1 of input_ids \(100\)"),
    ):
        dispatcher.infer(random_tokens(3, 100))


def test_gpu_arrays_to_pad_are_refused_saying_why(buckets, cupy):
    feed = random_tokens(3, 100)
    on_gpu = {name: cupy.asarray(array) for name, array in feed.items()}
    with (
        Dispatcher(buckets, pad_with_mask=ATTENTION_MASK_NAME) as dispatcher,
        pytest.raises(ValueError, match="padded on the host"),
    ):
        dispatcher.infer(on_gpu)


def test_the_recorder_sees_every_request_served(engine):
    class Recorded(list):
        record = list.append

    recorded = Recorded()
    sent = [(1, 16), (1, 16), (40, 100), (40, 100), (1, 16)]  # sent again: from their graphs
    # Room for (40, 100)'s two chunks on contexts of their own, whatever they take.
    with Dispatcher(engine, recorder=recorded, graphs_after=1, graph_bytes=1 << 36) as dispatcher:
        for batch, sequence in sent:
            dispatcher.infer(random_tokens(batch, sequence))
        assert dispatcher.graph_stats().hits == 3  # recorded once each all the same
        prepared = dispatcher.prepare({TOKEN_IDS_NAME: (2, 9), ATTENTION_MASK_NAME: (2, 9)})
        prepared.run()
        prepared.close()
    expected = [*sent, (2, 9)]
    assert recorded == [{TOKEN_IDS_NAME: s, ATTENTION_MASK_NAME: s} for s in expected]


def test_the_identity_engine_served_by_shape_is_exact():
    # A recorder sends the identity engine's requests by shape: the results must be those
    # served by batch, bit for bit.
    class Recorded(list):
        record = list.append

    engine = build_engine(MODEL_PATH, PROFILES)
    recorded = Recorded()
    with Dispatcher(engine, recorder=recorded) as dispatcher:
        for batch in [*range(1, 140), 300]:
            images = random_images(batch, seed=batch)
            check_identity(images, dispatcher.infer(images))
        prepared = dispatcher.prepare(33)  # today's int form
        prepared.inputs["X"][:] = images = random_images(33, seed=7)
        check_identity(images, prepared.run()["Y"])
        prepared.close()
    assert recorded[0] == {"X": (1, 3, 28, 28)}
    assert len(recorded) == 141

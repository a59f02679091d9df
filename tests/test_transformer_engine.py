"""The transformer on a real GPU: its engine, with profiles over batch and sequence length given
in Polygraphy's syntax, agrees with ONNX Runtime at every profile's min, opt and max and at odd
shapes between them, and a request padded to a longer sequence (the padding masked) gives the
unpadded request's states. The tolerance is reference.py's, argued there and, for padding, in
test_transformer.py."""

import pytest

import build_model
from dynamic_shapes.engines import build_engine, create_contexts, deactivate_runner
from dynamic_shapes.profiles import profile_shapes, profiles_from_command_line
from dynamic_shapes.reference import OnnxRuntimeReference, mismatch
from scenario import (
    HIDDEN_STATES_NAME,
    TOKEN_IDS_NAME,
    TRANSFORMER_PROFILE_OPTIONS,
    random_tokens,
)
from tests.test_transformer import padded

pytestmark = pytest.mark.gpu

# Shapes inside a profile but at none of its min, opt and max.
ODD_SHAPES = [(1, 17), (1, 63), (3, 17), (31, 511), (5, 300)]


@pytest.fixture(scope="module")
def transformer(tmp_path_factory):
    path = tmp_path_factory.mktemp("transformer") / "dynamic_transformer.onnx"
    build_model.write_model("transformer", path)
    return path


@pytest.fixture(scope="module")
def profiles(transformer):
    return profiles_from_command_line(TRANSFORMER_PROFILE_OPTIONS, model_path=transformer)


@pytest.fixture(scope="module")
def engine(transformer, profiles):
    return build_engine(transformer, {f"profile {i}": p for i, p in enumerate(profiles)})


@pytest.fixture(scope="module")
def reference(transformer):
    return OnnxRuntimeReference(transformer)


def shapes_of(shapes: dict) -> list:
    """The (batch, sequence) shapes to check a profile at: its min, opt and max, and every odd
    shape it holds."""
    low, opt, high = shapes[TOKEN_IDS_NAME]
    inside = [
        shape
        for shape in ODD_SHAPES
        if all(a <= d <= b for a, d, b in zip(low, shape, high, strict=True))
    ]
    return sorted({low, opt, high, *inside})


def test_the_engine_has_the_profiles_as_given(engine, profiles):
    assert engine.num_optimization_profiles == 3
    for index, shapes in enumerate(profile_shapes(profiles)):
        for name, expected in shapes.items():
            found = tuple(tuple(d) for d in engine.get_tensor_profile_shape(name, index))
            assert found == expected, f"profile {index}, {name}"


def test_every_profile_agrees_with_onnx_runtime_across_its_range(engine, profiles, reference):
    from polygraphy.backend.trt import TrtRunner

    contexts = create_contexts(engine, engine.num_optimization_profiles)
    for index, (shapes, context) in enumerate(zip(profile_shapes(profiles), contexts, strict=True)):
        runner = TrtRunner(context, optimization_profile=index)
        runner.activate()
        try:
            for batch, sequence in shapes_of(shapes):
                feed = random_tokens(batch, sequence, seed=batch * 1000 + sequence)
                problem = mismatch(runner.infer(feed), reference(feed), exact=False)
                assert problem is None, f"profile {index}, shape ({batch}, {sequence}): {problem}"
        finally:
            deactivate_runner(runner)


@pytest.mark.parametrize(("sequence", "length"), [(5, 64), (100, 512)])
def test_a_padded_request_gives_the_unpadded_states(engine, reference, sequence, length):
    from polygraphy.backend.trt import TrtRunner

    (context,) = create_contexts(engine, 1)
    runner = TrtRunner(context, optimization_profile=1)
    runner.activate()
    try:
        feed = random_tokens(4, sequence, seed=sequence)
        states = runner.infer(padded(feed, length))[HIDDEN_STATES_NAME][:, :sequence]
    finally:
        deactivate_runner(runner)
    assert mismatch({HIDDEN_STATES_NAME: states}, reference(feed), exact=False) is None

"""The transformer, with dynamic batch and sequence length: its structure, reproducibility and
semantics, padding above all, checked with ONNX Runtime on the CPU."""

import numpy as np
import onnx
import pytest
from onnx.reference import ReferenceEvaluator

import build_model
from dynamic_shapes.reference import OnnxRuntimeReference, mismatch
from scenario import (
    ATTENTION_MASK_NAME,
    HIDDEN_SIZE,
    HIDDEN_STATES_NAME,
    MAX_SEQUENCE,
    TOKEN_IDS_NAME,
    TRANSFORMER_PATH,
    random_tokens,
)


@pytest.fixture(scope="module")
def transformer(tmp_path_factory):
    path = tmp_path_factory.mktemp("transformer") / "dynamic_transformer.onnx"
    assert build_model.main(["--model", "transformer", "--output", str(path)]) == 0
    return path


@pytest.fixture(scope="module")
def reference(transformer):
    return OnnxRuntimeReference(transformer)


def dims(value_info):
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def padded(feed: dict, length: int, pad_token: int = 7) -> dict:
    """`feed`'s sequences padded at the end to `length`: padding tokens, masked out. The pad
    token is not 0, so that the test cannot pass by the padding tokens' values alone."""
    batch, sequence = feed[TOKEN_IDS_NAME].shape
    ids = np.full((batch, length), pad_token, np.int32)
    mask = np.zeros((batch, length), np.int32)
    ids[:, :sequence] = feed[TOKEN_IDS_NAME]
    mask[:, :sequence] = feed[ATTENTION_MASK_NAME]
    return {TOKEN_IDS_NAME: ids, ATTENTION_MASK_NAME: mask}


def test_two_builds_are_byte_identical_and_small_enough_to_build_on_demand(transformer, tmp_path):
    again = tmp_path / "again.onnx"
    assert build_model.main(["--model", "transformer", "--output", str(again)]) == 0
    assert again.read_bytes() == transformer.read_bytes()
    assert transformer.stat().st_size < 30 * 2**20


def test_written_where_the_scripts_expect_it_by_default():
    assert build_model.parse_args(["--model", "transformer"]).output == TRANSFORMER_PATH


def test_int32_ids_and_mask_of_dynamic_batch_and_sequence_to_float32_states(transformer):
    model = onnx.load(transformer)
    assert [(o.domain, o.version) for o in model.opset_import] == [("", 17)]
    assert model.ir_version == 8
    inputs, (output,) = model.graph.input, model.graph.output
    # No int64 input: TensorRT 8.6 would take one only by casting it to int32.
    assert [(i.name, i.type.tensor_type.elem_type, dims(i)) for i in inputs] == [
        (TOKEN_IDS_NAME, onnx.TensorProto.INT32, ["batch", "sequence"]),
        (ATTENTION_MASK_NAME, onnx.TensorProto.INT32, ["batch", "sequence"]),
    ]
    assert output.name == HIDDEN_STATES_NAME
    assert output.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert dims(output) == ["batch", "sequence", HIDDEN_SIZE]


def test_four_pre_norm_encoder_layers_of_operators_tensorrt_8_6_parses(transformer):
    ops = [node.op_type for node in onnx.load(transformer).graph.node]
    assert ops.count("Softmax") == 4 and ops.count("Erf") == 4
    assert ops.count("LayerNormalization") == 2 * 4 + 1
    assert set(ops) == {
        "Add", "Cast", "Div", "Erf", "Gather", "LayerNormalization", "MatMul", "Mul",
        "Reshape", "Shape", "Slice", "Softmax", "Sub", "Transpose", "Unsqueeze",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("batch", "sequence"), [(1, 1), (1, 2), (3, 17), (8, 64), (2, MAX_SEQUENCE), (32, 5)]
)
def test_states_for_every_token_of_every_sequence(reference, batch, sequence):
    (states,) = reference(random_tokens(batch, sequence, seed=sequence)).values()
    assert states.shape == (batch, sequence, HIDDEN_SIZE) and states.dtype == np.float32
    assert np.isfinite(states).all()
    # Layer-normalized: of order 1, the scale the engines' tolerance is written for.
    assert np.allclose(states.mean(axis=-1), 0, atol=1e-4)
    assert np.allclose(states.std(axis=-1), 1, atol=1e-2)


def test_a_sequence_longer_than_the_position_embeddings_is_refused(reference):
    with pytest.raises(Exception, match="broadcast"):
        reference(random_tokens(1, MAX_SEQUENCE + 1))


# Padding invariance, which padding requests up to a profile's sequence length relies on. The
# padded and unpadded runs do the same arithmetic at the real tokens, but for terms that are
# exactly 0 (the padding keys' attention weights, exp(-1e4) in float32) and for matrix products
# over more rows, which a library may block differently and so sum in another order: rounding
# differences of the size reference.py's tolerance is argued for (sqrt(n) * 2**-24 relative per
# dot product, through a few layers), far below the 0.03 and more that a single unmasked padding
# token moves them by (test below). The same tolerance then holds for an engine against ONNX
# Runtime, padded or not.
@pytest.mark.parametrize(("sequence", "length"), [(1, 2), (1, 16), (5, 8), (37, 64), (100, 512)])
def test_padding_masked_out_leaves_the_real_tokens_states_unchanged(reference, sequence, length):
    feed = random_tokens(2, sequence, seed=length + sequence)
    expected = reference(feed)
    states = reference(padded(feed, length))[HIDDEN_STATES_NAME][:, :sequence]
    assert mismatch({HIDDEN_STATES_NAME: states}, expected, exact=False) is None


def test_sequences_of_several_lengths_padded_into_one_batch_each_match_their_own(reference):
    lengths, length = [3, 64, 17, 1], 64
    alone = [random_tokens(1, n, seed=n) for n in lengths]
    batch = {
        name: np.concatenate([padded(feed, length)[name] for feed in alone])
        for name in (TOKEN_IDS_NAME, ATTENTION_MASK_NAME)
    }
    together = reference(batch)[HIDDEN_STATES_NAME]
    for index, (feed, n) in enumerate(zip(alone, lengths, strict=True)):
        states = {HIDDEN_STATES_NAME: together[index : index + 1, :n]}
        assert mismatch(states, reference(feed), exact=False) is None, f"length {n}"


@pytest.mark.parametrize(("sequence", "length"), [(5, 8), (511, 512)])
def test_padding_left_unmasked_changes_the_states(reference, sequence, length):
    # What makes the test above mean something: the mask, not the padding, keeps them equal.
    feed = random_tokens(1, sequence, seed=sequence)
    unmasked = padded(feed, length)
    unmasked[ATTENTION_MASK_NAME][:] = 1
    states = reference(unmasked)[HIDDEN_STATES_NAME][:, :sequence]
    assert mismatch({HIDDEN_STATES_NAME: states}, reference(feed), exact=False) is not None


def test_states_depend_on_the_tokens_and_on_their_positions(reference):
    feed = random_tokens(2, 16, seed=4)
    feed[TOKEN_IDS_NAME][:, 3] = feed[TOKEN_IDS_NAME][:, 9] = 42
    (states,) = reference(feed).values()
    # Two sequences, two tokens at two positions, two different repeats of one token: all
    # distinct, and not by a rounding error.
    assert np.abs(states[0] - states[1]).max() > 0.5
    assert np.abs(states[0, 0] - states[0, 1]).max() > 0.5
    assert np.abs(states[0, 3] - states[0, 9]).max() > 0.5
    # One token changed changes the states of the others, through attention.
    changed = {name: array.copy() for name, array in feed.items()}
    changed[TOKEN_IDS_NAME][0, 0] += 1
    assert np.abs(reference(changed)[HIDDEN_STATES_NAME][0, 1:] - states[0, 1:]).max() > 1e-2


def test_onnx_runtime_agrees_with_onnx_reference_on_the_transformer(transformer, reference):
    # The reference the engines will be checked against, checked against ONNX's own NumPy
    # implementation, padding included.
    feed = padded(random_tokens(2, 9, seed=5), 12)
    (expected,) = ReferenceEvaluator(str(transformer)).run(None, feed)
    assert mismatch(reference(feed), {HIDDEN_STATES_NAME: expected}, exact=False) is None


def test_its_profiles_in_polygraphy_syntax_fit_the_model(transformer):
    from dynamic_shapes.profiles import profile_shapes, profiles_from_command_line
    from scenario import TRANSFORMER_PROFILE_OPTIONS

    profiles = profile_shapes(profiles_from_command_line(TRANSFORMER_PROFILE_OPTIONS, transformer))
    assert [shapes[TOKEN_IDS_NAME] for shapes in profiles] == [
        ((1, 1), (1, 16), (1, 64)),
        ((1, 1), (8, 128), (32, 512)),
        ((32, MAX_SEQUENCE),) * 3,
    ]
    assert all(shapes[ATTENTION_MASK_NAME] == shapes[TOKEN_IDS_NAME] for shapes in profiles)

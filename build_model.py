#!/usr/bin/env python3
"""
Writes dynamic_identity.onnx: an identity network whose batch dimension is dynamic.

Input `X` is float32 [batch, 3, 28, 28] where `batch` is a named dynamic dimension; one
Identity node copies it to output `Y`. An identity model makes every inference result
checkable exactly: the output must equal the input bit for bit.

With --model convnet, writes dynamic_convnet.onnx instead: a compute-heavy network with the
same input, whose kernels (unlike the identity's) depend on the batch size and need activation
memory, so that every trade-off of the walkthrough shows. Its output `Y` is float32 [batch, 10].

With --model transformer, writes dynamic_transformer.onnx: a small transformer encoder whose
batch and sequence length are both dynamic. Inputs `input_ids` and `attention_mask` are int32
[batch, sequence] (sequence up to 512; a mask of 1 marks a token, 0 padding); output
`last_hidden_state` is float32 [batch, sequence, 256].

    python3 build_model.py                        # writes dynamic_identity.onnx
    python3 build_model.py --model convnet        # writes dynamic_convnet.onnx (28 MB)
    python3 build_model.py --model transformer    # writes dynamic_transformer.onnx (14 MB)
    python3 build_model.py --output m.onnx
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from dynamic_shapes import cli
from dynamic_shapes.files import write_atomically
from scenario import (
    ATTENTION_MASK_NAME,
    HIDDEN_SIZE,
    HIDDEN_STATES_NAME,
    IMAGE_SHAPE,
    INPUT_NAME,
    MAX_SEQUENCE,
    MODELS,
    OUTPUT_NAME,
    TOKEN_IDS_NAME,
    TRANSFORMER_PATH,
    VOCABULARY_SIZE,
)

# Opset 17 with IR version 8 is the newest pair TensorRT 8.6's ONNX parser accepts, and
# TensorRT 10 and 11 accept it too. Pinning both (rather than taking whatever the
# installed onnx defaults to) also keeps the file byte-identical across onnx versions.
OPSET = 17
IR_VERSION = 8


def make_model() -> onnx.ModelProto:
    """Returns the identity model, checked, without writing anything."""
    X = gs.Variable(INPUT_NAME, dtype=np.float32, shape=("batch", *IMAGE_SHAPE))
    Y = gs.Variable(OUTPUT_NAME, dtype=np.float32, shape=("batch", *IMAGE_SHAPE))
    node = gs.Node(op="Identity", inputs=[X], outputs=[Y])
    graph = gs.Graph(nodes=[node], inputs=[X], outputs=[Y], name="dynamic_identity", opset=OPSET)

    model = gs.export_onnx(graph)
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


# The compute-heavy network: (output channels, stride) of each 3x3 convolution, each followed
# by a ReLU; the strides halve the image three times (28, 14, 7, 4), as in a small ResNet.
CONVNET_LAYERS = [(64, 1), (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1),
                  (512, 1)]  # fmt: skip
CONVNET_CLASSES = 10
CONVNET_SEED = 0


def make_convnet() -> onnx.ModelProto:
    """Returns the compute-heavy network, checked, with seeded weights: the same bytes on
    every run."""
    rng = np.random.default_rng(CONVNET_SEED)
    X = gs.Variable(INPUT_NAME, dtype=np.float32, shape=("batch", *IMAGE_SHAPE))
    graph = gs.Graph(inputs=[X], name="dynamic_convnet", opset=OPSET)

    def layer(op, inputs, **attrs):
        return graph.layer(op=op, inputs=inputs, outputs=[f"{op}_{len(graph.nodes)}"], attrs=attrs)[
            0
        ]

    def weights(*shape, fan_in):
        # He initialization: activations keep their scale through the ReLUs.
        scale = np.float32(np.sqrt(2.0 / fan_in))
        return gs.Constant(f"w{len(graph.nodes)}", rng.standard_normal(shape, np.float32) * scale)

    tensor, channels = X, IMAGE_SHAPE[0]
    for out_channels, stride in CONVNET_LAYERS:
        kernel = weights(out_channels, channels, 3, 3, fan_in=channels * 9)
        bias = gs.Constant(f"b{len(graph.nodes)}", np.zeros(out_channels, np.float32))
        tensor = layer("Conv", [tensor, kernel, bias], pads=[1, 1, 1, 1], strides=[stride] * 2)
        tensor = layer("Relu", [tensor])
        channels = out_channels
    tensor = layer("Flatten", [layer("GlobalAveragePool", [tensor])])
    fully_connected = weights(CONVNET_CLASSES, channels, fan_in=channels)
    bias = gs.Constant("b_out", np.zeros(CONVNET_CLASSES, np.float32))
    Y = gs.Variable(OUTPUT_NAME, dtype=np.float32, shape=("batch", CONVNET_CLASSES))
    graph.nodes.append(gs.Node("Gemm", inputs=[tensor, fully_connected, bias], outputs=[Y],
                               attrs={"transB": 1}))  # fmt: skip
    graph.outputs = [Y]

    model = gs.export_onnx(graph)
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


# The transformer: a small BERT-like encoder (BERT-base is 12 layers of 12 heads over 768), large
# enough that its latency at 512 tokens is many times that at a few, small enough to build fast.
TRANSFORMER_LAYERS = 4
TRANSFORMER_HEADS = 4
TRANSFORMER_MLP_SIZE = 4 * HIDDEN_SIZE
TRANSFORMER_SEED = 0
# Added to the attention scores of the padding keys. exp(-1e4) is exactly 0 in float32 (and in
# float16, which holds -1e4), so padding gets no attention at all and a padded sequence's tokens
# come out as the unpadded sequence's. Not -inf: a row of padding queries, whose keys may all be
# masked, would then be softmax(-inf, ..., -inf) = NaN, and a NaN key poisons every query.
MASKED_SCORE = -1e4


def make_transformer() -> onnx.ModelProto:
    """Returns the transformer, checked, with seeded weights: the same bytes on every run."""
    rng = np.random.default_rng(TRANSFORMER_SEED)
    # The mask is int32, as tokenizers give it (0 or 1 integers, int64 narrowed to int32 like the
    # token ids, since TensorRT 8.6 takes no int64 input): a float mask would invite passing an
    # additive bias (0 and -inf) where this model expects 1 and 0, and be misread without error.
    ids = gs.Variable(TOKEN_IDS_NAME, dtype=np.int32, shape=("batch", "sequence"))
    mask = gs.Variable(ATTENTION_MASK_NAME, dtype=np.int32, shape=("batch", "sequence"))
    graph = gs.Graph(inputs=[ids, mask], name="dynamic_transformer", opset=OPSET)

    def layer(op, *inputs, **attrs):
        return graph.layer(op=op, inputs=inputs, outputs=[f"{op}_{len(graph.nodes)}"], attrs=attrs)[
            0
        ]

    def constant(name, values, dtype=np.float32):
        return gs.Constant(name, np.asarray(values, dtype))

    def linear(x, name, inputs, outputs):
        # Weights scaled by 1/sqrt(fan-in): activations keep their scale, and the attention
        # scores are of order 1, so that attention is far from uniform and padding would show.
        scale = np.float32(1 / np.sqrt(inputs))
        weight = rng.standard_normal((inputs, outputs), np.float32) * scale
        bias = rng.standard_normal(outputs, np.float32) * np.float32(0.1)
        return layer("Add", layer("MatMul", x, constant(f"{name}.weight", weight)),
                     constant(f"{name}.bias", bias))  # fmt: skip

    def layer_norm(x, name):
        scale, bias = np.ones(HIDDEN_SIZE), np.zeros(HIDDEN_SIZE)
        return layer("LayerNormalization", x, constant(f"{name}.scale", scale),
                     constant(f"{name}.bias", bias), axis=-1, epsilon=1e-5)  # fmt: skip

    head_size = HIDDEN_SIZE // TRANSFORMER_HEADS
    # [batch, sequence, hidden] <-> [batch, heads, sequence, head_size]; 0 keeps a dimension.
    split_heads = constant("split_heads", [0, 0, TRANSFORMER_HEADS, head_size], np.int64)
    merge_heads = constant("merge_heads", [0, 0, HIDDEN_SIZE], np.int64)

    def attention(x, key_bias, name):
        query, key, value = (
            layer("Reshape", linear(x, f"{name}.{part}", HIDDEN_SIZE, HIDDEN_SIZE), split_heads)
            for part in ("query", "key", "value")
        )
        scores = layer("MatMul", layer("Transpose", query, perm=[0, 2, 1, 3]),
                       layer("Transpose", key, perm=[0, 2, 3, 1]))  # fmt: skip
        scores = layer("Mul", scores, constant(f"{name}.scale", 1 / np.sqrt(head_size)))
        weights = layer("Softmax", layer("Add", scores, key_bias), axis=-1)
        context = layer("MatMul", weights, layer("Transpose", value, perm=[0, 2, 1, 3]))
        context = layer("Reshape", layer("Transpose", context, perm=[0, 2, 1, 3]), merge_heads)
        return linear(context, f"{name}.output", HIDDEN_SIZE, HIDDEN_SIZE)

    sqrt2, half, one = constant("sqrt2", np.sqrt(2)), constant("half", 0.5), constant("one", 1)

    def mlp(x, name):
        x = linear(x, f"{name}.up", HIDDEN_SIZE, TRANSFORMER_MLP_SIZE)
        # GELU, exact: opset 17 has no Gelu operator; TensorRT fuses these pointwise operations.
        gelu = layer(
            "Mul", layer("Mul", x, half), layer("Add", layer("Erf", layer("Div", x, sqrt2)), one)
        )
        return linear(gelu, f"{name}.down", TRANSFORMER_MLP_SIZE, HIDDEN_SIZE)

    # Token embeddings (Gather takes the int32 ids as they are) plus learned position embeddings,
    # the first `sequence` rows of a table of MAX_SEQUENCE: Shape and Slice, so that the sequence
    # length is free up to MAX_SEQUENCE.
    tokens = rng.standard_normal((VOCABULARY_SIZE, HIDDEN_SIZE), np.float32)
    positions = rng.standard_normal((MAX_SEQUENCE, HIDDEN_SIZE), np.float32)
    zero = constant("zero_index", [0], np.int64)
    one_index, two_index = (
        constant("one_index", [1], np.int64),
        constant("two_index", [2], np.int64),
    )
    sequence = layer("Slice", layer("Shape", ids), one_index, two_index)
    position = layer("Slice", constant("position_embeddings", positions), zero, sequence, zero)
    x = layer("Add", layer("Gather", constant("token_embeddings", tokens), ids, axis=0), position)

    # The mask as a bias on the keys' scores: 0 for a token, MASKED_SCORE for padding, shaped
    # [batch, 1 (heads), 1 (queries), sequence (keys)] to broadcast over heads and queries.
    padding = layer("Sub", one, layer("Cast", mask, to=onnx.TensorProto.FLOAT))
    key_bias = layer("Mul", padding, constant("masked_score", MASKED_SCORE))
    key_bias = layer("Unsqueeze", key_bias, constant("head_and_query_axes", [1, 2], np.int64))

    # Pre-norm layers (as in GPT-2 and many models since): each sublayer adds to a residual stream
    # that no normalization rescales, which keeps seeded random weights well-behaved through every
    # layer; one normalization at the end gives outputs of order 1.
    for index in range(TRANSFORMER_LAYERS):
        name = f"layer{index}"
        x = layer(
            "Add",
            x,
            attention(layer_norm(x, f"{name}.attention_norm"), key_bias, f"{name}.attention"),
        )
        x = layer("Add", x, mlp(layer_norm(x, f"{name}.mlp_norm"), f"{name}.mlp"))
    states = layer_norm(x, "final_norm")
    states.name, states.dtype = HIDDEN_STATES_NAME, np.float32
    states.shape = ("batch", "sequence", HIDDEN_SIZE)
    graph.outputs = [states]

    model = gs.export_onnx(graph)
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


BUILDERS = {"identity": make_model, "convnet": make_convnet, "transformer": make_transformer}
# Where each model is written unless --output says otherwise.
DEFAULT_PATHS = {**MODELS, "transformer": TRANSFORMER_PATH}


def write_model(name, path) -> None:
    write_atomically(path, BUILDERS[name]().SerializeToString())


def ensure_model(path) -> None:
    """Writes a model the scripts know by name when `path` is where they expect it and it is
    missing; a model the user named is theirs to provide."""
    for name, model_path in MODELS.items():
        if path == model_path and not path.exists():
            write_model(name, path)


def model_output(text) -> Path:
    """Where a model may be written: a writable path where nothing is, or an ONNX model, which
    is replaced; never another file (a README, an engine) that happens to be named."""
    path = cli.output_file(text)
    if path.exists():
        try:
            existing = onnx.load_model(str(path), load_external_data=False)
        except Exception:  # any file protobuf cannot read as a model
            existing = None
        if existing is None or not existing.graph.node:
            raise argparse.ArgumentTypeError(
                f"{path} exists and is not an ONNX model; refusing to overwrite it: name "
                "another path"
            )
    return path


def parse_args(argv=None):
    parser = cli.make_parser(__file__, __doc__)
    parser.add_argument(
        "--model", choices=list(BUILDERS), default="identity", help="which model (%(default)s)"
    )
    parser.add_argument(
        "--output",
        type=model_output,
        help="where to write the model: a new file, or an ONNX model, which is replaced "
        "(default: dynamic_<model>.onnx here)",
    )
    args = parser.parse_args(argv)
    args.output = args.output or DEFAULT_PATHS[args.model]
    return args


def run(args) -> None:
    write_model(args.model, args.output)
    print(f"Wrote {args.output}")


def main(argv=None) -> int:
    return cli.main(parse_args, run, argv)


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""
Writes dynamic_identity.onnx: an identity network whose batch dimension is dynamic.

Input `X` is float32 [batch, 3, 28, 28] where `batch` is a named dynamic dimension; one
Identity node copies it to output `Y`. An identity model makes every inference result
checkable exactly: the output must equal the input bit for bit.

With --model convnet, writes dynamic_convnet.onnx instead: a compute-heavy network with the
same input, whose kernels (unlike the identity's) depend on the batch size and need activation
memory, so that every trade-off of the walkthrough shows. Its output `Y` is float32 [batch, 10].

    python3 build_model.py                    # writes dynamic_identity.onnx
    python3 build_model.py --model convnet    # writes dynamic_convnet.onnx (28 MB)
    python3 build_model.py --output m.onnx
"""

import sys

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from dynamic_shapes import cli
from dynamic_shapes.files import write_atomically
from scenario import IMAGE_SHAPE, INPUT_NAME, MODELS, OUTPUT_NAME

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


BUILDERS = {"identity": make_model, "convnet": make_convnet}


def write_model(name, path) -> None:
    write_atomically(path, BUILDERS[name]().SerializeToString())


def ensure_model(path) -> None:
    """Writes a model the scripts know by name when `path` is where they expect it and it is
    missing; a model the user named is theirs to provide."""
    for name, model_path in MODELS.items():
        if path == model_path and not path.exists():
            write_model(name, path)


def parse_args(argv=None):
    parser = cli.make_parser(__file__, __doc__)
    parser.add_argument(
        "--model", choices=list(BUILDERS), default="identity", help="which model (%(default)s)"
    )
    parser.add_argument(
        "--output",
        type=cli.output_file,
        help="where to write the model (default: dynamic_<model>.onnx here)",
    )
    args = parser.parse_args(argv)
    args.output = args.output or MODELS[args.model]
    return args


def main(argv=None) -> int:
    args = parse_args(argv)

    def work():
        write_model(args.model, args.output)
        print(f"Wrote {args.output}")

    return cli.run(args, work)


if __name__ == "__main__":
    sys.exit(main())

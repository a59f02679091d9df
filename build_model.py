#!/usr/bin/env python3
"""
Writes dynamic_identity.onnx: an identity network whose batch dimension is dynamic.

Input `X` is float32 [batch, 3, 28, 28] where `batch` is a named dynamic dimension; one
Identity node copies it to output `Y`. An identity model makes every inference result
checkable exactly: the output must equal the input bit for bit.

    python3 build_model.py                 # writes dynamic_identity.onnx
    python3 build_model.py --output m.onnx
"""

import sys

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from dynamic_shapes import cli
from dynamic_shapes.files import write_atomically
from scenario import IMAGE_SHAPE, INPUT_NAME, MODEL_PATH, OUTPUT_NAME

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


def write_model(path) -> None:
    write_atomically(path, make_model().SerializeToString())


def ensure_model(path) -> None:
    """Writes the model to `path` when that is where the scripts expect it by default and it
    is missing; a model the user named is theirs to provide."""
    if path == MODEL_PATH and not path.exists():
        write_model(path)


def parse_args(argv=None):
    parser = cli.make_parser(__file__, __doc__)
    parser.add_argument(
        "--output",
        type=cli.output_file,
        default=MODEL_PATH,
        help="where to write the model (default: %(default)s)",
    )
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)

    def work():
        write_model(args.output)
        print(f"Wrote {args.output}")

    return cli.run(args, work)


if __name__ == "__main__":
    sys.exit(main())

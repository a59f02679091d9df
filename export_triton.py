#!/usr/bin/env python3
"""
Writes a model repository for Triton Inference Server's TensorRT backend from a saved engine
and the record beside it (see example.py): a model that serves every batch from 1 to 32 through
Triton's dynamic batcher, and one that serves every batch some profile accepts, one request a
batch. dynamic_shapes/triton.py says why there are two.

    python3 export_triton.py                          # dynamic_identity.engine -> triton_tensorrt/
    python3 export_triton.py --engine m.engine --model m.onnx --output repo/ --name m

Needs no GPU: the profiles come from the engine's record, the tensors from the ONNX model it was
built from. Triton must run the same TensorRT version the engine was built with (the config
says which), on the same GPU model.
"""

import sys

from dynamic_shapes import cli, options
from dynamic_shapes.engines import read_record
from dynamic_shapes.onnx_inputs import read_model_input, read_model_outputs
from dynamic_shapes.triton import (
    batch_ranges_of,
    check_built_from,
    replace_repository,
    tensorrt_configs,
    write_tensorrt_repository,
)
from scenario import ENGINE_PATH, MODEL_PATH


def parse_args(argv=None):
    parser = cli.make_parser(__file__, __doc__)
    options.add_engine(parser, ENGINE_PATH, "the saved engine (%(default)s)", built=False)
    options.add_model_file(
        parser, MODEL_PATH, "the ONNX model the engine was built from (%(default)s)"
    )
    parser.add_argument(
        "--output",
        type=options.repository,
        default="triton_tensorrt",
        help="the repository folder to write: new, empty, or one this script or serve.py "
        "wrote, which is replaced (%(default)s)",
    )
    options.add_model_name(parser)
    options.add_max_queue_delay(parser)
    args = parser.parse_args(argv)
    options.check_model_name(parser, args)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    return cli.run(args, lambda: export(args))


def export(args) -> None:
    record = read_record(args.engine)
    inputs, outputs = [read_model_input(args.model)], read_model_outputs(args.model)
    check_built_from(args.engine, record, args.model)
    configs = tensorrt_configs(
        args.name, batch_ranges_of(record), inputs, outputs, args.max_queue_delay_us
    )
    replace_repository(args.output, "export_triton.py")
    comment = (
        f"Written by export_triton.py for {args.engine.name}, built by TensorRT "
        f"{record['tensorrt']} for {record['gpu']}:\nTriton must run that TensorRT version."
    )
    written = write_tensorrt_repository(args.output, args.engine.read_bytes(), configs, comment)
    for path in written:
        print(f"Wrote {path}")


if __name__ == "__main__":
    sys.exit(main())

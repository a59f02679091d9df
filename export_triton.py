#!/usr/bin/env python3
"""
Writes a model repository for Triton Inference Server's TensorRT backend from a saved engine
and the record beside it (see example.py): a model that serves every batch from 1 to 32 through
Triton's dynamic batcher, and one that serves every batch some profile accepts, one request a
batch. dynamic_shapes/triton.py says why there are two, and which CUDA graphs each captures.

    python3 export_triton.py                          # dynamic_identity.engine -> triton_tensorrt/
    python3 export_triton.py --engine m.engine --model m.onnx --output repo/ --name m
    python3 export_triton.py --server-tensorrt 8.6.1 --instances 2

Needs no GPU: the profiles come from the engine's record, the tensors from the ONNX model it was
built from. Triton must run the same TensorRT version the engine was built with (the config
says which; --server-tensorrt checks it), on the same GPU model.
"""

import re
import sys

from dynamic_shapes import cli, options
from dynamic_shapes.engines import read_record
from dynamic_shapes.triton import (
    check_server_tensorrt,
    export_tensorrt_repository,
)
from scenario import ENGINE_PATH, MODEL_PATH

TENSORRT_VERSION = re.compile(r"\d+\.\d+\.\d+(\.\d+)?")


def tensorrt_version(text) -> str:
    if not TENSORRT_VERSION.fullmatch(text):
        raise ValueError(f"{text!r} is not a TensorRT version such as 8.6.1 or 10.0.1.6")
    return text


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
    options.add_instances(
        parser,
        1,
        "model instances on each GPU, a context per listed profile each: Triton runs that many "
        "batches at once (%(default)s)",
    )
    options.add_no_dynamic_batching(
        parser, "serve each request to the batched model as it comes, for comparison"
    )
    options.add_no_cuda_graphs(parser, "capture no CUDA graph, for comparison")
    parser.add_argument(
        "--server-tensorrt",
        type=cli.checked(tensorrt_version),
        metavar="VERSION",
        help="the TensorRT version of the server that will serve the repository (its container "
        "release says which): an engine built by another is refused",
    )
    args = parser.parse_args(argv)
    options.check_queue_delay(parser, args)
    options.check_model_name(parser, args)
    if args.server_tensorrt:
        try:
            record = read_record(args.engine)
        except ValueError:
            record = None  # export() says what is wrong with the engine, as without the option
        if record is not None:
            try:
                check_server_tensorrt(args.engine, record, args.server_tensorrt)
            except ValueError as error:
                parser.error(f"argument --server-tensorrt: {error}")
    return args


def main(argv=None) -> int:
    return cli.main(parse_args, export, argv)


def export(args) -> None:
    written = export_tensorrt_repository(
        args.output, args.engine, args.model, args.name, "export_triton.py",
        queue_delay_us=args.max_queue_delay_us, instances=args.instances,
        dynamic_batching=not args.no_dynamic_batching, cuda_graphs=not args.no_cuda_graphs,
    )  # fmt: skip
    for path in written:
        print(f"Wrote {path}")


if __name__ == "__main__":
    sys.exit(main())

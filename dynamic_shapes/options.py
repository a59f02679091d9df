"""The options several scripts take, declared once: the engine and the model it is built from, a
Triton server's host, ports and model name, the batching, instance and CUDA graph fields of its
model configuration, report files, and the counts that --quick makes smaller.

Each script passes in what its use of an option decides (the default, which comes from the
scenario, and the help text that says what the option means there); the type, and with it
every check and message, comes from here. A check that needs several options at once is a
function the script calls after parsing, in the order it wants its errors reported.
"""

import argparse
from pathlib import Path

from dynamic_shapes import cli
from dynamic_shapes.triton import (
    DEFAULT_QUEUE_DELAY_US,
    INT32_MAX,
    UINT64_MAX,
    model_name_for,
    repository_folder,
)

# Triton's own ports: serve.py listens on them, loadgen.py sends to them.
TRITON_PORTS = {"--http-port": 8000, "--grpc-port": 8001, "--metrics-port": 8002}
LOCALHOST = "127.0.0.1"

# A field of Triton's model configuration that is an int32 and at least 1 (max_batch_size, an
# instance group's count): refused at parse time rather than by the server.
triton_int32 = cli.integer_in(1, INT32_MAX)

# A model repository folder: new, empty, or one the project wrote (it is replaced).
repository = cli.checked(repository_folder)


# The engine, and the model it is built from


def add_model_file(parser, default, help) -> None:
    """--model: the ONNX model an engine is built from."""
    parser.add_argument("--model", type=Path, default=default, help=help)


def add_engine(parser, default, help, *, built: bool) -> None:
    """--engine: an engine the script reads, or, `built`, one it builds and saves there when
    it is missing or stale; the path is then checked at once (a writable file, not a folder),
    and check_engine refuses what the script may not write over."""
    parser.add_argument(
        "--engine", type=cli.output_file if built else Path, default=default, help=help
    )


def check_engine(parser, engine, model) -> None:
    """Refuses, as a bad argument (exit 2), an --engine path the project may not write an
    engine built from `model` to: the model itself, or a file the project did not save."""
    from dynamic_shapes.engines import check_engine_destination

    try:
        check_engine_destination(engine, model)
    except ValueError as error:
        parser.error(f"argument --engine: {error}")


# A Triton server and its model


def add_host(parser, help) -> None:
    """--host: the address a server listens on or is reached at; it becomes part of URLs."""
    parser.add_argument("--host", type=cli.host, default=LOCALHOST, help=help)


def add_ports(parser, flags) -> None:
    """A Triton server's ports, in the order `flags` names them (see TRITON_PORTS), each with
    Triton's default; check_ports refuses two alike."""
    for flag in flags:
        parser.add_argument(flag, type=cli.port, default=TRITON_PORTS[flag], help="(%(default)s)")


def check_ports(parser, args, flags) -> None:
    """Refuses, as a bad argument, two of `flags` (port options) given the same port: one
    server cannot listen on one port twice."""
    seen = {}
    for flag in flags:
        value = getattr(args, flag.lstrip("-").replace("-", "_"))
        if value in seen:
            parser.error(f"argument {flag}: {value} is the port of {seen[value]} too")
        seen[value] = flag


def add_model_name(parser) -> None:
    """--name: the model's name in Triton; check_model_name gives it its default."""
    parser.add_argument(
        "--name",
        help="the model's name in Triton (default: the engine's stem): letters, digits, '_', "
        "'.' and '-'",
    )


def check_model_name(parser, args) -> None:
    """Sets args.name to the model's name, --name or the engine's stem, or refuses one that
    cannot name a folder of the repository and a part of a URL."""
    try:
        args.name = model_name_for(args.name, args.engine)
    except ValueError as error:
        parser.error(f"argument --name: {error}")


def add_max_queue_delay(parser) -> None:
    """--max-queue-delay-us: the dynamic batcher's max_queue_delay_microseconds, a uint64;
    check_queue_delay fills in the default once it knows whether the batcher is on."""
    parser.add_argument(
        "--max-queue-delay-us",
        type=cli.integer_in(0, UINT64_MAX),
        help="how long the dynamic batcher may hold a request to gather a batch "
        f"({DEFAULT_QUEUE_DELAY_US})",
    )


def check_queue_delay(parser, args) -> None:
    """Refuses a queue delay given with --no-dynamic-batching, which has no batcher for it to
    configure, whatever its value; otherwise fills in the default."""
    if args.no_dynamic_batching and args.max_queue_delay_us is not None:
        parser.error("--max-queue-delay-us configures the dynamic batcher; drop one of them")
    if args.max_queue_delay_us is None:
        args.max_queue_delay_us = DEFAULT_QUEUE_DELAY_US


def add_no_dynamic_batching(parser, help) -> None:
    """--no-dynamic-batching: a model configuration without the dynamic batcher, each request
    served as it comes; check_queue_delay refuses a queue delay beside it."""
    parser.add_argument("--no-dynamic-batching", action="store_true", help=help)


def add_instances(parser, default, help) -> None:
    """--instances: the count of the model's instance group on each GPU, an int32 field."""
    parser.add_argument("--instances", type=triton_int32, default=default, help=help)


def add_no_cuda_graphs(parser, help) -> None:
    """--no-cuda-graphs: a TensorRT backend's model configuration that captures no CUDA graph."""
    parser.add_argument("--no-cuda-graphs", action="store_true", help=help)


def add_contexts_per_profile(parser, default, help) -> None:
    """--contexts-per-profile: how many execution contexts serve each profile."""
    parser.add_argument("--contexts-per-profile", type=cli.positive, default=default, help=help)


def batch_sizes(most=None, *, may_be_empty=False):
    """An argument type for comma-separated batch sizes, each 1 or more (and `most` or less,
    where given), as a tuple. With `may_be_empty`, empty items are passed over, so that ''
    names no batch size at all."""

    def sizes(text) -> tuple:
        try:
            values = tuple(int(part) for part in text.split(",") if part or not may_be_empty)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"not a comma-separated list of integers: {text!r}"
            ) from None
        if any(value < 1 for value in values):
            raise argparse.ArgumentTypeError(f"batch sizes must be 1 or more: {text!r}")
        if most is not None and any(value > most for value in values):
            raise argparse.ArgumentTypeError(f"batch sizes must be {most} or less: {text!r}")
        return values

    return sizes


# Reports


def add_json(parser, help, default=None) -> None:
    """--json: where a script writes its figures; checked writable before any work."""
    parser.add_argument("--json", type=cli.output_file, default=default, help=help)


# Counts, and --quick


def add_quick(parser, help) -> None:
    """--quick: smaller counts; those given explicitly are kept (see fill_counts)."""
    parser.add_argument("--quick", action="store_true", help=help)


def fill_counts(args, counts: dict, quick_counts: dict) -> None:
    """Gives each count in `counts` (an option whose default is None) that was not given its
    value: `quick_counts`' with --quick, else `counts`'. A count given explicitly wins over
    --quick's, which wins over the default."""
    for name, default in (quick_counts if args.quick else counts).items():
        if getattr(args, name) is None:
            setattr(args, name, default)

"""A workload's requests made for the model they are replayed on: the model's inputs read from
its ONNX file, the workload checked against them, and one request of random arrays per distinct
shape.

The dtypes are the model's inputs', floats standard normal, integers uniform within a range per
input (token ids must stay within the vocabulary; 0..99 unless the caller says otherwise),
booleans 0 or 1."""

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from dynamic_shapes.planner.workloads import describe_key

# Integer inputs take values in this range, both ends included, unless the caller gives one.
DEFAULT_VALUE_RANGE = (0, 99)


# The model


def read_input_dtypes(model_path) -> dict:
    """{input name: NumPy dtype} of an ONNX model's inputs (initializers aside), in order."""
    from dynamic_shapes.onnx_inputs import load_graph, tensor_dtype

    path, model = Path(model_path), load_graph(model_path)
    initializers = {init.name for init in model.graph.initializer}
    return {
        tensor.name: tensor_dtype(tensor, path, "input")
        for tensor in model.graph.input
        if tensor.name not in initializers
    }


def is_identity(model_path) -> bool:
    """Whether the model's graph only passes its inputs through (Identity nodes alone, or none):
    then its outputs are checked bit for bit."""
    from dynamic_shapes.onnx_inputs import load_graph

    graph = load_graph(model_path).graph
    return all(node.op_type == "Identity" for node in graph.node)


def check_workload_fits_model(histogram: Mapping, model_path) -> None:
    """ValueError unless every request of the workload gives the model's inputs, each at its
    rank and fixed sizes: a workload recorded from another model cannot be replayed on this
    one."""
    from dynamic_shapes.onnx_inputs import read_input_dimensions
    from dynamic_shapes.profiles import describe

    inputs = read_input_dimensions(model_path)
    for key in histogram:
        shapes = dict(key)
        if set(shapes) != set(inputs):
            raise ValueError(
                f"the workload's requests give inputs {sorted(shapes)}, but {model_path} takes "
                f"{sorted(inputs)}; plan with a workload recorded for this model"
            )
        for name, shape in shapes.items():
            dims = inputs[name]
            if len(shape) != len(dims) or any(
                fixed is not None and size != fixed for size, fixed in zip(shape, dims, strict=True)
            ):
                raise ValueError(
                    f"the workload's request {describe_key(key)} does not fit {model_path}, "
                    f"whose input {name} is {describe(dims)}"
                )


# The requests


def parse_value_range(text: str) -> tuple:
    """('input_ids', (0, 999)) for 'input_ids:0..999'; ValueError says the syntax."""
    name, _, span = text.rpartition(":")
    low, dots, high = span.partition("..")
    try:
        values = (int(low), int(high))
    except ValueError:
        values = None
    if not name or not dots or values is None or values[0] > values[1]:
        raise ValueError(
            f"{text!r} is not NAME:LOW..HIGH with integers LOW <= HIGH, e.g. input_ids:0..999"
        )
    return name, values


def check_value_ranges(value_ranges: Mapping, dtypes: Mapping, model_path) -> None:
    """ValueError unless each range names an integer input of the model and fits its dtype."""
    for name, (low, high) in value_ranges.items():
        dtype = dtypes.get(name)
        if dtype is None or not np.issubdtype(dtype, np.integer):
            integers = [n for n, d in dtypes.items() if np.issubdtype(d, np.integer)]
            has = f"its integer inputs are {integers}" if integers else "it has none"
            raise ValueError(f"{name} is not an integer input of {model_path}; {has}")
        info = np.iinfo(dtype)
        if low < info.min or high > info.max:
            raise ValueError(f"{name}: {low}..{high} does not fit its dtype {dtype}")


def make_request(key: tuple, dtypes: Mapping, value_ranges: Mapping, seed: int) -> dict:
    """{input name: array} of the shapes of `key`, random: floats standard normal, integers
    uniform within the input's range (DEFAULT_VALUE_RANGE unless given), booleans 0 or 1.
    Random values, unlike zeros, expose misplaced or stale data."""
    rng = np.random.default_rng(seed)
    request = {}
    for name, shape in key:
        dtype = np.dtype(dtypes[name])
        if np.issubdtype(dtype, np.floating):
            array = rng.standard_normal(shape, dtype=np.float32).astype(dtype, copy=False)
        elif dtype == np.bool_:
            array = rng.integers(0, 2, shape).astype(np.bool_)
        elif np.issubdtype(dtype, np.integer):
            low, high = value_ranges.get(name, DEFAULT_VALUE_RANGE)
            array = rng.integers(low, high, shape, dtype=np.int64, endpoint=True).astype(dtype)
        else:
            raise ValueError(f"input {name} has dtype {dtype}; a replay makes numbers or booleans")
        request[name] = array
    return request


def make_requests(histogram: Mapping, dtypes: Mapping, value_ranges=None, seed: int = 0) -> dict:
    """{shape key: request} with one request per distinct shape, each with a seed of its own:
    every request of a shape is served the same arrays, in every candidate's replay."""
    return {
        key: make_request(key, dtypes, value_ranges or {}, seed + index)
        for index, key in enumerate(histogram)
    }

"""What an ONNX model's inputs and outputs look like: for serving, one input, each tensor with a
dynamic batch first and fixed dimensions after it; for profiles, every input's dimensions, fixed or
dynamic. Read from the file alone; nothing is built or run."""

from pathlib import Path

import numpy as np

from dynamic_shapes.tensors import TensorSpec


def read_model_input(model_path) -> TensorSpec:
    """The one input of an ONNX model, whose first dimension must be a dynamic batch and the
    others fixed; ValueError says what does not fit."""
    path, model = Path(model_path), load_graph(model_path)
    initializers = {init.name for init in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        names = [i.name for i in inputs]
        raise ValueError(f"{path} has {len(inputs)} inputs {names}; one is needed")
    (tensor,) = inputs
    return tensor_spec(tensor, path, "input")


def read_model_outputs(model_path) -> list:
    """The outputs of an ONNX model, each with a dynamic batch first and fixed dimensions after
    it; ValueError says what does not fit."""
    path = Path(model_path)
    return [tensor_spec(tensor, path, "output") for tensor in load_graph(model_path).graph.output]


def load_graph(model_path):
    """The ONNX model at `model_path`, without its external weights; ValueError unless the file
    holds one."""
    import onnx

    path = Path(model_path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder, not an ONNX model")
    if not path.is_file():
        raise ValueError(f"no model at {path}")
    if path.stat().st_size == 0:
        raise ValueError(f"{path} is empty, not an ONNX model")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as error:  # protobuf's DecodeError and others: not ONNX, or cut short
        raise ValueError(f"{path} is not an ONNX model, or is truncated ({error})") from error
    # Protobuf parses many byte strings into some message; an ONNX model has a graph.
    if not model.HasField("graph"):
        raise ValueError(f"{path} is not an ONNX model: it holds no graph")
    return model


def tensor_spec(tensor, path, role, dynamic=False) -> TensorSpec:
    shape = item_shape(tensor, path, role, dynamic)
    return TensorSpec(tensor.name, tensor_dtype(tensor, path, role), shape)


def read_model_tensors(model_path) -> tuple[list, list]:
    """Every input (its initializers aside) and output of an ONNX model, each with a dynamic
    batch first; dimensions after it that are dynamic too are -1, as Triton's configs write
    them. ValueError says what does not fit."""
    path, model = Path(model_path), load_graph(model_path)
    initializers = {init.name for init in model.graph.initializer}
    inputs = [
        tensor_spec(tensor, path, "input", dynamic=True)
        for tensor in model.graph.input
        if tensor.name not in initializers
    ]
    outputs = [tensor_spec(tensor, path, "output", dynamic=True) for tensor in model.graph.output]
    return inputs, outputs


def item_shape(tensor, path, role, dynamic=False) -> tuple:
    """The dimensions after the dynamic batch dimension of an input or output: fixed, or with
    `dynamic`, -1 where dynamic."""
    where = f"{role} {tensor.name} of {path}"
    if not tensor.type.tensor_type.HasField("shape"):
        raise ValueError(
            f"{where} has no shape; export the model with input shapes, a dynamic batch first"
        )
    dims = tensor.type.tensor_type.shape.dim
    if not dims:
        raise ValueError(f"{where} is a scalar; a first, dynamic batch dimension is needed")
    if dims[0].HasField("dim_value") and dims[0].dim_value > 0:
        raise ValueError(
            f"{where} has a fixed first dimension ({dims[0].dim_value}); a dynamic batch "
            "dimension is needed there (export the model with a dynamic axis)"
        )
    if dynamic:
        return tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else -1
                     for d in dims[1:])  # fmt: skip
    if any(not d.HasField("dim_value") or d.dim_value <= 0 for d in dims[1:]):
        raise ValueError(
            f"{where} has dynamic dimensions after the batch "
            f"({[d.dim_param or d.dim_value for d in dims]}); only the batch may be dynamic"
        )
    return tuple(d.dim_value for d in dims[1:])


def tensor_dtype(tensor, path, role) -> np.dtype:
    import onnx

    try:
        return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.type.tensor_type.elem_type))
    except (KeyError, TypeError):
        raise ValueError(
            f"{role} {tensor.name} of {path} has element type "
            f"{tensor.type.tensor_type.elem_type}, which has no NumPy dtype"
        ) from None


def read_input_dimensions(model_path) -> dict:
    """Every input of an ONNX model (its initializers aside) and its dimensions, in order: {name:
    [size, ...]} with None for a dynamic dimension, named or not, and the size for a fixed one;
    ValueError where the file holds no model or an input has no shape."""
    path, model = Path(model_path), load_graph(model_path)
    initializers = {init.name for init in model.graph.initializer}
    inputs = {}
    for tensor in model.graph.input:
        if tensor.name in initializers:
            continue
        if not tensor.type.tensor_type.HasField("shape"):
            raise ValueError(
                f"input {tensor.name} of {path} has no shape; export the model with input shapes"
            )
        inputs[tensor.name] = [
            d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
            for d in tensor.type.tensor_type.shape.dim
        ]
    return inputs

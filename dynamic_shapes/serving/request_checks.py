"""A request's arrays (or its `out`) checked against the engine's tensors before TensorRT sees
them, and where each host array lives: page-locked, copied straight to the GPU, or pageable,
staged."""

from collections.abc import Mapping
from numbers import Integral

import numpy as np

from dynamic_shapes.arrays import PAGE_LOCKED, PAGEABLE, Tensor, describe
from dynamic_shapes.gpu import page_locked_address
from dynamic_shapes.tensors import TensorSpec


def check_tensor(value, spec: TensorSpec, what: str, writable=False) -> Tensor:
    """The Tensor for one array of a request or its `out`, or ValueError saying what was
    expected. Nothing is converted: a wrong dtype is refused, not cast."""
    if type(value) is np.ndarray and (not writable or value.flags.writeable):
        shape = value.shape  # the common case, a fitting NumPy array, checked at once
        if value.dtype == spec.dtype and shape[1:] == spec.item_shape and shape and shape[0]:
            return Tensor(shape, value.dtype, host=value)
    tensor = describe(value, what, writable)
    if tensor.dtype != spec.dtype:
        raise ValueError(
            f"expected {spec.describe()}, got dtype {tensor.dtype}; "
            f"convert it first, e.g. with .astype(np.{spec.dtype})"
        )
    if len(tensor.shape) != 1 + len(spec.item_shape) or tensor.shape[1:] != spec.item_shape:
        raise ValueError(f"expected {spec.describe()}, got shape {tensor.shape}")
    if tensor.shape[0] < 1:
        raise ValueError(f"a request needs at least one image, got batch {tensor.shape[0]}")
    return tensor


def by_name(value, specs, what: str) -> list:
    """The values of an array (one tensor) or {name: array} (any number), in `specs` order;
    ValueError naming the expected names otherwise."""
    if type(value) is dict and len(value) == len(specs):  # the common case, looked up at once
        try:
            return [value[spec.name] for spec in specs]
        except KeyError:
            pass  # and said below
    names = [spec.name for spec in specs]
    if type(value) is not np.ndarray and isinstance(value, Mapping):
        if len(value) != len(names) or not all(name in value for name in names):
            unknown = sorted(set(value) - set(names))
            missing = [name for name in names if name not in value]
            problem = f"unknown {what} name(s) {unknown}" if unknown else f"no {what} {missing}"
            raise ValueError(f"{problem}; this model has {what}s {names}")
        return [value[name] for name in names]
    if len(specs) > 1:
        raise ValueError(f"this model has {len(specs)} {what}s {names}; pass {{name: array}}")
    return [value]


def check_request(request, specs) -> list:
    """A request's Tensors in `specs` order, checked: names, dtypes, shapes, and one batch size
    for all of them. ValueError says what was expected."""
    if type(request) is np.ndarray and len(specs) == 1:  # one array for the one input
        return [check_tensor(request, specs[0], specs[0].name)]
    values = by_name(request, specs, "input")
    tensors = [check_tensor(v, s, s.name) for v, s in zip(values, specs, strict=True)]
    if len(tensors) > 1 and len({tensor.shape[0] for tensor in tensors}) > 1:
        found = {spec.name: t.shape[0] for spec, t in zip(specs, tensors, strict=True)}
        raise ValueError(f"the inputs' batch sizes differ: {found}; they must be equal")
    return tensors


def locate(tensor: Tensor) -> None:
    """Sets a host tensor's kind: page-locked (gpu.page_locked_empty's) and contiguous, copied
    straight to and from the GPU, or else pageable, staged."""
    if tensor.kind is None:
        host = tensor.host
        address = page_locked_address(host) if host.flags.c_contiguous else None
        tensor.kind, tensor.address = (
            (PAGEABLE, None) if address is None else (PAGE_LOCKED, address)
        )


def check_shaped_tensor(value, spec: TensorSpec, what: str, writable=False) -> Tensor:
    """check_tensor for an engine with dynamic dimensions beyond the batch: `spec.item_shape`
    holds -1 where a dimension may take any size of 1 or more."""
    tensor = describe(value, what, writable)
    if tensor.dtype != spec.dtype:
        raise ValueError(
            f"expected {describe_spec(spec)}, got dtype {tensor.dtype}; "
            f"convert it first, e.g. with .astype(np.{spec.dtype})"
        )
    shape = tensor.shape
    if len(shape) != 1 + len(spec.item_shape) or any(
        want not in (-1, found) for want, found in zip(spec.item_shape, shape[1:], strict=True)
    ):
        raise ValueError(f"expected {describe_spec(spec)}, got shape {shape}")
    if min(shape) < 1:
        raise ValueError(f"{what}: every dimension needs at least one item, got shape {shape}")
    return tensor


def describe_spec(spec: TensorSpec) -> str:
    """'input_ids int32 [batch, ?]': ? marks a dynamic dimension."""
    dims = ", ".join("?" if d == -1 else str(d) for d in spec.item_shape)
    return f"{spec.name} {spec.dtype} [batch, {dims}]"


def check_shaped_request(request, specs) -> list:
    """check_request for an engine with dynamic dimensions beyond the batch: each array's shape
    matches its input's fixed dimensions, and every input has the same batch."""
    values = by_name(request, specs, "input")
    tensors = [check_shaped_tensor(v, s, s.name) for v, s in zip(values, specs, strict=True)]
    if len({tensor.shape[0] for tensor in tensors}) > 1:
        found = {spec.name: t.shape[0] for spec, t in zip(specs, tensors, strict=True)}
        raise ValueError(f"the inputs' batch sizes differ: {found}; they must be equal")
    return tensors


def request_shapes(shapes, specs) -> tuple:
    """A request's shapes, as the dispatcher's `page_locked_inputs`, `page_locked_outputs` and
    `prepare` take them: an int is the batch, with the inputs' fixed dimensions after it (only
    where they are all fixed); a {input name: shape} gives every input's. ValueError otherwise."""
    if isinstance(shapes, Integral) and not isinstance(shapes, bool):
        shapes = int(shapes)
        if shapes < 1:
            raise ValueError(f"a request needs at least one item, got batch {shapes!r}")
        dynamic = [describe_spec(spec) for spec in specs if -1 in spec.item_shape]
        if dynamic:
            raise ValueError(
                f"a batch size alone does not give the shapes of {', '.join(dynamic)}, whose "
                "dimensions beyond the batch are dynamic; pass {input name: shape}"
            )
        return tuple((shapes, *spec.item_shape) for spec in specs)
    if not isinstance(shapes, Mapping):
        raise ValueError(f"expected a batch size or {{input name: shape}}, got {shapes!r}")
    names = [spec.name for spec in specs]
    if set(shapes) != set(names):
        raise ValueError(f"expected the shapes of inputs {names}, got {sorted(shapes)}")
    result = []
    for spec in specs:
        try:
            shape = tuple(int(d) for d in shapes[spec.name])
        except (TypeError, ValueError):
            raise ValueError(
                f"the shape of {spec.name} must be integers, got {shapes[spec.name]!r}"
            ) from None
        if (
            len(shape) != 1 + len(spec.item_shape)
            or min(shape) < 1
            or any(
                want not in (-1, found)
                for want, found in zip(spec.item_shape, shape[1:], strict=True)
            )
        ):
            raise ValueError(f"expected {describe_spec(spec)}, got shape {shape}")
        result.append(shape)
    if len({shape[0] for shape in result}) > 1:
        raise ValueError(f"the inputs' batch sizes differ: {dict(zip(names, result, strict=True))}")
    return tuple(result)

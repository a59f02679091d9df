"""What an engine's inputs and outputs are, as the dispatcher needs them (the batch first),
what each profile accepts over every dimension, and which profile a new execution context
starts on."""

import numpy as np

from dynamic_shapes.engines import batch_ranges
from dynamic_shapes.serving.routing import ProfileRanges
from dynamic_shapes.tensors import TensorSpec


def engine_io(engine) -> tuple[list, list]:
    """The engine's inputs as TensorSpecs, and its outputs' (name, dtype), in the engine's
    order; ValueError unless every input has the batch as its first dimension, the same batch
    range in every profile as the other inputs, and fixed dimensions after it."""
    import tensorrt as trt

    names = [engine.get_tensor_name(index) for index in range(engine.num_io_tensors)]
    inputs, outputs = [], []
    ranges = {}
    for name in names:
        dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
        if engine.get_tensor_mode(name) != trt.TensorIOMode.INPUT:
            outputs.append((name, dtype))
            continue
        shapes = [
            tuple(shape)
            for index in range(engine.num_optimization_profiles)
            for shape in engine.get_tensor_profile_shape(name, index)
        ]
        if not shapes or len({shape[1:] for shape in shapes}) != 1:
            raise ValueError(
                f"input {name} has profile shapes {shapes}; the dispatcher needs the batch as "
                "the first dimension and the same fixed dimensions after it in every profile"
            )
        inputs.append(TensorSpec(name, dtype, shapes[0][1:]))
        ranges[name] = batch_ranges(engine, name)
    check_io(inputs, outputs, ranges)
    return inputs, outputs


def check_io(inputs, outputs, ranges: dict) -> None:
    """ValueError unless the engine has inputs and outputs, and its inputs' batch `ranges`
    ({input name: each profile's (min, max) batch}) are one for all of them."""
    if not inputs or not outputs:
        raise ValueError(f"the engine has inputs {inputs} and outputs {outputs}; it needs both")
    if len(set(ranges.values())) != 1:
        raise ValueError(
            f"the inputs' batch ranges per profile differ ({ranges}); the dispatcher needs one "
            "batch size for all of a request's inputs"
        )


def batch_alone_is_dynamic(engine) -> bool:
    """Whether every input's profiles differ in the batch alone: engine_io's engines, served
    as they always were."""
    import tensorrt as trt

    for index in range(engine.num_io_tensors):
        name = engine.get_tensor_name(index)
        if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
            shapes = {
                tuple(shape)[1:]
                for profile in range(engine.num_optimization_profiles)
                for shape in engine.get_tensor_profile_shape(name, profile)
            }
            if len(shapes) > 1:
                return False
    return True


def dynamic_engine_io(engine) -> tuple[list, list, dict]:
    """For an engine with dynamic dimensions beyond the batch: its inputs as TensorSpecs whose
    shape after the batch holds -1 where a dimension is dynamic, its outputs' (name, dtype), and
    the outputs' shapes as the engine gives them (-1 where dynamic). ValueError unless every
    input has the batch first, with the same batch range in every profile as the others."""
    import tensorrt as trt

    inputs, outputs, output_shapes, ranges = [], [], {}, {}
    for index in range(engine.num_io_tensors):
        name = engine.get_tensor_name(index)
        dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
        shape = tuple(engine.get_tensor_shape(name))
        if engine.get_tensor_mode(name) != trt.TensorIOMode.INPUT:
            outputs.append((name, dtype))
            output_shapes[name] = shape
            continue
        if not shape or shape[0] != -1:
            raise ValueError(
                f"input {name} has shape {shape}; the dispatcher needs the batch as every "
                "input's first dimension, dynamic"
            )
        inputs.append(TensorSpec(name, dtype, shape[1:]))
        ranges[name] = batch_ranges(engine, name)
    check_io(inputs, outputs, ranges)
    return inputs, outputs, output_shapes


def profile_ranges(engine, names) -> tuple:
    """Each profile's min, opt and max shapes of the inputs `names`, as routing.ProfileRanges,
    in profile-index order: the engine is the source of truth for what a profile accepts."""
    profiles = []
    for index in range(engine.num_optimization_profiles):
        shapes = [
            [tuple(int(d) for d in shape) for shape in engine.get_tensor_profile_shape(name, index)]
            for name in names
        ]
        profiles.append(
            ProfileRanges(*(tuple(per_input) for per_input in zip(*shapes, strict=True)))
        )
    return tuple(profiles)


def output_specs(context, inputs, outputs, batch) -> list:
    """Sets the context's input shapes for `batch` items and returns the outputs' specs;
    ValueError unless every output has that batch as its first dimension too."""
    for spec in inputs:
        shape = (batch, *spec.item_shape)
        if not context.set_input_shape(spec.name, shape):
            raise RuntimeError(f"TensorRT refused input shape {shape} for {spec.name}")
    specs = []
    for name, dtype in outputs:
        shape = tuple(context.get_tensor_shape(name))
        if not shape or shape[0] != batch:
            raise ValueError(
                f"for a batch of {batch}, output {name} has shape {shape}; the dispatcher needs "
                "outputs whose first dimension is the batch"
            )
        specs.append(TensorSpec(name, dtype, shape[1:]))
    return specs


def starts_on_profile_0(context) -> bool:
    """Whether a new execution context started on profile 0, as it does unless another context
    holds that profile and the engine does not share profiles (TensorRT 8.6 without its
    PROFILE_SHARING_0806 preview feature); then it starts on none (-1). TensorRT 8.6 crashes
    when a context asks for a profile another one holds, so the dispatcher finds out here."""
    return context.active_optimization_profile == 0

"""The runner path: one execution context served through a Polygraphy TrtRunner."""

import numpy as np

from dynamic_shapes.engines import deactivate_runner
from dynamic_shapes.serving.engine_io import output_specs
from dynamic_shapes.tensors import TensorSpec


class RunnerExecutor:
    """Runs chunks on one context through a Polygraphy TrtRunner, activated for its lifetime."""

    def __init__(self, context, profile_index, batch_range, inputs, outputs):
        from polygraphy.backend.trt import TrtRunner

        self._runner = TrtRunner(context, optimization_profile=profile_index)
        self._runner.activate()
        self._context = context
        self.outputs = output_specs(context, inputs, outputs, batch_range[1])
        self._inputs = [spec.name for spec in inputs]

    def output_specs(self, batch, inputs) -> list:
        """The outputs' specs for `batch` items of inputs shaped as `inputs` after the batch
        (the runner sets the shapes again for each request it serves)."""
        for spec in inputs:
            if not self._context.set_input_shape(spec.name, (batch, *spec.item_shape)):
                raise RuntimeError(f"TensorRT refused input shape {(batch, *spec.item_shape)}")
        specs = []
        for largest in self.outputs:
            shape = tuple(self._context.get_tensor_shape(largest.name))
            if not shape or shape[0] != batch or min(shape) < 0:
                raise ValueError(f"TensorRT gives output {largest.name} the shape {shape}")
            specs.append(TensorSpec(largest.name, largest.dtype, shape[1:]))
        return specs

    def run(self, sources, targets, start, size, layout=None):
        # The runner sets each request's shapes from the arrays it is fed: `layout` is not needed.
        stop = start + size
        feed = {
            name: np.ascontiguousarray(source.host[start:stop])
            for name, source in zip(self._inputs, sources, strict=True)
        }
        results = self._runner.infer(feed)
        for spec, target in zip(self.outputs, targets, strict=True):
            np.copyto(target.host[start:stop], results[spec.name])

    def close(self):
        if self._runner is not None and self._runner.is_active:
            deactivate_runner(self._runner)
        self._runner = self._context = None  # and with them, the context

"""The runner path: one execution context served through a Polygraphy TrtRunner."""

import numpy as np

from dynamic_shapes.engines import deactivate_runner
from dynamic_shapes.serving.engine_io import output_specs


class RunnerExecutor:
    """Runs chunks on one context through a Polygraphy TrtRunner, activated for its lifetime."""

    def __init__(self, context, profile_index, batch_range, inputs, outputs):
        from polygraphy.backend.trt import TrtRunner

        self._runner = TrtRunner(context, optimization_profile=profile_index)
        self._runner.activate()
        self.outputs = output_specs(context, inputs, outputs, batch_range[1])
        self._inputs = [spec.name for spec in inputs]

    def run(self, sources, targets, start, size):
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
        self._runner = None  # and with it, the context

"""The reference check: every measured path's outputs compared with ONNX Runtime's, so that
no figure stands for a wrong result."""

import hashlib

import numpy as np

from dynamic_shapes.measure.bare_loop import BareLoop
from dynamic_shapes.reference import OnnxRuntimeReference, largest_difference, mismatch


class Reference:
    """What every measured path must return, checked after it was timed: what ONNX Runtime
    computes on the CPU for the same inputs, bit for bit for the identity model and within
    dynamic_shapes.reference's tolerance for any other."""

    def __init__(self, model_path, spec, exact: bool):
        self.run = OnnxRuntimeReference(model_path)
        self.spec, self.exact = spec, exact
        self._cache = {}  # the same inputs come back, checked for several paths
        self.largest_difference = 0.0  # over every check, for the report

    def check(self, what: str, inputs, outputs: dict) -> None:
        """Raises AssertionError, naming the path, unless its outputs are the expected ones."""
        key = (inputs.shape, hashlib.sha1(np.ascontiguousarray(inputs)).hexdigest())
        if key not in self._cache:
            self._cache[key] = self.run({self.spec.name: np.ascontiguousarray(inputs)})
        problem = mismatch(outputs, self._cache[key], self.exact)
        if problem is None:
            found = largest_difference(outputs, self._cache[key])
            self.largest_difference = max(self.largest_difference, found)
        if problem:
            raise AssertionError(f"{what}: {problem} (ONNX Runtime); its figures are void")

    def check_loop(self, what: str, loop: BareLoop, batch: int) -> None:
        loop.run(batch)
        self.check(f"{what}, batch {batch}", *loop.last_result())

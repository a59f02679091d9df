"""A tensor's name, dtype and per-item shape, and random batches for it."""

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class TensorSpec:
    """An input or output tensor: its name, dtype, and the shape of one item of a batch."""

    name: str
    dtype: np.dtype
    item_shape: tuple
    # Bytes per item of a batch, worked out once: serving a request asks for it several times.
    item_nbytes: int = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "item_nbytes", math.prod(self.item_shape) * self.dtype.itemsize)

    def describe(self) -> str:
        """'X float32 [batch, 3, 28, 28]'"""
        return f"{self.name} {self.dtype} [batch, {', '.join(map(str, self.item_shape))}]"


def random_batch(spec: TensorSpec, batch: int, seed: int = 0) -> np.ndarray:
    """A batch of random values for `spec`. Random values, unlike ones or zeros, expose
    misplaced or stale data."""
    rng = np.random.default_rng(seed)
    shape = (batch, *spec.item_shape)
    if np.issubdtype(spec.dtype, np.floating):
        return rng.standard_normal(shape, dtype=np.float32).astype(spec.dtype, copy=False)
    if spec.dtype == np.bool_:
        return rng.integers(0, 2, shape).astype(np.bool_)
    return rng.integers(0, 100, shape).astype(spec.dtype)

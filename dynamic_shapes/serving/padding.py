"""Padding a request up to shapes a profile holds, and cutting its outputs back to the
request's: for a model that takes an attention mask, whose zeros mark the padding, so that
the states of the request's own tokens do not change (routing.py says which shapes).

Padding copies the request on the host: a padded request is served from NumPy arrays.
Nothing here needs TensorRT or a GPU.
"""

import numpy as np

# What padded positions hold: token id 0 (a real token, ignored through the mask) in the token
# inputs, 0 ("not a token") in the mask.
PAD_VALUE = 0


def pad(array: np.ndarray, shape: tuple) -> np.ndarray:
    """`array` at the start of a new array of `shape`, the rest PAD_VALUE."""
    if array.shape == shape:
        return array
    padded = np.full(shape, PAD_VALUE, dtype=array.dtype)
    padded[tuple(slice(0, d) for d in array.shape)] = array
    return padded


def padded_lengths(shapes, padded) -> dict:
    """{padded length: the request's length} for every dimension padding lengthened; ValueError
    where two lengths were padded to one, since an output dimension of that padded length could
    then follow either (output_cuts tells them apart by length alone)."""
    lengths = {}
    for shape, padded_shape in zip(shapes, padded, strict=True):
        for d, p in zip(shape, padded_shape, strict=True):
            if p != d and lengths.setdefault(p, d) != d:
                raise ValueError(
                    f"lengths {lengths[p]} and {d} were both padded to {p}, so the outputs cannot "
                    "be cut back to either: pad the request to shapes a profile holds yourself"
                )
    return lengths


def output_cuts(engine_shapes: dict, padded_outputs, lengths: dict) -> list:
    """Per output (TensorSpecs at the padded shapes, after the batch), the request's shape
    after the batch: a dimension the engine leaves dynamic (-1) whose padded size is a padded
    input length follows that input dimension, and is cut back to the request's length."""
    cuts = []
    for spec in padded_outputs:
        dynamic = engine_shapes[spec.name][1:]
        cuts.append(
            tuple(
                lengths.get(size, size) if engine_dim == -1 else size
                for engine_dim, size in zip(dynamic, spec.item_shape, strict=True)
            )
        )
    return cuts


def cut(array: np.ndarray, item_shape: tuple) -> np.ndarray:
    """The view of `array` ([batch, ...]) that holds the request's `item_shape` after the batch."""
    return array[(slice(None), *(slice(0, d) for d in item_shape))]

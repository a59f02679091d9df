"""The scenario's profiles and batch checks (CPU only)."""

import re

import numpy as np
import pytest

import example
from dynamic_shapes.tensors import TensorSpec
from scenario import (
    BATCH_SIZES,
    PROFILES,
    check_batch_fits,
    check_identity,
    profiles_for,
    random_images,
)

# The scenario table, restated as the specification the code must match.
EXPECTED = {
    "low latency": ((1, 3, 28, 28), (1, 3, 28, 28), (1, 3, 28, 28)),
    "dynamic batching": ((1, 3, 28, 28), (4, 3, 28, 28), (32, 3, 28, 28)),
    "offline": ((128, 3, 28, 28), (128, 3, 28, 28), (128, 3, 28, 28)),
}


def test_profiles_are_the_scenario_table_in_index_order():
    assert list(PROFILES) == list(EXPECTED)
    for use_case, profile in PROFILES.items():
        assert list(profile) == ["X"]
        shapes = profile["X"]
        assert (shapes.min, shapes.opt, shapes.max) == EXPECTED[use_case]


def test_example_docstring_shows_the_same_table():
    rows = re.findall(r"^\s+([a-z ]+?)\s+(\d+)\s+(\d+)\s+(\d+)$", example.__doc__, re.MULTILINE)
    assert {name: tuple(map(int, sizes)) for name, *sizes in rows} == {
        use_case: (shapes.min[0], shapes.opt[0], shapes.max[0])
        for use_case, shapes in ((u, p["X"]) for u, p in PROFILES.items())
    }


def test_profiles_for_another_input_keep_the_batch_sizes():
    profiles = profiles_for(TensorSpec("tokens", np.dtype(np.float32), (16, 8)))
    assert list(profiles) == list(BATCH_SIZES)
    shapes = profiles["dynamic batching"]["tokens"]
    assert (shapes.min, shapes.opt, shapes.max) == ((1, 16, 8), (4, 16, 8), (32, 16, 8))
    assert profiles["offline"]["tokens"].min == (128, 16, 8)


@pytest.mark.parametrize(
    ("use_case", "fits", "refused"),
    [
        ("low latency", [1], [0, 2, 32]),
        ("dynamic batching", [1, 4, 17, 32], [0, 33, 128]),
        ("offline", [128], [1, 64, 127, 129]),
    ],
)
def test_check_batch_fits(use_case, fits, refused):
    for batch in fits:
        check_batch_fits(use_case, batch)
    for batch in refused:
        with pytest.raises(ValueError) as error:
            check_batch_fits(use_case, batch)
        assert str(error.value) == (
            f"batch {batch} does not fit the {use_case} profile; the profiles accept batch "
            "sizes: low latency 1, dynamic batching 1..32, offline 128"
        )


def test_random_images_are_float32_images_that_differ_by_seed():
    images = random_images(5, seed=1)
    assert images.shape == (5, 3, 28, 28) and images.dtype == np.float32
    assert not np.array_equal(images, random_images(5, seed=2))


def test_check_identity_refuses_any_difference():
    images = random_images(2)
    check_identity(images, images.copy())
    changed = images.copy()
    changed[1, 2, 27, 27] = np.nextafter(changed[1, 2, 27, 27], np.float32(np.inf))
    with pytest.raises(AssertionError):
        check_identity(images, changed)
    with pytest.raises(AssertionError):
        check_identity(images, images[:1])

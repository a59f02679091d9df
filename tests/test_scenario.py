"""The scenario's profiles, batch checks and atomic writes (CPU only)."""

import os
import re

import numpy as np
import pytest

import example
from scenario import (
    PROFILES,
    batch_range,
    check_batch_fits,
    check_identity,
    describe_ranges,
    random_images,
    write_atomically,
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
        use_case: batch_range(profile) for use_case, profile in PROFILES.items()
    }


def test_describe_ranges():
    assert describe_ranges() == "low latency 1, dynamic batching 1..32, offline 128"


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


def test_write_atomically_writes_the_bytes_with_the_usual_mode(tmp_path):
    path = tmp_path / "file.bin"
    write_atomically(path, b"engine")
    assert path.read_bytes() == b"engine"
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.bin"]


@pytest.mark.parametrize("interruption", [KeyboardInterrupt, OSError])
def test_interrupted_write_keeps_the_old_file_and_leaves_no_partial_one(
    tmp_path, monkeypatch, interruption
):
    path = tmp_path / "file.bin"
    write_atomically(path, b"good")

    def interrupted(fd):
        raise interruption("interrupted while the new bytes were half on disk")

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(interruption):
        write_atomically(path, b"new but never completed")
    assert path.read_bytes() == b"good"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.bin"]

"""The dispatcher's planning and request checks, which need no GPU."""

import numpy as np
import pytest

from dynamic_shapes.serving.host_memory import check_outputs_fit
from dynamic_shapes.serving.planning import choose_profile, plan_chunks
from dynamic_shapes.serving.request_checks import check_request
from dynamic_shapes.tensors import TensorSpec
from scenario import MODEL_INPUT, random_images, scenario_ranges

RANGES = tuple(scenario_ranges().values())
SCENARIO_INPUT = [MODEL_INPUT]  # the engine's inputs, as the dispatcher passes them


@pytest.mark.parametrize(
    ("batch", "profile"), [(1, 0), (2, 1), (4, 1), (32, 1), (128, 2), (33, None), (64, None)]
)
def test_choose_profile_prefers_the_narrowest_range(batch, profile):
    assert choose_profile(batch, RANGES) == profile


@pytest.mark.parametrize(
    ("batch", "sizes"),
    [
        (1, [1]),
        (4, [4]),
        (32, [32]),
        (33, [32, 1]),
        (100, [32, 32, 32, 4]),
        (127, [32, 32, 32, 31]),
        (128, [128]),
        (129, [128, 1]),
        (300, [128, 128, 32, 12]),
    ],
)
def test_plan_examples(batch, sizes):
    assert [size for _, _, size in plan_chunks(batch, RANGES)] == sizes


def test_every_plan_from_1_to_1000_follows_the_rule():
    for batch in range(1, 1001):
        start = 0
        for profile, chunk_start, size in plan_chunks(batch, RANGES):
            low, high = RANGES[profile]
            assert low <= size <= high, (batch, profile, size)
            assert profile == choose_profile(size, RANGES)
            # The rule: the largest size any profile accepts that fits in what remains.
            remaining = batch - start
            accepted = [s for lo, hi in RANGES for s in range(lo, hi + 1) if s <= remaining]
            assert size == max(accepted), (batch, size)
            assert chunk_start == start  # in order, no gap, no overlap
            start += size
        assert start == batch  # covers the batch exactly once


@pytest.mark.parametrize("batch", [0, -1])
def test_an_empty_batch_is_refused(batch):
    with pytest.raises(ValueError, match=f"at least one image, got batch {batch}"):
        plan_chunks(batch, RANGES)


def test_a_batch_that_cannot_be_split_is_refused_with_the_ranges():
    with pytest.raises(ValueError) as error:
        plan_chunks(20, ((8, 16),))
    assert str(error.value) == (
        "batch 20 cannot be split into chunks the profiles accept: 4 images would remain, "
        "and the profiles accept batch sizes 8..16"
    )


def test_check_request_accepts_an_array_or_a_feed_dict_and_converts_nothing():
    images = random_images(3)
    (tensor,) = check_request(images, SCENARIO_INPUT)
    assert tensor.host is images and tensor.kind is None  # where it lives: asked of CUDA later
    assert check_request({"X": images}, SCENARIO_INPUT)[0].host is images
    strided = random_images(6)[::2]
    # Non-contiguous input is served, not refused.
    (tensor,) = check_request(strided, SCENARIO_INPUT)
    assert tensor.host is strided


class GpuArray:
    """What a GPU array library shows the dispatcher: the CUDA array interface, no memory."""

    def __init__(self, shape, typestr="<f4", strides=None, stream=None):
        self.__cuda_array_interface__ = {
            "shape": shape, "typestr": typestr, "data": (2**20, False), "strides": strides,
            "version": 3, "stream": stream,
        }  # fmt: skip


def test_gpu_arrays_are_read_in_place_and_their_stream_is_kept():
    (tensor,) = check_request(GpuArray((2, 3, 28, 28), stream=7), SCENARIO_INPUT)
    assert (tensor.on_gpu, tensor.address, tensor.stream) == (True, 2**20, 7)
    # Strides that describe a C-contiguous array are fine, also where a dimension is 1.
    check_request(GpuArray((1, 3, 28, 28), strides=(999, 3136, 112, 4)), SCENARIO_INPUT)


TWO_INPUTS = [
    TensorSpec("X", np.dtype(np.float32), (3, 28, 28)),
    TensorSpec("labels", np.dtype(np.int32), (4,)),
]


def test_several_inputs_come_by_name_with_one_batch_size():
    images, labels = random_images(2), np.zeros((2, 4), np.int32)
    tensors = check_request({"labels": labels, "X": images}, TWO_INPUTS)
    assert [tensor.host for tensor in tensors] == [images, labels]  # in the engine's order
    with pytest.raises(ValueError) as error:
        check_request(images, TWO_INPUTS)
    assert str(error.value) == "this model has 2 inputs ['X', 'labels']; pass {name: array}"
    with pytest.raises(ValueError) as error:
        check_request({"X": images}, TWO_INPUTS)
    assert str(error.value) == "no input ['labels']; this model has inputs ['X', 'labels']"
    with pytest.raises(ValueError) as error:
        check_request({"X": images, "labels": labels[:1]}, TWO_INPUTS)
    assert str(error.value) == (
        "the inputs' batch sizes differ: {'X': 2, 'labels': 1}; they must be equal"
    )


EXPECTED = "X float32 [batch, 3, 28, 28]"


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (np.zeros((0, 3, 28, 28), np.float32), "a request needs at least one image, got batch 0"),
        (np.zeros((3, 28, 28), np.float32), f"expected {EXPECTED}, got shape (3, 28, 28)"),
        (
            np.zeros((2, 3, 28, 28, 1), np.float32),
            f"expected {EXPECTED}, got shape (2, 3, 28, 28, 1)",
        ),
        (np.zeros((2, 1, 28, 28), np.float32), f"expected {EXPECTED}, got shape (2, 1, 28, 28)"),
        (np.zeros((2, 3, 32, 32), np.float32), f"expected {EXPECTED}, got shape (2, 3, 32, 32)"),
        (
            np.zeros((2, 3, 28, 28), np.float64),
            f"expected {EXPECTED}, got dtype float64; "
            "convert it first, e.g. with .astype(np.float32)",
        ),
        (
            [[0.0]],
            "expected a NumPy array or a GPU array (__cuda_array_interface__ or DLPack) for X, "
            "got list",
        ),
        (
            {"input": np.zeros((1, 3, 28, 28), np.float32)},
            "unknown input name(s) ['input']; this model has inputs ['X']",
        ),
        (
            {"X": np.zeros((1, 3, 28, 28), np.float32), "Z": 0},
            "unknown input name(s) ['Z']; this model has inputs ['X']",
        ),
        (
            GpuArray((2, 3, 28, 28), typestr="<f2"),
            f"expected {EXPECTED}, got dtype float16; "
            "convert it first, e.g. with .astype(np.float32)",
        ),
        (
            GpuArray((2, 3, 28, 28), strides=(4, 8, 2352, 84)),
            "X is a GPU array with strides "
            "(4, 8, 2352, 84); the dispatcher reads GPU arrays in place and needs them "
            "C-contiguous (e.g. cupy.ascontiguousarray)",
        ),
    ],
)
def test_check_request_refuses_with_what_was_expected(request_, message):
    with pytest.raises(ValueError) as error:
        check_request(request_, SCENARIO_INPUT)
    assert str(error.value) == message


def test_outputs_that_cannot_fit_in_host_memory_are_refused_clearly():
    image_nbytes = MODEL_INPUT.item_nbytes
    check_outputs_fit(1000, 1000 * image_nbytes)
    with pytest.raises(MemoryError) as error:
        check_outputs_fit(10**9, 10**9 * image_nbytes)  # 8.6 TiB
    assert str(error.value).startswith(
        "the outputs of a batch of 1000000000 need 8761.9 GiB of host memory"
    )
    assert str(error.value).endswith("GiB is available; send it in smaller requests")

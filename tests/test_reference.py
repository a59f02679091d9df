"""Comparing results with the reference, and which TensorRT/Polygraphy/driver pairs work
(CPU only)."""

from types import SimpleNamespace

import numpy as np
import pytest

from dynamic_shapes.gpu import driver_problem, polygraphy_problem, version_tuple
from dynamic_shapes.reference import ATOL, RTOL, mismatch


def expected():
    return {"Y": np.linspace(-1, 1, 20, dtype=np.float32).reshape(2, 10)}


def test_exact_comparison_refuses_the_smallest_difference():
    outputs = {"Y": expected()["Y"].copy()}
    assert mismatch(outputs, expected(), exact=True) is None
    outputs["Y"][1, 3] = np.nextafter(outputs["Y"][1, 3], np.float32(2))
    assert mismatch(outputs, expected(), exact=True) == (
        "output Y differs from the reference in 1 of 20 values"
    )


def test_tolerant_comparison_takes_rounding_and_refuses_a_fault():
    outputs = {"Y": expected()["Y"] + np.float32(ATOL / 2)}
    assert mismatch(outputs, expected(), exact=False) is None
    outputs["Y"][0, 0] += 10 * (ATOL + RTOL)
    problem = mismatch(outputs, expected(), exact=False)
    assert problem.startswith("output Y differs from the reference in 1 of 20 values beyond")
    outputs["Y"][1, 1] = np.nan
    assert "in 2 of 20 values" in mismatch(outputs, expected(), exact=False)


@pytest.mark.parametrize(
    ("outputs", "problem"),
    [
        ({}, "output Y is missing"),
        (
            {"Y": np.zeros((2, 3), np.float32)},
            "output Y is float32 (2, 3), expected float32 (2, 10)",
        ),
        ({"Y": np.zeros((2, 10), np.float16)}, "output Y is float16 (2, 10), expected float32"),
    ],
)
def test_a_missing_or_misshapen_output_is_named(outputs, problem):
    assert mismatch(outputs, expected(), exact=False).startswith(problem)


def test_version_tuple():
    assert version_tuple("8.6.0") == (8, 6, 0)
    assert version_tuple("0.53.6.post1") == (0, 53, 6)
    assert version_tuple("10.16.1.11") == (10, 16, 1)


@pytest.mark.parametrize(
    ("tensorrt", "polygraphy", "fix"),
    [
        ("8.6.0", "0.49.26", None),
        ("8.6.1", "0.53.6", "-c constraints-tensorrt8.txt -r requirements.txt"),
        ("10.16.1.11", "0.49.26", None),
        ("10.16.1.11", "0.53.6", None),
        ("11.4.0.106", "0.49.26", "python3 -m pip install -U 'polygraphy>=0.53.6'"),
        ("11.4.0.106", "0.53.6", None),
    ],
)
def test_polygraphy_and_tensorrt_pairs_that_cannot_inspect_name_the_fix(tensorrt, polygraphy, fix):
    problem = polygraphy_problem(tensorrt, polygraphy)
    if fix is None:
        assert problem is None
    else:
        assert f"Polygraphy {polygraphy}" in problem and problem.endswith(fix)


def cuda_runtime(driver_version):
    """The two answers of CUDA's runtime that driver_problem() reads, for a driver this
    machine does not have."""
    success = object()
    return SimpleNamespace(
        cudaError_t=SimpleNamespace(cudaSuccess=success),
        cudaDriverGetVersion=lambda: (success, driver_version),
    )


def test_a_driver_older_than_the_bindings_names_the_fix():
    from cuda import bindings

    problem = driver_problem(cuda_runtime(11080))
    assert problem.startswith(
        f"The NVIDIA driver supports CUDA 11.8, and cuda-bindings {bindings.__version__} needs a"
    )
    assert "python3 -m pip install 'cuda-bindings>=12.8,<13'" in problem
    assert driver_problem(cuda_runtime(0)).startswith("No NVIDIA driver is usable")

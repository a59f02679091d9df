"""The environment a measurement ran in, recorded beside its figures: the GPU and its driver,
the versions of TensorRT and of the packages around it, Python, the commit and the date.

Every script that writes figures as JSON records it under "environment", so that a result can
always say where it came from (the results pages print it as their provenance line). Nothing
here needs a GPU: what cannot be read on this machine is recorded as None.
"""

import datetime
import importlib
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

# The checkout whose commit is recorded: the project's folder, above this package.
PROJECT = Path(__file__).resolve().parent.parent

# Modules whose __version__ is recorded, by the key it is recorded under.
MODULE_VERSIONS = {
    "tensorrt": "tensorrt",
    "polygraphy": "polygraphy",
    "cuda_bindings": "cuda.bindings",
    "onnxruntime": "onnxruntime",
    "numpy": "numpy",
    "cupy": "cupy",
}
# Packages whose modules carry no version of their own, by distribution name.
DISTRIBUTION_VERSIONS = {"tritonclient": "tritonclient", "pytriton": "nvidia-pytriton"}


def environment() -> dict:
    """The record: GPU, driver, versions, Python, commit, date and a one-line summary."""
    gpu, driver = gpu_and_driver()
    date = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    record = {
        "gpu": gpu,
        "driver": driver,
        "driver_cuda": driver_cuda_version(),
        **{key: module_version(module) for key, module in MODULE_VERSIONS.items()},
        **{key: distribution_version(name) for key, name in DISTRIBUTION_VERSIONS.items()},
        "python": platform.python_version(),
        "cpu_cores": len(os.sched_getaffinity(0)),
        "commit": git_commit(),
        "date": date,
    }
    record["summary"] = f"{gpu or 'no GPU'}, TensorRT {record['tensorrt'] or 'none'}, {date[:10]}"
    return record


def gpu_and_driver() -> tuple:
    """The first GPU's name and the driver's version, as nvidia-smi reports them, or Nones."""
    try:
        line = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader", "-i", "0"],
            capture_output=True, text=True, check=True, timeout=30,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None, None
    name, _, driver = line.rpartition(",")
    return (name.strip() or None), (driver.strip() or None)


def driver_cuda_version() -> str | None:
    """The CUDA version the driver supports ("12.9"), or None where it cannot be read."""
    # Any exception: cuda-bindings missing or broken, or no driver, all mean "unknown" here.
    try:
        from dynamic_shapes.gpu import check_cuda, cudart

        version = check_cuda(cudart().cudaDriverGetVersion(), "cudaDriverGetVersion")
    except Exception:
        return None
    if not version:  # no driver: CUDA reports version 0
        return None
    return f"{version // 1000}.{version % 1000 // 10}"


def module_version(module: str) -> str | None:
    """A module's __version__, or None where it is missing or cannot be imported."""
    try:
        return str(importlib.import_module(module).__version__)
    except Exception:  # a broken install fails in more ways than ImportError
        return None


def distribution_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def git(folder, *args) -> str:
    """What `git args` prints in `folder`; CalledProcessError where it fails."""
    return subprocess.run(
        ["git", *args], cwd=folder, capture_output=True, text=True, check=True, timeout=30
    ).stdout.strip()


def git_commit(folder=PROJECT) -> str | None:
    """The commit checked out in `folder`, with '+changes' when tracked files differ from it;
    None outside git. The results under `results/`, and the pages rendered from them, are data,
    not code: a run that rewrites them (measure.py runs one after another, rendering after each)
    measures the same code."""
    from dynamic_shapes.results import PAGES

    try:
        commit = git(folder, "rev-parse", "--short", "HEAD")
        data = [":!results", *(f":!{page.as_posix()}" for page in PAGES.values())]
        changed = git(folder, "status", "--porcelain", "--untracked-files=no", "--", ".", *data)
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+changes" if changed else "")

"""What a benchmark ran on: the GPU, its driver, the versions of everything measured, and the
commit of the checkout."""

import datetime
import platform
import subprocess
from functools import partial

import numpy as np

from dynamic_shapes.gpu import check_cuda, cudart, gpu_name


def environment(checkout) -> dict:
    import cuda.bindings
    import onnxruntime
    import polygraphy
    import tensorrt as trt

    gpu = gpu_name()
    try:
        driver = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader", "-i", "0"],
            capture_output=True, text=True, check=True, timeout=30,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        driver = None
    cuda_version = check_cuda(cudart().cudaDriverGetVersion(), "cudaDriverGetVersion")
    date = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    return {
        "gpu": gpu,
        "driver": driver,
        "driver_cuda": f"{cuda_version // 1000}.{cuda_version % 1000 // 10}",
        "tensorrt": trt.__version__,
        "polygraphy": polygraphy.__version__,
        "cuda_bindings": cuda.bindings.__version__,
        "onnxruntime": onnxruntime.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "commit": git_commit(checkout),
        "date": date,
        "summary": f"{gpu}, TensorRT {trt.__version__}, {date[:10]}",
    }


def git_commit(checkout) -> str | None:
    """The commit of the `checkout` folder, with '+changes' when files differ from it; None
    outside git."""
    try:
        run = partial(
            subprocess.run, cwd=checkout, capture_output=True, text=True, check=True,
            timeout=30,
        )  # fmt: skip
        commit = run(["git", "rev-parse", "--short", "HEAD"]).stdout.strip()
        changed = run(["git", "status", "--porcelain", "--untracked-files=no"]).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+changes" if changed else "")

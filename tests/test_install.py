"""The TensorRT 8.6 install, as README.md gives it, resolves to what TensorRT 8.6 needs (CPU only).

TensorRT 8.6.0's wheel asks for nvidia-cudnn-cu12 without a version; pip resolves that to cuDNN 9,
while TensorRT 8.6 loads libcudnn.so.8, and its bindings were built against NumPy 1. pip's dry
run resolves the README's two install lines for Python 3.10 (the newest Python TensorRT 8.6 has
wheels for, and not CI's), downloading metadata only. It needs the package index, and skips,
saying so, where the index cannot be reached.
"""

import json
import re
import shlex
import subprocess
import sys

import pytest

from dynamic_shapes.gpu import tensorrt_problem
from scenario import HERE
from tests.support import run_script, script_with_imports_failing

INSTALL_LINE = re.compile(r"^\s*python3 -m pip install (.*)$", re.MULTILINE)


def install_lines(readme) -> list:
    """The arguments of each `python3 -m pip install` line of `readme` that installs TensorRT
    8.6 or the requirements under the TensorRT 8 constraints, in the README's order."""
    lines = [shlex.split(args, comments=True) for args in INSTALL_LINE.findall(readme)]
    return [
        args
        for args in lines
        if "tensorrt==8.6.0" in args or ("-c" in args and "constraints-tensorrt8.txt" in args)
    ]


@pytest.fixture(scope="module")
def index():
    """Skips where pip cannot reach the package index."""
    probe = subprocess.run(
        [sys.executable, "-m", "pip", "index", "versions", "tensorrt"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if probe.returncode != 0:
        pytest.skip(f"the package index cannot be reached: {probe.stderr.strip()[-300:]}")


def resolve_for_python_3_10(args, tmp_path) -> dict:
    """{distribution: version} that `pip install args` would install on Python 3.10 into an
    empty environment, from pip's own resolver (a dry run: nothing is installed)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    report = tmp_path / "report.json"
    command = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed"]
    command += ["--python-version", "3.10", "--only-binary=:all:", "--target", str(tmp_path)]
    command += ["--quiet", "--report", str(report), *args]
    result = subprocess.run(command, cwd=HERE, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    installed = json.loads(report.read_text())["install"]
    return {item["metadata"]["name"].lower(): item["metadata"]["version"] for item in installed}


def major(version: str) -> int:
    return int(version.split(".")[0])


@pytest.mark.parametrize("readme", ["README.md", "README.zh-CN.md"])
def test_the_readme_gives_the_constraints_to_both_tensorrt_8_installs(readme):
    first, second = install_lines((HERE / readme).read_text())
    assert "tensorrt==8.6.0" in first
    # On the line that installs TensorRT itself: pip keeps a cuDNN 9 that it installed before.
    assert first[first.index("-c") + 1] == "constraints-tensorrt8.txt"
    assert second[second.index("-r") + 1] == "requirements-dev.txt"
    assert second[second.index("-c") + 1] == "constraints-tensorrt8.txt"


def test_tensorrt_8_6_alone_would_bring_cudnn_9(index, tmp_path):
    # Guards the check below: without the constraints, pip picks the cuDNN TensorRT 8.6 cannot
    # load. Should a later resolution stop doing so, the constraint may go.
    assert major(resolve_for_python_3_10(["tensorrt==8.6.0"], tmp_path)["nvidia-cudnn-cu12"]) >= 9


def test_the_readme_install_resolves_what_tensorrt_8_6_needs(index, tmp_path):
    first, second = install_lines((HERE / "README.md").read_text())
    alone = resolve_for_python_3_10(first, tmp_path / "first")
    both = resolve_for_python_3_10(first + second, tmp_path / "both")
    for resolved in (alone, both):
        assert resolved["tensorrt"] == "8.6.0"
        assert major(resolved["nvidia-cudnn-cu12"]) == 8  # libcudnn.so.8
    assert major(both["numpy"]) == 1  # TensorRT 8's bindings were built against NumPy 1
    assert tuple(int(n) for n in both["polygraphy"].split(".")[:2]) < (0, 50)
    assert {"onnx", "onnxruntime", "cuda-bindings", "tritonclient", "pytest"} <= both.keys()


# A TensorRT that is installed but cannot load says what is missing and the fix for that case.


@pytest.mark.parametrize(
    ("error", "installed", "expected"),
    [
        (
            ModuleNotFoundError("No module named 'tensorrt'", name="tensorrt"),
            None,
            "TensorRT is not usable (not installed); install it with: "
            "python3 -m pip install tensorrt",
        ),
        (
            ImportError("libcudnn.so.8: cannot open shared object file: No such file or directory"),
            "8.6.0",
            "TensorRT 8.6.0 is installed but cannot load libcudnn.so.8 (libcudnn.so.8: cannot "
            "open shared object file: No such file or directory); fix: "
            "python3 -m pip install 'nvidia-cudnn-cu12<9'",
        ),
        (
            OSError("libcublasLt.so.12: cannot open shared object file"),
            "10.16.1.11",
            "TensorRT 10.16.1.11 is installed but cannot load libcublasLt.so.12 "
            "(libcublasLt.so.12: cannot open shared object file); fix: "
            "python3 -m pip install nvidia-cublas-cu12",
        ),
        (
            ImportError("libnvinfer.so.8: cannot open shared object file"),
            "8.6.0",
            "TensorRT 8.6.0 is installed but cannot load libnvinfer.so.8 (libnvinfer.so.8: "
            "cannot open shared object file): a library it needs is missing; see that "
            "TensorRT version's installation guide",
        ),
        (
            ImportError("numpy.core.multiarray failed to import"),
            "8.6.0",
            "TensorRT 8.6.0 is installed but was built for another NumPy (numpy.core.multiarray "
            "failed to import); fix: python3 -m pip install 'numpy<2'",
        ),
        (
            ModuleNotFoundError("No module named 'numpy'", name="numpy"),
            "8.6.0",
            "TensorRT 8.6.0 is installed but cannot be imported (No module named 'numpy'); "
            "reinstall it with pip",
        ),
    ],
)
def test_a_tensorrt_that_cannot_load_names_what_is_missing(error, installed, expected):
    assert tensorrt_problem(error, installed) == expected


def test_a_script_whose_tensorrt_cannot_load_cudnn_says_so_in_one_line():
    failure = {"tensorrt": "ImportError('libcudnn.so.8: cannot open shared object file')"}
    result = run_script(*script_with_imports_failing("example.py", failure))
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    (line,) = [line for line in result.stderr.splitlines() if "TensorRT" in line]
    # "TensorRT 8.6.0 is installed ..." where pip installed it, as on a GPU machine.
    starts = r"example\.py: TensorRT (\S+ )?is installed but cannot load libcudnn\.so\.8 \("
    assert re.match(starts, line), line
    assert line.endswith("fix: python3 -m pip install 'nvidia-cudnn-cu12<9'")
    assert "install it with: python3 -m pip install tensorrt" not in result.stderr

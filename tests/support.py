"""Helpers the tests share."""

import os
import subprocess
import sys

from scenario import HERE


def run_script(*args, env=None, timeout=300):
    """Runs `python3 <args>` in the project folder and returns the completed process."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=HERE,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def with_imports_failing(failures: dict, then: str) -> tuple:
    """Arguments for run_script that run the Python code `then` in an interpreter where
    importing each module named in `failures` (and its submodules) raises the exception
    given for it, as on a machine where that package is missing or broken, whether or not
    this one has it."""
    return (
        "-c",
        "import sys\n"
        f"FAILURES = {failures!r}\n"
        "class Fail:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        for module, error in FAILURES.items():\n"
        "            if name == module or name.startswith(module + '.'):\n"
        "                raise eval(error)\n"
        "sys.meta_path.insert(0, Fail())\n" + then,
    )


def script_with_imports_failing(script: str, failures: dict, *argv) -> tuple:
    """Arguments for run_script that run `script` with `argv` where `failures` fail to import."""
    return with_imports_failing(
        failures,
        f"import runpy\nsys.argv = {[script, *argv]!r}\n"
        f"runpy.run_path({script!r}, run_name='__main__')",
    )


TENSORRT_MISSING = {"tensorrt": "ModuleNotFoundError(\"No module named 'tensorrt'\")"}
CUDA_BINDINGS_MISSING = {"cuda": "ModuleNotFoundError(\"No module named 'cuda'\")"}
CUDA_BINDINGS_BROKEN = {
    "cuda.bindings": "OSError('libcudart.so.12: cannot open shared object file')"
}

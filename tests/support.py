"""Helpers the tests share."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

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


# An identity model for Triton's Python backend that runs on the CPU, and one that refuses
# every request: a real server to measure and to fail, on a machine without a GPU.
CPU_MODEL = """\
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        if {refuse}:
            refusal = pb_utils.TritonError("refused")
            return [pb_utils.InferenceResponse(error=refusal) for _ in requests]
        return [
            pb_utils.InferenceResponse(
                [pb_utils.Tensor("Y", pb_utils.get_input_tensor_by_name(r, "X").as_numpy())]
            )
            for r in requests
        ]
"""
CPU_CONFIG = """\
name: "{name}"
backend: "python"
max_batch_size: 64
input {{ name: "X" data_type: TYPE_FP32 dims: [3, 28, 28] }}
output {{ name: "Y" data_type: TYPE_FP32 dims: [3, 28, 28] }}
instance_group {{ kind: KIND_CPU count: 1 }}
"""


def write_cpu_repository(folder, names=("identity", "refuser")):
    """A model repository of CPU models: "refuser" refuses every request, any other is the
    identity."""
    for name in names:
        (folder / name / "1").mkdir(parents=True)
        (folder / name / "config.pbtxt").write_text(CPU_CONFIG.format(name=name))
        model = CPU_MODEL.format(refuse=name == "refuser")
        (folder / name / "1" / "model.py").write_text(model)
    return folder


@contextlib.contextmanager
def tritonserver(workspace, repository, ports: dict, *options, backends=None):
    """nvidia-pytriton's tritonserver on 127.0.0.1 (ports: {"http": ..., "grpc": ...,
    "metrics": ...}) as serve.py starts it, with the backend folder `backends` (default: its
    Python backend, as serve.py sets it up), stopped when the block ends; yields the process,
    whose output goes to workspace/tritonserver.log."""
    import serve

    binary, python_backend, libraries = serve.tritonserver()
    if backends is None:
        backends = serve.backend_folder(
            python_backend, binary.parents[1] / "python_backend_stubs", workspace / "backends"
        )
    command = [
        str(binary), f"--model-repository={repository}", f"--backend-directory={backends}",
        *(f"--{kind}-address=127.0.0.1" for kind in ports),
        *(f"--{kind}-port={port}" for kind, port in ports.items()),
        "--exit-on-error=true", "--strict-readiness=true", *options,
    ]  # fmt: skip
    with open(workspace / "tritonserver.log", "wb") as log:
        server = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=serve.server_environment(libraries)
        )
    try:
        yield server
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def wait_for(url, timeout_s=60) -> None:
    """Returns once `url` answers 200."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.2)


def free_ports(count) -> list:
    """Ports nothing listens on now, on 127.0.0.1."""
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports

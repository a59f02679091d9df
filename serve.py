#!/usr/bin/env python3
"""
Serves the saved engine on Triton Inference Server: writes a model repository and runs the
`tritonserver` that the nvidia-pytriton package ships on it, until Ctrl-C or SIGTERM. By default
for Triton's Python backend (the engine served through the dispatcher, which splits any batch
among the profiles); with --backend tensorrt, the repository export_triton.py writes, served by
Triton's own TensorRT backend, found in the server's backend folder or --backend-directory.

    python3 serve.py                  # on localhost: HTTP 8000, gRPC 8001, metrics 8002
    python3 serve.py --max-queue-delay-us 500 --preferred-batch-sizes 32,128
    python3 serve.py --repository repo/ --no-serve   # only write the repository
    python3 serve.py --backend tensorrt --instances 2

The model is ready once the engine is loaded and every context is in place; this script says so
then, and not before. Requests carry the engine's inputs by name (for the walkthrough's
engine, X float32 [batch, 3, 28, 28], and Y comes back); docs/triton.md shows tritonclient calls
over HTTP and gRPC. The repository is laid out to run as it is in NVIDIA's Triton container
too, with the TensorRT version the engine was built with.
"""

import importlib.util
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from dynamic_shapes import cli, options
from dynamic_shapes.engines import read_record
from dynamic_shapes.onnx_inputs import read_model_tensors
from dynamic_shapes.triton import (
    DEFAULT_MAX_BATCH_SIZE,
    INT32_MAX,
    batch_ranges_of,
    check_batching,
    check_built_from,
    export_tensorrt_repository,
    python_config,
    replace_repository,
    write_python_repository,
)
from scenario import ENGINE_PATH, HERE, MODEL_PATH

DEFAULT_INSTANCES = 1
READY_TIMEOUT_S = 300  # building every context and graph of a large engine takes a while
STOP_TIMEOUT_S = 30
PYTRITON_INSTALL = "python3 -m pip install -r requirements-triton.txt"
# The model Triton's Python backend runs, copied into the repository as 1/model.py.
TRITON_MODEL = HERE / "triton_model" / "model.py"
PORTS = ("--http-port", "--grpc-port", "--metrics-port")
# Triton's TensorRT backend, as a backend folder holds it (NVIDIA's container: /opt/tritonserver/
# backends/tensorrt/).
TENSORRT_BACKEND = Path("tensorrt") / "libtriton_tensorrt.so"
# The options that configure the dispatcher's model alone, and their defaults.
PYTHON_BACKEND_OPTIONS = {
    "--preferred-batch-sizes": None,
    "--max-batch-size": DEFAULT_MAX_BATCH_SIZE,
    "--contexts-per-profile": 1,
}


def parse_args(argv=None):
    parser = cli.make_parser(__file__, __doc__)
    options.add_engine(parser, ENGINE_PATH, "the saved engine to serve (%(default)s)", built=False)
    options.add_model_file(parser, MODEL_PATH, "the ONNX model it was built from")
    options.add_model_name(parser)
    parser.add_argument(
        "--repository",
        type=options.repository,
        help="where to write the model repository: new, empty, or one this script or "
        "export_triton.py wrote, which is replaced (default: a temporary folder, removed after)",
    )
    options.add_host(parser, "address to listen on (%(default)s)")
    options.add_ports(parser, PORTS)
    options.add_max_queue_delay(parser)
    parser.add_argument(
        "--preferred-batch-sizes",
        type=options.batch_sizes(INT32_MAX, may_be_empty=True),
        help="the batch sizes the dynamic batcher gathers, none above --max-batch-size "
        "(default: the profiles' opts and maxes up to it)",
    )
    options.add_no_dynamic_batching(parser, "serve each request as it comes, for comparison")
    parser.add_argument(
        "--max-batch-size",
        type=options.triton_int32,
        default=DEFAULT_MAX_BATCH_SIZE,
        help="the largest batch a request, or a gathered batch, may have (%(default)s)",
    )
    options.add_instances(
        parser,
        DEFAULT_INSTANCES,
        "model instances on the GPU, a process each: Triton runs that many batches at once "
        "(%(default)s)",
    )
    options.add_contexts_per_profile(
        parser, 1, "execution contexts per profile in each instance (%(default)s)"
    )
    parser.add_argument(
        "--no-serve", action="store_true", help="write the repository (--repository) and stop"
    )
    parser.add_argument(
        "--backend",
        choices=("python", "tensorrt"),
        default="python",
        help="python: the dispatcher in Triton's Python backend; tensorrt: the repository "
        "export_triton.py writes, served by Triton's TensorRT backend (%(default)s)",
    )
    parser.add_argument(
        "--backend-directory",
        type=Path,
        help="with --backend tensorrt, the backend folder that holds it, as tensorrt/"
        "libtriton_tensorrt.so (default: the server's own, in nvidia-pytriton)",
    )
    options.add_no_cuda_graphs(
        parser, "with --backend tensorrt, capture no CUDA graph, for comparison"
    )
    args = parser.parse_args(argv)
    if args.backend == "tensorrt":
        for flag, default in PYTHON_BACKEND_OPTIONS.items():
            if getattr(args, flag[2:].replace("-", "_")) != default:
                parser.error(f"{flag} configures the Python backend's model; drop it or "
                             "--backend tensorrt")  # fmt: skip
    else:
        for flag in ("--backend-directory", "--no-cuda-graphs"):
            if getattr(args, flag[2:].replace("-", "_")) not in (None, False):
                parser.error(f"{flag} goes with --backend tensorrt")
    if args.no_serve and args.repository is None:
        parser.error("--no-serve writes the repository only: name it with --repository")
    if args.preferred_batch_sizes == ():
        parser.error(
            "argument --preferred-batch-sizes: name at least one batch size; "
            "--no-dynamic-batching turns the batcher off"
        )
    options.check_queue_delay(parser, args)
    if args.no_dynamic_batching and args.preferred_batch_sizes:
        parser.error("--preferred-batch-sizes configures the dynamic batcher; drop one of them")
    if args.preferred_batch_sizes:
        try:
            check_batching(args.max_batch_size, args.preferred_batch_sizes)
        except ValueError as error:
            parser.error(f"argument --preferred-batch-sizes: {error} (--max-batch-size)")
    options.check_ports(parser, args, PORTS)
    options.check_model_name(parser, args)
    return args


def write_repository(args, folder) -> list:
    """Writes the repository for the engine and the backend into `folder`; its model folders."""
    if args.backend == "tensorrt":
        written = export_tensorrt_repository(
            folder, args.engine, args.model, args.name, "serve.py",
            queue_delay_us=args.max_queue_delay_us, instances=args.instances,
            dynamic_batching=not args.no_dynamic_batching, cuda_graphs=not args.no_cuda_graphs,
        )  # fmt: skip
        return [path.parent for path in written if path.name == "config.pbtxt"]
    record = read_record(args.engine)
    ranges = batch_ranges_of(record)
    inputs, outputs = read_model_tensors(args.model)  # any dynamic dimensions: -1 in the config
    check_built_from(args.engine, record, args.model)
    preferred = [] if args.no_dynamic_batching else args.preferred_batch_sizes
    config = python_config(
        args.name, ranges, inputs, outputs, args.engine.name, args.max_queue_delay_us,
        preferred, args.max_batch_size, args.contexts_per_profile, args.instances,
    )  # fmt: skip
    comment = (
        f"Written by serve.py for {args.engine.name}, built by TensorRT {record['tensorrt']} for "
        f"{record['gpu']}:\nTriton's Python environment needs that TensorRT version, and "
        "requirements.txt."
    )
    replace_repository(folder, "serve.py")
    return [write_python_repository(folder, config, TRITON_MODEL, args.engine, comment)]


def tritonserver() -> tuple[Path, Path, Path]:
    """The tritonserver that nvidia-pytriton ships: (binary, Python backend folder, the folder
    of the libraries it links), or RuntimeError saying how to install it."""
    spec = importlib.util.find_spec("pytriton")
    if spec is None or spec.origin is None:
        raise RuntimeError(f"serving needs nvidia-pytriton's tritonserver: {PYTRITON_INSTALL}")
    root = Path(spec.origin).parent
    return (
        root / "tritonserver" / "bin" / "tritonserver",
        root / "tritonserver" / "backends" / "python",
        root.parent / "nvidia_pytriton.libs",
    )


def tensorrt_backend_folder(binary: Path, given) -> Path:
    """The backend folder that holds Triton's TensorRT backend: `given`, or else the one beside
    the server's binary; RuntimeError, in one line naming where it looked, where it has none."""
    folder = Path(given) if given else binary.parents[1] / "backends"
    if not (folder / TENSORRT_BACKEND).is_file():
        raise RuntimeError(
            f"no TensorRT backend in {folder} (looked for {folder / TENSORRT_BACKEND}): it "
            "comes with NVIDIA's Triton container, not with nvidia-pytriton; name a folder that "
            "holds one with --backend-directory"
        )
    return folder


def backend_folder(python_backend: Path, stubs: Path, folder: Path) -> Path:
    """A backend folder whose Python backend runs this interpreter's version: the backend's
    library linked, and the stub built for this Python copied beside it."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = stubs / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise RuntimeError(f"nvidia-pytriton has no Python backend stub for Python {version}")
    target = folder / "python"
    target.mkdir(parents=True)
    for item in python_backend.iterdir():
        if item.name != "__pycache__":
            (target / item.name).symlink_to(item)
    shutil.copy2(stub, target / stub.name)
    return folder


def server_environment(libraries: Path) -> dict:
    """The environment the server and the Python backend's stub need: the server's libraries
    and this interpreter's libpython on the library path, and this interpreter (its virtual
    environment) first on PATH, which is the Python the stub embeds."""
    env = dict(os.environ)
    paths = [str(libraries), sysconfig.get_config_var("LIBDIR") or ""]
    env["LD_LIBRARY_PATH"] = ":".join(p for p in [*paths, env.get("LD_LIBRARY_PATH", "")] if p)
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    return env


def check_ports_free(host, ports: dict) -> None:
    """RuntimeError naming the option of a port something already listens on at `host`:
    another server there would answer in place of the one this script starts."""
    for flag, port in ports.items():
        try:
            family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        except socket.gaierror as error:
            raise RuntimeError(f"cannot listen on {host} (--host): {error.strerror}") from None
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            # As a server binds: a port that only lingers after a closed connection is free.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as error:
                raise RuntimeError(
                    f"cannot listen on {host} port {port} ({flag}): {error.strerror}; stop what "
                    "listens there or choose another port"
                ) from None


def wait_until_ready(server, urls: dict, server_id, model, timeout_s, log_path) -> None:
    """Returns once the server answering at `urls` ("http" and "metrics", each up to the port)
    is the one started as `server` (its --id is `server_id`), with `model` ready; RuntimeError
    with the server's reason if it exits first or the time runs out. Another server that
    answers at those addresses is never taken for it."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"tritonserver exited ({server.returncode}): {last_error(log_path)}")
        if (
            server_name(f"{urls['http']}/v2") == server_id
            and fetch(f"{urls['http']}/v2/models/{model}/ready") is not None
            # With --strict-readiness, ready once every model of the repository is.
            and fetch(f"{urls['http']}/v2/health/ready") is not None
            # Triton opens its metrics port last, and exits if it cannot.
            and fetch(f"{urls['metrics']}/metrics") is not None
            and server.poll() is None
        ):
            return
        time.sleep(0.2)
    raise RuntimeError(f"the model was not ready after {timeout_s} s: {last_error(log_path)}")


def server_name(url):
    """The name (--id) a Triton server gives in its metadata at `url`, or None."""
    try:
        return json.loads(fetch(url) or b"{}").get("name")
    except (ValueError, AttributeError):  # something else answers there
        return None


def fetch(url):
    """The body of a 200 answer at `url`, or None."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.read() if response.status == 200 else None
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


# A line of Triton's log: severity and date, time, thread, source file and line, then the
# message, quoted.
LOG_LINE = re.compile(r'^[IWE]\d{4} [\d:.]+\s+\d+ [\w.]+:\d+\]\s+"?(.*?)"?\s*$')


def last_error(log_path) -> str:
    """Triton's own reason for failing, in one line: why the model failed to load, where it
    says so; else what it said after its usage text, for options it refused; else its last
    error line; else its last line."""
    text = Path(log_path).read_text(errors="replace")
    lines = [line.strip() for line in text.splitlines()]
    for line in lines:
        if "failed to load '" in line and " version " in line:  # the reason, in one line
            reason = line[line.index("failed to load '") :].rstrip('"')
            return reason.split("\\n")[0]  # without the model's Python traceback, if any
    if lines and lines[0].startswith("Usage: tritonserver"):
        # The usage text, a blank line, and the reason after it.
        reason = text.rstrip().split("\n\n")[-1]
        return " ".join(line.strip() for line in reason.splitlines())
    errors = [log_message(line) for line in lines if line.startswith("E") and LOG_LINE.match(line)]
    errors = errors or [line for line in lines if line.startswith("error:")]
    return errors[-1] if errors else last_line(lines)


def last_line(lines: list) -> str:
    """The last line of Triton's log that is not blank, without its prefix; "(no log)"."""
    return next((log_message(line) for line in reversed(lines) if line.strip()), "(no log)")


def log_message(line: str) -> str:
    """A line of Triton's log without its prefix and quotes; any other line as it is."""
    match = LOG_LINE.match(line)
    return match.group(1).strip() if match else line


def stop(server, log_path) -> None:
    """Stops the server as Ctrl-C would, waiting for its requests to finish; kills it if it
    does not stop in time, saying so with the last line of its log (Triton names there what
    it still waited for)."""
    if server.poll() is None:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
            last = last_line(Path(log_path).read_text(errors="replace").splitlines())
            print(
                f"serve.py: tritonserver did not stop within {STOP_TIMEOUT_S} s and was killed; "
                f"its log's last line: {last}",
                file=sys.stderr,
                flush=True,
            )


def serve(args, workspace: Path) -> None:
    binary, python_backend, libraries = tritonserver()
    ports = {flag: getattr(args, flag[2:].replace("-", "_")) for flag in PORTS}
    if not args.no_serve:
        if args.backend == "tensorrt":
            backends = tensorrt_backend_folder(binary, args.backend_directory)
        check_ports_free(args.host, ports)
    repository = args.repository or workspace / "repository"
    for model in write_repository(args, repository):
        print(f"Wrote {model}")
    if args.no_serve:
        return
    if args.backend == "python":
        backends = backend_folder(
            python_backend, binary.parents[1] / "python_backend_stubs", workspace / "backends"
        )
    log_path = workspace / "tritonserver.log"
    # An id of its own, which the server gives in its metadata: how this script tells its own
    # server from another that answers at the same address.
    server_id = f"serve.py-{os.getpid()}-{secrets.token_hex(4)}"
    command = [
        str(binary), f"--id={server_id}", f"--model-repository={repository}",
        f"--backend-directory={backends}",
        f"--http-address={args.host}", f"--http-port={args.http_port}",
        f"--grpc-address={args.host}", f"--grpc-port={args.grpc_port}",
        f"--metrics-address={args.host}", f"--metrics-port={args.metrics_port}",
        "--exit-on-error=true", "--strict-readiness=true",
    ]  # fmt: skip
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=server_environment(libraries)
        )
    # SIGTERM stops the script as Ctrl-C does, so that the server is stopped either way.
    cli.interrupt_on_sigterm()
    try:
        progress = cli.Progress()
        try:
            with progress.ticking(f"loading {args.name}"):
                urls = {
                    "http": f"http://{cli.url_host(args.host)}:{args.http_port}",
                    "metrics": f"http://{cli.url_host(args.host)}:{args.metrics_port}",
                }
                wait_until_ready(server, urls, server_id, args.name, READY_TIMEOUT_S, log_path)
        finally:
            progress.done()
        print(
            f"Serving {args.name} on {args.host}: HTTP {args.http_port}, gRPC {args.grpc_port}, "
            f"metrics {args.metrics_port} (tritonserver pid {server.pid}). Ctrl-C stops it.",
            flush=True,
        )
        try:
            server.wait()
        except KeyboardInterrupt:  # the way to stop a server that serves: not a failure
            print("Stopping tritonserver", flush=True)
            return
        raise RuntimeError(f"tritonserver exited ({server.returncode}): {last_error(log_path)}")
    finally:
        stop(server, log_path)


def run(args) -> None:
    with tempfile.TemporaryDirectory(prefix="serve-") as workspace:
        serve(args, Path(workspace))


def main(argv=None) -> int:
    return cli.main(parse_args, run, argv)


if __name__ == "__main__":
    sys.exit(main())

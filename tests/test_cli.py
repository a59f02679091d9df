"""Every script's command line without a GPU: help, bad arguments refused before any work,
clean failures without TensorRT or cuda-bindings, and one convention for exit codes."""

import os
import stat

import pytest

from dynamic_shapes import cli
from scenario import CONVNET_PATH, MODEL_PATH
from tests.support import (
    CUDA_BINDINGS_BROKEN,
    CUDA_BINDINGS_MISSING,
    TENSORRT_MISSING,
    run_script,
    script_with_imports_failing,
    with_imports_failing,
)

SCRIPTS = [
    "example.py",
    "build_model.py",
    "benchmark.py",
    "stress.py",
    "export_triton.py",
    "serve.py",
]
GPU_SCRIPTS = ["example.py", "benchmark.py", "stress.py"]


def assert_one_clean_line(result, script, exit_code, starts):
    """The convention: the exit code, nothing on stdout, one line on stderr, no traceback."""
    assert result.returncode == exit_code, result.stdout + result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert lines[0].startswith(f"{script}: {starts}"), result.stderr
    return lines


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_works_without_tensorrt(script):
    result = run_script(*script_with_imports_failing(script, TENSORRT_MISSING, "--help"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: {script}")
    assert "--verbose" in result.stdout


@pytest.mark.parametrize("script", GPU_SCRIPTS)
def test_without_tensorrt_each_script_says_how_to_install_it(script):
    convnet_existed = CONVNET_PATH.exists()
    result = run_script(*script_with_imports_failing(script, TENSORRT_MISSING))
    # A run that cannot happen writes nothing: not even the convnet benchmark.py measures.
    assert CONVNET_PATH.exists() == convnet_existed
    lines = assert_one_clean_line(result, script, 1, "TensorRT is not usable")
    assert "python3 -m pip install tensorrt" in lines[0]
    assert len(lines) <= 2  # and, on a machine without a GPU, a line that says so


@pytest.mark.parametrize("failure", [CUDA_BINDINGS_MISSING, CUDA_BINDINGS_BROKEN])
@pytest.mark.parametrize("script", GPU_SCRIPTS)
def test_without_working_cuda_bindings_each_script_says_how_to_install_them(script, failure):
    result = run_script(*script_with_imports_failing(script, failure))
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    (line,) = [line for line in result.stderr.splitlines() if "cuda-bindings" in line]
    assert line.startswith(f"{script}: cuda-bindings is not usable (")
    assert line.endswith("install it with: python3 -m pip install 'cuda-bindings>=12.8,<13'")


def test_pytest_skips_gpu_tests_with_the_reason_when_cuda_bindings_are_broken():
    test = "tests/test_dispatch.py::test_graphs_serve_the_static_profiles"
    result = run_script(
        *with_imports_failing(
            CUDA_BINDINGS_BROKEN,
            f"import pytest\nsys.exit(pytest.main(['-p', 'no:cacheprovider', '-rs', {test!r}]))",
        )
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 skipped" in result.stdout
    assert "needs TensorRT and a CUDA GPU: " in result.stdout
    assert "cuda-bindings is not usable (libcudart.so.12" in result.stdout


@pytest.mark.parametrize(
    ("where", "message"),
    [
        (
            "/nonexistent/x.onnx",
            "cannot write /nonexistent/x.onnx: there is no folder /nonexistent",
        ),
        ("{tmp}", "{tmp} is a folder; name a file to write"),
    ],
)
def test_build_model_refuses_an_output_it_cannot_write(tmp_path, where, message):
    where, message = where.format(tmp=tmp_path), message.format(tmp=tmp_path)
    result = run_script("build_model.py", "--output", where)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == f"build_model.py: error: argument --output: {message}"


@pytest.mark.parametrize(
    ("script", "argv", "message"),
    [
        ("benchmark.py", ["--json", "/nonexistent/dir/x.json"], "argument --json: cannot write"),
        ("benchmark.py", ["--plot", "/nonexistent/x.png"], "argument --plot: cannot write"),
        ("stress.py", ["--json", "/nonexistent/dir/x.json"], "argument --json: cannot write"),
        ("example.py", ["--engine", "/nonexistent/x.engine"], "argument --engine: cannot write"),
        ("benchmark.py", ["--warmup", "-5"], "argument --warmup: must be 0 or more: -5"),
        ("stress.py", ["--warmup", "-5"], "argument --warmup: must be 0 or more: -5"),
        ("stress.py", ["--threads", "0"], "argument --threads: must be 1 or more: 0"),
        ("benchmark.py", ["--rounds", "x"], "argument --rounds: not an integer: 'x'"),
        (
            "benchmark.py",
            ["--sections", "memory", "--plot", "x.png"],
            "--plot draws latencies, and --sections memory measures none",
        ),
    ],
)
def test_bad_arguments_are_refused_before_any_work(script, argv, message):
    # Without TensorRT: a refusal that came after the GPU check would show as that instead.
    result = run_script(*script_with_imports_failing(script, TENSORRT_MISSING, *argv))
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines()[-1].startswith(f"{script}: error: {message}"), result.stderr


@pytest.mark.parametrize("script", ["example.py", "benchmark.py"])
def test_a_bad_model_fails_with_exit_1_from_every_script(tmp_path, script):
    model = tmp_path / "notes.onnx"
    model.write_text("this is not a model\n")
    result = run_script(script, "--model", str(model))
    lines = assert_one_clean_line(result, script, 1, f"{model} is not an ONNX model")
    assert len(lines) == 1


@pytest.mark.parametrize(
    ("script", "option"),
    [
        ("build_model.py", "--output"),
        ("benchmark.py", "--json"),
        ("stress.py", "--json"),
        ("loadgen.py", "--json"),
        ("export_triton.py", "--output"),
        ("serve.py", "--repository"),
    ],
)
def test_an_output_under_a_file_is_refused_as_root_too(tmp_path, script, option):
    # No one, root included, can write below a regular file.
    notes = tmp_path / "notes.txt"
    notes.write_text("mine\n")
    result = run_script(script, option, str(notes / "out"))
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines()[-1].startswith(f"{script}: error: argument {option}: ")
    assert result.stderr.rstrip().endswith(f"{notes} is a file, not a folder")
    assert notes.read_text() == "mine\n"


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into any folder")
def test_an_output_folder_without_write_permission_is_refused(tmp_path):
    tmp_path.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        result = run_script("build_model.py", "--output", str(tmp_path / "m.onnx"))
    finally:
        tmp_path.chmod(stat.S_IRWXU)
    assert result.returncode == 2
    assert "is not writable" in result.stderr


@pytest.mark.parametrize(
    ("script", "argv", "starts"),
    [
        ("example.py", ["--model", "{tmp}/notes.txt"], "{tmp}/notes.txt is not an ONNX model"),
        ("benchmark.py", ["--model", "{tmp}/notes.txt"], "{tmp}/notes.txt is not an ONNX model"),
        ("export_triton.py", ["--engine", "{tmp}/none.engine"], "no engine at {tmp}/none.engine"),
        ("serve.py", ["--engine", "{tmp}/none.engine"], "no engine at {tmp}/none.engine"),
        ("loadgen.py", ["--metrics-port", "1"], "no Triton metrics at http://127.0.0.1:1/metrics"),
    ],
)
def test_a_failure_is_exactly_one_line(tmp_path, script, argv, starts):
    (tmp_path / "notes.txt").write_text("this is not a model\n")
    argv = [arg.format(tmp=tmp_path) for arg in argv]
    result = run_script(script, *argv)
    lines = assert_one_clean_line(result, script, 1, starts.format(tmp=tmp_path))
    assert len(lines) == 1, result.stderr


# The convention itself, in-process.


@pytest.fixture
def args():
    return cli.make_parser("tool.py", "A tool.").parse_args([])


def raising(error):
    def work():
        raise error

    return work


def test_run_returns_what_the_work_returns(args):
    assert cli.run(args, lambda: None) == 0
    assert cli.run(args, lambda: 1) == 1


def test_main_parses_then_runs_the_work_with_the_arguments(capsys):
    def parse_args(argv):
        parser = cli.make_parser("tool.py", "A tool.")
        parser.add_argument("--count", type=cli.positive, default=1)
        return parser.parse_args(argv)

    counted = []
    assert cli.main(parse_args, lambda args: counted.append(args.count), ["--count", "3"]) == 0
    assert counted == [3]
    assert cli.main(parse_args, lambda args: args.count, ["--count", "2"]) == 2
    assert cli.main(parse_args, lambda args: 1 / 0, []) == 1
    assert capsys.readouterr().err == "tool.py: division by zero\n"
    with pytest.raises(SystemExit) as refused:  # a bad argument: argparse's exit 2, no work
        cli.main(parse_args, counted.append, ["--count", "0"])
    assert refused.value.code == 2 and counted == [3]


def test_an_error_is_one_line_and_exit_1(args, capsys):
    assert cli.run(args, raising(ValueError("the model has no graph"))) == 1
    assert capsys.readouterr().err == "tool.py: the model has no graph\n"


def test_ctrl_c_is_exit_130(args, capsys):
    assert cli.run(args, raising(KeyboardInterrupt())) == 130
    assert capsys.readouterr().err == "tool.py: interrupted\n"


def test_verbose_adds_the_traceback(capsys):
    verbose = cli.make_parser("tool.py", "A tool.").parse_args(["--verbose"])
    assert cli.run(verbose, raising(RuntimeError("engine build failed"))) == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback") and err.endswith("tool.py: engine build failed\n")


def test_an_error_without_words_is_named_by_its_type(args, capsys):
    assert cli.run(args, raising(MemoryError())) == 1
    assert capsys.readouterr().err == "tool.py: MemoryError\n"


def test_build_model_replaces_a_model_but_no_other_file(tmp_path):
    notes, model = tmp_path / "notes.md", tmp_path / "m.onnx"
    notes.write_text("# my notes\n")
    result = run_script("build_model.py", "--output", str(notes))
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        f"build_model.py: error: argument --output: {notes} exists and is not an ONNX model; "
        "refusing to overwrite it: name another path"
    )
    assert notes.read_text() == "# my notes\n"
    for _ in range(2):  # written, then replaced
        assert run_script("build_model.py", "--output", str(model)).returncode == 0
    assert model.read_bytes() == MODEL_PATH.read_bytes()


@pytest.mark.parametrize("script", ["serve.py", "export_triton.py"])
def test_a_queue_delay_without_the_batcher_is_refused_whatever_its_value(script):
    # 100 is the default: given explicitly, it is refused all the same.
    result = run_script(script, "--no-dynamic-batching", "--max-queue-delay-us", "100")
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        f"{script}: error: --max-queue-delay-us configures the dynamic batcher; drop one of them"
    )

"""Command-line behaviour that needs no GPU: help, and a clean failure without TensorRT."""

import pytest

from tests.support import run_script


def without_tensorrt(script):
    """Arguments that run `script` in an interpreter where `import tensorrt` fails, as it does
    on a machine without TensorRT, whether or not this one has it."""
    return (
        "-c",
        "import runpy, sys; sys.modules['tensorrt'] = None; "
        f"sys.argv = [{script!r}]; runpy.run_path({script!r}, run_name='__main__')",
    )


@pytest.mark.parametrize("script", ["example.py", "build_model.py", "benchmark.py", "stress.py"])
def test_help_works_without_tensorrt(script):
    result = run_script(script, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage:")


@pytest.mark.parametrize("script", ["example.py", "benchmark.py", "stress.py"])
def test_without_tensorrt_each_script_says_how_to_install_it_without_a_traceback(script):
    result = run_script(*without_tensorrt(script))
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert 1 <= len(lines) <= 2, result.stderr
    assert lines[0].startswith(f"{script}: TensorRT is not usable")
    assert "python3 -m pip install tensorrt" in lines[0]
    assert "Traceback" not in result.stderr

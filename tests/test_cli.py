"""Command-line behaviour that needs no GPU: help, and a clean failure without TensorRT."""

import pytest

from tests.support import run_script

# Runs example.py as a script in an interpreter where `import tensorrt` fails, as it does
# on a machine without TensorRT, whether or not this one has it.
WITHOUT_TENSORRT = (
    "-c",
    "import runpy, sys; sys.modules['tensorrt'] = None; "
    "sys.argv = ['example.py']; runpy.run_path('example.py', run_name='__main__')",
)


@pytest.mark.parametrize("script", ["example.py", "build_model.py", "benchmark.py", "stress.py"])
def test_help_works_without_tensorrt(script):
    result = run_script(script, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage:")


def test_example_without_tensorrt_says_how_to_install_it_without_a_traceback():
    result = run_script(*WITHOUT_TENSORRT)
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert 1 <= len(lines) <= 2, result.stderr
    assert lines[0].startswith("example.py: TensorRT is not usable")
    assert "python3 -m pip install tensorrt" in lines[0]
    assert "Traceback" not in result.stderr

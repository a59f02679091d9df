"""The library stands on its own: dynamic_shapes imports no script, also inside a function,
and every one of its modules imports where neither the scripts nor Triton's Python backend
can be imported (CPU only)."""

import ast
import pkgutil

import dynamic_shapes
from scenario import HERE
from tests.support import run_script, with_imports_failing

SCRIPTS = sorted(path.stem for path in HERE.glob("*.py"))
PACKAGE = HERE / "dynamic_shapes"


def imported_modules(path) -> set:
    """The top-level names of every module a file imports, wherever the import stands."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_the_scripts_are_known():
    assert {"scenario", "benchmark", "stress", "serve", "example"} <= set(SCRIPTS)


def test_no_module_of_the_library_imports_a_script():
    found = {
        str(path.relative_to(HERE)): sorted(imported_modules(path) & set(SCRIPTS))
        for path in sorted(PACKAGE.rglob("*.py"))
    }
    assert not {path: scripts for path, scripts in found.items() if scripts}


def test_every_module_imports_without_the_scripts_or_triton():
    modules = [
        info.name for info in pkgutil.walk_packages(dynamic_shapes.__path__, "dynamic_shapes.")
    ]
    assert "dynamic_shapes.serving.dispatcher" in modules
    error = "ModuleNotFoundError('not on this machine')"
    failures = {name: error for name in [*SCRIPTS, "triton_python_backend_utils"]}
    code = "import importlib\n" + "".join(f"importlib.import_module({m!r})\n" for m in modules)
    result = run_script(*with_imports_failing(failures, code))
    assert result.returncode == 0, result.stderr

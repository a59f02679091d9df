"""Every TensorRT name the project uses exists in TensorRT 8.6, 10 and 11 (CPU only).

TensorRT 10 and 11 cannot be installed without NVIDIA's own package index, but PyPI serves
their Python bindings: a pybind11 extension module (tensorrt.so) and a small __init__.py. The
names the module binds sit in it as the NUL-terminated strings pybind11 registers, and need no
TensorRT library to be read. This test downloads those wheels (about 6 MB, cached), collects the
TensorRT names the project's code uses, and checks each against every version below.
"""

import ast
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from scenario import HERE

# The bindings of the oldest and newest release of each major version the project supports.
BINDINGS = {
    "8.6": "tensorrt-bindings==8.6.1",
    "10.0": "tensorrt-cu12-bindings==10.0.1",
    "10.16": "tensorrt-cu12-bindings==10.16.1.11",
    "11.0": "tensorrt-cu12-bindings==11.0.0.114",
    "11.4": "tensorrt-cu12-bindings==11.4.0.106",
}
# Names the code reaches through a fallback: every version needs one name of each group.
# TensorRT 10.1 added device_memory_size_v2, and 11 removed device_memory_size.
ALTERNATIVES = [{"device_memory_size_v2", "device_memory_size"}]
# Names the code reads with getattr(..., None) and does without where a version lacks them.
# TensorRT 10 shares profiles between contexts by default, and 11 removed the switch.
NOT_NEEDED_FROM = {"PROFILE_SHARING_0806": "11.0"}
# What the code calls TensorRT things: the module, engines and execution contexts.
MODULE_NAMES = {"trt", "tensorrt"}
OBJECT_NAMES = {"engine", "context", "_context", "builder_config"}
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "tensorrt-bindings"


def download(requirement) -> Path:
    """The wheel of `requirement` (for CPython 3.10 on x86-64 Linux), downloaded once."""
    name, version = requirement.split("==")
    pattern = f"{name.replace('-', '_')}-{version}-*.whl"
    found = sorted(CACHE.glob(pattern))
    if not found:
        platforms = ["manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"]
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"]
        command += ["--only-binary=:all:", "--python-version", "3.10", "-d", str(CACHE)]
        command += [arg for platform in platforms for arg in ("--platform", platform)]
        result = subprocess.run([*command, requirement], capture_output=True, text=True)
        found = sorted(CACHE.glob(pattern))
        if not found:
            pytest.skip(f"cannot download {requirement} from the package index: {result.stderr}")
    return found[0]


def bound_names(wheel: Path) -> set:
    """The names a TensorRT bindings wheel offers: the identifiers its extension module
    registers, and the top-level names of its Python package."""
    names = set()
    with zipfile.ZipFile(wheel) as archive:
        for member in archive.namelist():
            if re.fullmatch(r"tensorrt[a-z_]*/tensorrt[^/]*\.so", member):
                for string in archive.read(member).split(b"\0"):
                    if re.fullmatch(rb"[A-Za-z_][A-Za-z0-9_]*", string):
                        names.add(string.decode())
            elif re.fullmatch(r"tensorrt[a-z_]*/__init__\.py", member):
                tree = ast.parse(archive.read(member))
                names |= {
                    target.id if isinstance(target, ast.Name) else target.name
                    for node in tree.body
                    for target in getattr(node, "targets", [node])
                    if isinstance(target, ast.Name | ast.FunctionDef | ast.ClassDef)
                }
    return names


def offers(names: set, name: str) -> bool:
    # A linker may store a short string as the tail of a longer one ("engine" inside
    # "deserialize_cuda_engine"), so a name that ends another one counts as present.
    return name in names or any(other.endswith(name) for other in names)


def receiver(node) -> str | None:
    """The last name of an expression: 'context' for `self.context`, 'trt' for `trt`."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def chain_root(node) -> str | None:
    while isinstance(node, ast.Attribute):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def used_tensorrt_names(root: Path) -> dict:
    """{name: [file:line, ...]} for every attribute the project's code reads from the TensorRT
    module, an engine, an execution context or a builder config, getattr() included."""
    used = {}
    for path in sorted(root.rglob("*.py")):
        if any(part.startswith(".") for part in path.relative_to(root).parts):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            name = None
            if isinstance(node, ast.Attribute) and (
                receiver(node.value) in OBJECT_NAMES or chain_root(node.value) in MODULE_NAMES
            ):
                name = node.attr
            elif (
                isinstance(node, ast.Call)
                and getattr(node.func, "id", None) in ("getattr", "hasattr")
                and (
                    receiver(node.args[0]) in OBJECT_NAMES
                    or chain_root(node.args[0]) in MODULE_NAMES
                )
                and isinstance(node.args[1], ast.Constant)
            ):
                name = node.args[1].value
            if name:
                used.setdefault(name, []).append(f"{path.relative_to(root)}:{node.lineno}")
    return used


@pytest.fixture(scope="module")
def versions():
    return {version: bound_names(download(spec)) for version, spec in BINDINGS.items()}


def test_the_project_uses_the_name_based_tensor_api():
    used = used_tensorrt_names(HERE)
    for name in ["get_tensor_name", "set_input_shape", "set_tensor_address", "execute_async_v3"]:
        assert name in used
    # The binding-index API, removed in TensorRT 10, is not used anywhere.
    assert not {"get_binding_index", "num_bindings", "execute_async_v2"} & set(used)


def test_every_tensorrt_name_the_code_uses_exists_in_8_6_10_and_11(versions):
    used = used_tensorrt_names(HERE)
    in_any = {name for name in used if any(offers(names, name) for names in versions.values())}
    # Names no version knows are the project's own (attributes of its wrappers), or typos that
    # the first run on a GPU would show; the rest must be in every version.
    missing = []
    for name in sorted(in_any):
        group = next((g for g in ALTERNATIVES if name in g), {name})
        for version, names in versions.items():
            if name in NOT_NEEDED_FROM and float(version) >= float(NOT_NEEDED_FROM[name]):
                continue
            if not any(offers(names, alternative) for alternative in group):
                missing.append(f"{name} (used at {', '.join(used[name])}) is not in {version}")
    assert not missing, "\n".join(missing)
    assert len(in_any) >= 20  # the check saw the code's TensorRT calls, not an empty list


def test_the_removals_the_fallbacks_exist_for_are_real(versions):
    # Guards the check itself: it must see what TensorRT 11 removed and 10.1 added.
    assert offers(versions["8.6"], "device_memory_size")
    assert not offers(versions["8.6"], "device_memory_size_v2")
    assert not offers(versions["11.4"], "device_memory_size")
    assert not offers(versions["11.0"], "get_device_memory_size_for_profile")
    assert offers(versions["11.4"], "device_memory_size_v2")
    assert not offers(versions["10.0"], "get_binding_index")
    assert offers(versions["8.6"], "get_binding_index")
    assert all(offers(versions[v], "PROFILE_SHARING_0806") for v in ("8.6", "10.0", "10.16"))
    assert not offers(versions["11.0"], "PROFILE_SHARING_0806")

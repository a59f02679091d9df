"""The READMEs and docs/ against the code, as Polygraphy's tests/test_examples.py holds its
examples' READMEs: the walkthrough's headings are there, every command and file they name
exists, every option they show is accepted by the script's parser and, on a GPU, example.py
and `polygraphy inspect model` print what README.md shows."""

import importlib
import importlib.util
import itertools
import os
import re
import shlex
import shutil
import sys
from pathlib import Path

import pytest

from dynamic_shapes.results import RUNS
from scenario import ENGINE_PATH, HERE
from tests.support import TENSORRT_MISSING, run_script, script_with_imports_failing

HEADINGS = {
    "README.md": [
        "## Introduction",
        "### The scenario",
        "### Performance considerations",
        "### A possible solution",
        "## Running the example",
        "## Beyond the example",
    ],
    "README.zh-CN.md": [
        "## 简介",
        "### 场景",
        "### 性能考量",
        "### 一种可行的方案",
        "## 运行示例",
        "## 示例之外",
    ],
}
READMES = list(HEADINGS)
DOCS = sorted(path.relative_to(HERE).as_posix() for path in (HERE / "docs").glob("*.md"))
# What the commands write, or the reader names for their own files: not in the repository.
ARTIFACTS = {
    ".venv/bin/activate",
    "dynamic_identity.engine",
    "dynamic_identity.engine.json",
    "dynamic_convnet.onnx",
    "benchmark.json",
    "yours.onnx",
    "yours.json",
    "yours.png",
    "triton_tensorrt/",
}
# Commands of the operating system and the driver that the docs use around the project's own.
SYSTEM_COMMANDS = {"nvidia-cuda-mps-control", "echo", "git", "rm", "mv", "kill"}
FIRST_SCREEN_LINES = 30
MAX_README_LINES = 250


def read(name: str) -> str:
    return (HERE / name).read_text(encoding="utf-8")


def blocks(text: str, language: str) -> list:
    """The fenced blocks of one language, each a list of lines without the fence's indent."""
    found, current, indent = [], None, 0
    for line in text.splitlines():
        stripped = line.lstrip()
        if current is None and stripped.startswith("```"):
            if stripped == f"```{language}":
                current, indent = [], len(line) - len(stripped)
            else:
                current, indent = False, len(line) - len(stripped)  # another language
        elif current is not None and stripped == "```":
            if current is not False:
                found.append(current)
            current = None
        elif current is not None and current is not False:
            current.append(line[indent:])
    return found


def commands(text: str) -> list:
    """Every command of every bash block: comments dropped, `&&` and `;` chains and `$(...)`
    opened, output redirections left out."""
    found = []
    for block in blocks(text, "bash"):
        for line in block:
            line = re.sub(r"\s+#.*$", "", line).strip()
            line = re.sub(r"^\w+=\$\((.*)\)$", r"\1", line)  # folder=$(python3 ...)
            for command in re.split(r"&&|\||;", line):
                command = re.sub(r">\s*\S+", "", command).strip()
                if command:
                    found.append(command)
    return found


def check_command(command: str, tmp_path) -> None:
    """Fails unless the command runs something that exists, with arguments its parser takes."""
    words = shlex.split(command.replace("$folder", str(tmp_path)).replace("PID", str(os.getpid())))
    program, *arguments = words
    if program in SYSTEM_COMMANDS:
        return
    if program == ".":  # activating the virtual environment the first command creates
        assert arguments == [".venv/bin/activate"], command
        return
    if program == "polygraphy":
        assert arguments[:2] == ["inspect", "model"], command
        assert arguments[2] == ENGINE_PATH.name, f"{command}: inspects what example.py writes"
        return
    assert program == "python3", f"{command}: not a command this project runs"
    if arguments[0] == "-m":
        module, *options = arguments[1:]
        assert module in ("venv", "pip", "pytest"), command
        for flag, value in itertools.pairwise(options):
            if flag in ("-r", "-c"):
                assert (HERE / value).is_file(), f"{command}: there is no {value}"
        return
    script, *options = arguments
    assert (HERE / script).is_file(), f"{command}: there is no {script}"
    if "--plot" in options and importlib.util.find_spec("matplotlib") is None:
        # The parser refuses --plot without matplotlib, saying how to install it.
        at = options.index("--plot")
        options = options[:at] + options[at + 2 :]
    parse(script, options)


def parse(script: str, options: list):
    """The script's own parser on `options`; argparse's exit is a failure with its message."""
    module = importlib.import_module(Path(script).stem)
    try:
        return module.parse_args(options)
    except SystemExit as refused:
        pytest.fail(f"{script} {' '.join(options)}: refused by its parser ({refused})")


@pytest.mark.parametrize("readme", READMES)
def test_the_walkthrough_headings_are_there_in_order(readme):
    lines = read(readme).splitlines()
    positions = [lines.index(heading) for heading in HEADINGS[readme]]
    assert positions == sorted(positions)
    assert len(lines) <= MAX_README_LINES


@pytest.mark.parametrize("readme", READMES)
def test_the_first_screen_has_the_walkthrough_the_set_up_and_the_test_command(readme):
    first_screen = "\n".join(read(readme).splitlines()[:FIRST_SCREEN_LINES])
    test_command = read(".ci/run").strip().splitlines()[-1]  # what CI runs, last
    for command in [
        "python3 -m pip install tensorrt",
        "python3 -m pip install -r requirements-dev.txt",
        "python3 example.py",
        test_command,
    ]:
        assert command in commands(first_screen), f"{command} is not in {readme}'s first screen"


@pytest.mark.parametrize("readme", READMES)
def test_the_readme_shows_the_set_up_for_current_tensorrt_and_for_tensorrt_8_6(readme):
    shown = commands(read(readme))
    for command in [
        "python3 -m pip install tensorrt",
        "python3 -m pip install -r requirements-dev.txt",
        "python3 -m pip install tensorrt==8.6.0 -c constraints-tensorrt8.txt",
        "python3 -m pip install -r requirements-dev.txt -c constraints-tensorrt8.txt",
        "polygraphy inspect model dynamic_identity.engine",
        "python3 -m pytest",
    ]:
        assert command in shown


@pytest.mark.parametrize("page", READMES + DOCS)
def test_every_command_exists_and_its_options_are_accepted(page, tmp_path):
    shown = commands(read(page))
    for command in shown:
        check_command(command, tmp_path)


def test_the_results_commands_are_documented_and_accepted(tmp_path):
    measuring = read("docs/measuring.md")
    for run in RUNS:
        for command in filter(None, [run.command, run.server]):
            assert command in measuring, f"docs/measuring.md does not show {command}"
            for part in commands(f"```bash\n{command}\n```"):
                check_command(part, tmp_path)


OPTIONS = ("Options:", "选项：")  # noqa: RUF001 (the Chinese README's colon)


@pytest.mark.parametrize("readme", READMES)
def test_every_option_example_py_is_shown_with_is_accepted(readme):
    paragraphs = read(readme).split("\n\n")
    (paragraph,) = [p for p in paragraphs if p.strip().startswith(OPTIONS)]
    shown = re.findall(r"`(--[\w-]+(?: [A-Z]+)?)`", paragraph)
    assert {option.split()[0] for option in shown} == {"--model", "--engine", "--rebuild",
                                                       "--verbose"}  # fmt: skip
    for option in shown:
        parse("example.py", option.split())


def path_like(name: str) -> bool:
    return bool(
        re.fullmatch(r"[\w.-]+(/[\w.-]*)*\.(py|txt|md|onnx|json|engine|toml)|[\w.-]+/", name)
    )


@pytest.mark.parametrize("readme", READMES)
def test_every_file_the_readme_names_exists(readme):
    named = {
        name
        for code in re.findall(r"`([^`\n]+)`", read(readme))
        for name in re.split(r"[,、]\s*", code)
        if path_like(name)
    }
    assert "example.py" in named and "dynamic_shapes/" in named
    missing = [name for name in named if name not in ARTIFACTS and not (HERE / name).exists()]
    assert missing == []


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lowercase, punctuation dropped, spaces as hyphens."""
    text = heading.lstrip("#").strip().lower()
    return re.sub(r"\s", "-", re.sub(r"[^\w\s-]", "", text))


@pytest.mark.parametrize("page", READMES + DOCS)
def test_every_link_leads_to_a_file_and_heading_that_exist(page):
    text = read(page)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if target.startswith(("http://", "https://")):
            continue
        path, _, fragment = target.partition("#")
        file = (HERE / page).parent / path if path else HERE / page
        assert file.exists(), f"{page} links to {target}, which does not exist"
        if fragment and file.suffix == ".md":
            headings = [line for line in file.read_text().splitlines() if line.startswith("#")]
            assert fragment in {anchor(h) for h in headings}, f"{page}: no heading for {target}"


def test_the_chinese_readme_shows_the_same_commands_and_output():
    for language in ("bash", "text"):
        assert blocks(read("README.zh-CN.md"), language) == blocks(read("README.md"), language)


def test_what_example_py_says_without_tensorrt_is_what_the_readme_shows():
    (shown,) = [block for block in blocks(read("README.md"), "text") if
                block[0].startswith("example.py:")]  # fmt: skip
    result = run_script(*script_with_imports_failing("example.py", TENSORRT_MISSING))
    assert result.returncode == 1
    # The first line is TensorRT's; a second names what else is missing here (the driver).
    assert result.stderr.splitlines()[0] == shown[0]


def test_what_pytest_says_for_a_gpu_test_without_tensorrt_is_what_the_readme_shows():
    (shown,) = [block for block in blocks(read("README.md"), "text") if
                block[0].startswith("SKIPPED")]  # fmt: skip
    reason = shown[0].split(": ", 1)[1].removesuffix(" ...")
    code = (
        "from dynamic_shapes.gpu import require_gpu_stack\n"
        "try:\n    require_gpu_stack()\n"
        "except Exception as missing:\n"
        "    print('needs TensorRT and a CUDA GPU: ' + str(missing).replace('\\n', '; '))\n"
    )
    from tests.support import with_imports_failing

    result = run_script(*with_imports_failing(TENSORRT_MISSING, code))
    assert result.stdout.startswith(reason), result.stdout + result.stderr
    assert "pytestmark = pytest.mark.gpu" in read("tests/test_engine.py")


# ---------------------------------------------------------------------------------------------
# On the GPU: the output README.md shows is what the example prints.

# A time in a line ("in 12.3 s", "in 1.242 seconds"): it differs from run to run.
TIME = re.compile(r"\d+(\.\d+)? (s|seconds)\b")
# Lines that Polygraphy's or TensorRT's version decides, compared only by their start:
#   "Preview Features": TensorRT 8.6's preview features in Polygraphy's build configuration
#     (TensorRT 10 and 11 have other ones, or none); the other rows of that configuration, which
#     the README elides as "...", depend on TensorRT's version and the GPU's memory.
#   "Name:": the network name and "Explicit Batch Engine", as TensorRT and Polygraphy word them.
#   "Device Memory:": what TensorRT's version sets aside for the engine.
#   "{Y [" and "(Output)": TensorRT 8.6 reports profile 0's output shape at the engine's level,
#     later versions the dynamic one.
#   "Layer(s) Per Profile": the layers TensorRT's version builds for the identity.
# And "Reusing ...": the TensorRT version and the GPU's name are the machine's.
VERSION_DECIDED = ("Preview Features", "Name:", "Device Memory:", "{Y [", "Tensor: Y ")
LAYERS = re.compile(r"---- \d+ Layer\(s\) Per Profile ----")
ENVIRONMENT = re.compile(r"TensorRT [\w.]+, [^;]+;")


def normalized(line: str) -> str:
    line = ENVIRONMENT.sub("TensorRT <version>, <GPU>;", TIME.sub("<time>", line.rstrip()))
    if line.strip().startswith(VERSION_DECIDED):
        return line[: line.index(line.strip()[:4]) + 4] + "<version decided>"
    return LAYERS.sub("---- <layers> Per Profile ----", line)


def printed(result) -> list:
    """The lines a command printed, warnings (whose wording versions change) left out."""
    assert result.returncode == 0, result.stdout + result.stderr
    return [normalized(line) for line in result.stdout.splitlines() if not line.startswith("[W]")]


def shown_block(starts: str) -> list:
    (block,) = [b for b in blocks(read("README.md"), "text") if b[0].startswith(starts)]
    return [normalized(line) for line in block]


def assert_prints(actual: list, expected: list) -> None:
    """`actual` is `expected` line by line, where a "..." line stands for any lines."""
    position = 0
    for index, line in enumerate(expected):
        if line.strip() == "...":
            following = expected[index + 1]
            while position < len(actual) and actual[position] != following:
                position += 1
            continue
        assert position < len(actual), f"missing from the output: {line!r}"
        assert actual[position] == line, f"line {position}: {actual[position]!r}, not {line!r}"
        position += 1
    assert actual[position:] == [], "printed beyond what README.md shows"


@pytest.mark.gpu
def test_example_py_and_inspect_print_what_the_readme_shows(tmp_path):
    engine = tmp_path / ENGINE_PATH.name
    first = run_script("example.py", "--engine", str(engine))
    assert_prints(printed(first), shown_block("[I] TF32 is disabled by default"))

    again = printed(run_script("example.py", "--engine", str(engine)))
    assert again[0] == shown_block("Reusing ")[0]

    polygraphy = shutil.which("polygraphy", path=str(Path(sys.executable).parent))
    inspected = run_script(
        polygraphy or shutil.which("polygraphy"), "inspect", "model", str(engine)
    )
    lines = [line for line in printed(inspected) if not line.startswith("[I] Loading")]
    assert_prints(lines, shown_block("[I] ==== TensorRT Engine ===="))

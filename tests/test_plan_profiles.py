"""plan_profiles.py's command line without a GPU: its help, every bad option refused with exit 2
before any work (TensorRT missing, so that a refusal that came after the GPU check would show as
that instead), --generate writing a workload, and the proofs' commands in docs/planning.md
giving the profiles they say."""

import re
import shlex

import pytest

import plan_profiles
import scenario
from dynamic_shapes.planner import generators
from dynamic_shapes.planner.workloads import read_workload, write_histogram, write_requests
from dynamic_shapes.profiles import profile_shapes
from scenario import HERE, IMAGE_SHAPE, INPUT_NAME
from tests.support import TENSORRT_MISSING, run_script, script_with_imports_failing

SCRIPT = "plan_profiles.py"


def run_without_tensorrt(*argv):
    return run_script(*script_with_imports_failing(SCRIPT, TENSORRT_MISSING, *argv))


@pytest.fixture
def workload(tmp_path):
    path = tmp_path / "scenario.jsonl"
    write_requests(path, generators.scenario_requests(50, INPUT_NAME, IMAGE_SHAPE))
    return path


def test_help_says_what_it_does_and_how_long_it_takes():
    result = run_without_tensorrt("--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: {SCRIPT}")
    for words in ["--max-profiles", "--write-profiles", "--generate", "--trt-min-shapes",
                  "--profiles", "How long it takes", "10 minutes", "--requests"]:  # fmt: skip
        assert words in result.stdout


def test_generate_writes_the_generators_workload(tmp_path):
    path = tmp_path / "w.jsonl"
    result = run_without_tensorrt(
        "--generate", "scenario", "--requests", "200", "--seed", "7", "--write-workload", str(path)
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"Wrote 200 requests to {path}\n"
    expected = generators.scenario_requests(200, INPUT_NAME, IMAGE_SHAPE, seed=7)
    assert read_workload(path).in_order() == expected


def test_generate_writes_the_transformer_workload_by_default_size(tmp_path):
    path = tmp_path / "t.jsonl"
    result = run_without_tensorrt("--generate", "transformer", "--write-workload", str(path))
    assert result.returncode == 0, result.stderr
    requests = read_workload(path).in_order()
    assert len(requests) == plan_profiles.DEFAULT_REQUESTS["transformer"]
    assert requests == generators.transformer_requests(
        len(requests),
        (scenario.TOKEN_IDS_NAME, scenario.ATTENTION_MASK_NAME),
        scenario.MAX_SEQUENCE,
    )


def test_planning_without_tensorrt_fails_in_one_line_and_writes_nothing(tmp_path, workload):
    outputs = [tmp_path / "report.json", tmp_path / "best.json"]
    result = run_without_tensorrt(
        "--model", "identity", "--workload", str(workload), "--engine-dir", str(tmp_path),
        "--json", str(outputs[0]), "--write-profiles", str(outputs[1]),
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith(f"{SCRIPT}: TensorRT is not usable")
    assert not any(path.exists() for path in outputs)
    assert not list(tmp_path.glob("*.engine"))


BAD = [
    ([], "no workload given: give --workload FILE or --generate KIND"),
    (["--model", "identity"], "no workload given"),
    (["--workload", "{w}", "--generate", "scenario"], "argument --generate: not with --workload"),
    (["--workload", "{w}"], "argument --model: required to plan"),
    (["--generate", "scenario"], "argument --model: required to plan"),
    (["--model", "identity", "--workload", "{w}", "--seed", "1"], "argument --seed: only with"),
    (
        ["--model", "identity", "--workload", "{w}", "--write-workload", "{tmp}/x.jsonl"],
        "argument --write-workload: only with --generate",
    ),
    (
        ["--generate", "scenario", "--write-workload", "{tmp}/x.jsonl", "--json", "{tmp}/r.json"],
        "argument --json: needs --model",
    ),
    (
        ["--generate", "scenario", "--write-workload", "{tmp}/x.jsonl", "--max-profiles", "2"],
        "argument --max-profiles: needs --model",
    ),
    (
        ["--generate", "scenario", "--write-workload", "{tmp}/x.jsonl", "--rebuild"],
        "argument --rebuild: needs --model",
    ),
    (
        ["--generate", "scenario", "--write-workload", "{tmp}/x.jsonl", "--values", "X:0..1"],
        "argument --values: needs --model",
    ),
    (["--model", "identity", "--generate", "mine"], "argument --generate: invalid choice"),
    (["--model", "{tmp}/none.onnx", "--workload", "{w}"], "argument --model: no model at"),
    (["--model", "{w}", "--workload", "{w}"], "argument --model: {w} is not an ONNX model"),
    (["--model", "identity", "--workload", "{tmp}/none.jsonl"], "argument --workload: cannot"),
    (["--model", "identity", "--workload", "{notes}"], "argument --workload: {notes} is neither"),
    (
        ["--model", "identity", "--generate", "transformer"],
        "argument --generate: the workload's requests give inputs ['attention_mask', "
        "'input_ids'], but",
    ),
    (
        ["--model", "identity", "--workload", "{wrong}"],
        "argument --workload: the workload's request X [4, 3, 32, 32] does not fit",
    ),
    (["--model", "identity", "--workload", "{w}", "--requests", "0"], "argument --requests: must"),
    (["--model", "identity", "--workload", "{w}", "--max-profiles", "0"], "argument --max-prof"),
    (["--model", "identity", "--workload", "{w}", "--threads", "x"], "argument --threads: not an"),
    (["--model", "identity", "--workload", "{w}", "--warmup", "-1"], "argument --warmup: must be"),
    (["--model", "identity", "--workload", "{w}", "--values", "X0..9"], "argument --values: 'X0"),
    (["--model", "identity", "--workload", "{w}", "--values", "ids:9..1"], "argument --values:"),
    (
        ["--model", "identity", "--workload", "{w}", "--values", "X:0..9"],
        "argument --values: X is not an integer input of",
    ),
    (["--model", "identity", "--workload", "{w}", "--json", "/nonexistent/r.json"], "argument --j"),
    (["--model", "identity", "--workload", "{w}", "--write-profiles", "{tmp}"], "argument --writ"),
    (["--model", "identity", "--workload", "{w}", "--engine-dir", "{w}"], "argument --engine-dir"),
    (
        ["--model", "identity", "--workload", "{w}", "--trt-min-shapes", "Y:[1,3,28,28]"],
        "profile 0 gives shapes for Y, which",
    ),
    (
        ["--model", "identity", "--workload", "{w}", "--profiles", "{tmp}/none.json"],
        "cannot read the profiles file",
    ),
]


@pytest.mark.parametrize(("argv", "message"), BAD)
def test_every_bad_option_is_refused_by_the_parser(tmp_path, workload, capsys, argv, message):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a workload\n")
    wrong = tmp_path / "wrong.json"
    write_histogram(wrong, {((INPUT_NAME, (4, 3, 32, 32)),): 3})
    names = {"w": workload, "tmp": tmp_path, "notes": notes, "wrong": wrong}
    with pytest.raises(SystemExit) as refused:
        plan_profiles.parse_args([arg.format(**names) for arg in argv])
    assert refused.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    last = captured.err.splitlines()[-1]
    assert last.startswith(f"{SCRIPT}: error: {message.format(**names)}"), captured.err
    assert not (tmp_path / "x.jsonl").exists()


@pytest.mark.parametrize("argv", [BAD[0][0], BAD[3][0], ["--model", "identity", "--workload",
                                  "{w}", "--values", "X:0..9"]])  # fmt: skip
def test_a_refusal_comes_before_the_gpu_is_looked_for(workload, argv):
    result = run_without_tensorrt(*[arg.format(w=workload) for arg in argv])
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and "TensorRT" not in result.stderr
    assert result.stderr.splitlines()[-1].startswith(f"{SCRIPT}: error: ")


def test_requests_takes_the_workloads_first_requests(workload):
    args = plan_profiles.parse_args(
        ["--model", "identity", "--workload", str(workload), "--requests", "20"]
    )
    assert args.workload_requests == read_workload(workload).in_order()[:20]
    assert (args.max_profiles, args.threads, args.warmup, args.given) == (3, 1, 100, None)


def proof_command(model: str) -> list:
    text = (HERE / "docs/planning.md").read_text()
    (line,) = [line for line in text.splitlines() if line.startswith("python3 plan_profiles.py")
               and f"--model {model}" in line]  # fmt: skip
    return shlex.split(line)[2:]


def test_the_convnet_proof_measures_the_walkthroughs_profiles(tmp_path):
    argv = [arg.replace("$folder", str(tmp_path)) for arg in proof_command("convnet")]
    args = plan_profiles.parse_args(argv)
    assert profile_shapes(args.given) == profile_shapes(scenario.PROFILES)
    assert args.generate == "scenario" and args.max_profiles == 3


def test_the_transformer_proof_keeps_token_ids_in_the_vocabulary(tmp_path):
    argv = [arg.replace("$folder", str(tmp_path)) for arg in proof_command("transformer")]
    args = plan_profiles.parse_args(argv)
    assert args.value_ranges == {
        scenario.TOKEN_IDS_NAME: (0, scenario.VOCABULARY_SIZE - 1),
        scenario.ATTENTION_MASK_NAME: (1, 1),
    }
    assert args.given is None and args.generate == "transformer"
    assert re.search(r"--json \S+plan-transformer.json", " ".join(argv))

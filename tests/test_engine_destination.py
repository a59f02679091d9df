"""Where an engine may be saved: nowhere but an empty path or over an engine the project saved,
refused before any work (CPU only)."""

import json
import shutil

import pytest

from dynamic_shapes.engines import check_engine_destination, load_or_build_engine, record_path
from scenario import MODEL_PATH, PROFILES
from tests.support import TENSORRT_MISSING, run_script, script_with_imports_failing


def write_project_record(engine_path):
    """A record as save_engine writes it (the keys that mark it as the project's)."""
    record = {"engine_sha256": "0" * 64, "model_sha256": "1" * 64, "profiles": {}}
    record_path(engine_path).write_text(json.dumps(record))


def test_an_empty_path_is_a_destination(tmp_path):
    assert check_engine_destination(tmp_path / "m.engine", MODEL_PATH) == tmp_path / "m.engine"


def test_an_engine_the_project_saved_may_be_replaced(tmp_path):
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"an older plan")
    write_project_record(engine)
    assert check_engine_destination(engine, MODEL_PATH) == engine


def test_a_first_save_interrupted_before_its_engine_leaves_a_usable_destination(tmp_path):
    # save_engine writes the record first: an interruption then leaves the record alone.
    engine = tmp_path / "m.engine"
    write_project_record(engine)
    assert check_engine_destination(engine, MODEL_PATH) == engine


@pytest.mark.parametrize(
    ("existing", "message"),
    [
        ("engine", "{engine} exists and is not an engine this project saved"),
        ("record", "{record} exists and is not an engine record this project wrote"),
        ("both", "{record} exists and is not an engine record this project wrote"),
    ],
)
def test_any_other_existing_file_is_refused(tmp_path, existing, message):
    engine, record = tmp_path / "notes.txt", record_path(tmp_path / "notes.txt")
    if existing in ("engine", "both"):
        engine.write_text("my notes\n")
    if existing in ("record", "both"):
        record.write_text('{"my": "settings"}\n')
    with pytest.raises(ValueError, match="refusing to overwrite") as refused:
        check_engine_destination(engine, MODEL_PATH)
    assert str(refused.value).startswith(message.format(engine=engine, record=record))


def test_the_model_itself_is_refused(tmp_path):
    model = tmp_path / "m.onnx"
    shutil.copy(MODEL_PATH, model)
    with pytest.raises(ValueError, match=f"would overwrite the model {model}"):
        check_engine_destination(tmp_path / "." / "m.onnx", model)


def test_the_library_refuses_too_before_any_work(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    with pytest.raises(ValueError, match="not an engine this project saved"):
        load_or_build_engine(MODEL_PATH, notes, PROFILES)
    assert notes.read_text() == "my notes\n"


@pytest.mark.parametrize("script", ["example.py", "stress.py"])
@pytest.mark.parametrize("target", ["notes", "model"])
def test_scripts_refuse_an_engine_path_they_may_not_write_with_exit_2(tmp_path, script, target):
    model = tmp_path / "m.onnx"
    shutil.copy(MODEL_PATH, model)
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    argv = ["--engine", str(notes if target == "notes" else model)]
    if script == "example.py":
        argv += ["--model", str(model)]
    elif target == "model":
        argv = ["--engine", str(MODEL_PATH)]  # stress.py serves the scenario's own model
    # Without TensorRT: a refusal that came after the GPU check would show as that instead.
    result = run_script(*script_with_imports_failing(script, TENSORRT_MISSING, *argv))
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.splitlines()[-1:]
    assert line.startswith(f"{script}: error: argument --engine: ")
    assert str(notes if target == "notes" else argv[1]) in line
    assert notes.read_text() == "my notes\n"
    assert model.read_bytes() == MODEL_PATH.read_bytes()

"""The model repository for Triton's TensorRT backend, written and read back through Triton's
own ModelConfig protobuf: every profile, dim and batch size checked against the engine's record
and the ONNX model (needs no GPU)."""

import hashlib
import json

import numpy as np
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from build_model import write_model
from dynamic_shapes.engines import profiles_record, record_path, sha256_of
from dynamic_shapes.onnx_inputs import read_model_input
from dynamic_shapes.triton import (
    REPOSITORY_MARK,
    batch_ranges_of,
    check_model_name,
    gapless_top,
)
from export_triton import main
from scenario import MODEL_PATH, PROFILES, profiles_for
from tests.support import run_script

ENGINE_BYTES = b"a TensorRT plan, as far as this test is concerned"


def save_fake_engine(folder, model_path, profiles) -> object:
    """An engine file and its record, as engines.save_engine writes them; the plan's bytes are
    copied, never read, by the export."""
    engine = folder / "dynamic_identity.engine"
    engine.write_bytes(ENGINE_BYTES)
    record = {
        "model_sha256": sha256_of(model_path),
        "profiles": profiles_record(profiles),
        "profile_sharing": True,
        "tensorrt": "8.6.0",
        "gpu": "NVIDIA H100 80GB HBM3",
        "engine_sha256": hashlib.sha256(ENGINE_BYTES).hexdigest(),
    }
    record_path(engine).write_text(json.dumps(record))
    return engine


def read_config(path) -> mc.ModelConfig:
    return text_format.Parse(path.read_text(), mc.ModelConfig())


def accepting(ranges, profiles, batch) -> list:
    """The listed profiles that accept `batch`."""
    return [p for p in profiles if ranges[p][0] <= batch <= ranges[p][2]]


@pytest.mark.parametrize("model", ["identity", "convnet"])
def test_every_config_matches_the_engines_profiles_and_the_models_tensors(tmp_path, model):
    model_path = MODEL_PATH
    if model == "convnet":
        model_path = tmp_path / "dynamic_convnet.onnx"
        write_model("convnet", model_path)
    engine = save_fake_engine(tmp_path, model_path, profiles_for(read_model_input(model_path)))
    repository = tmp_path / "repository"
    argv = ["--engine", str(engine), "--model", str(model_path), "--output", str(repository)]
    assert main(argv) == 0
    record = json.loads(record_path(engine).read_text())
    ranges = batch_ranges_of(record)
    assert ranges == [(1, 1, 1), (1, 4, 32), (128, 128, 128)]
    configs = {p.parent.name: read_config(p) for p in repository.glob("*/config.pbtxt")}
    assert sorted(configs) == ["dynamic_identity", "dynamic_identity_all_profiles"]
    for name, config in configs.items():
        assert (repository / name / "1" / "model.plan").read_bytes() == ENGINE_BYTES
        assert config.name == name and config.platform == "tensorrt_plan"
        (x,), outputs = config.input, config.output
        assert (x.name, x.data_type, list(x.dims)) == ("X", mc.TYPE_FP32, [3, 28, 28])
        expected = [3, 28, 28] if model == "identity" else [10]
        assert [(o.name, o.data_type, list(o.dims)) for o in outputs] == [
            ("Y", mc.TYPE_FP32, expected)
        ]
        (group,) = config.instance_group
        assert group.kind == mc.ModelInstanceGroup.KIND_GPU and group.count == 1
        profiles = [int(p) for p in group.profile]
        assert config.optimization.cuda.graphs
        # Every graph is captured at a batch some listed profile accepts.
        for spec in config.optimization.cuda.graph_spec:
            assert accepting(ranges, profiles, spec.batch_size)
        config_batches = range(1, config.max_batch_size + 1)
        if name == "dynamic_identity":
            # The dynamic batcher may form any batch up to max_batch_size: each must be served.
            assert profiles == [0, 1] and config.max_batch_size == 32
            assert all(accepting(ranges, profiles, batch) for batch in config_batches)
            batcher = config.dynamic_batching
            assert list(batcher.preferred_batch_size) == [4, 32]
            assert batcher.max_queue_delay_microseconds == 100
        else:
            # No batcher: a client's batch is served where a profile accepts it, else refused.
            assert profiles == [0, 1, 2] and config.max_batch_size == 128
            assert not config.HasField("dynamic_batching")
            assert [s.batch_size for s in config.optimization.cuda.graph_spec] == [1, 128]
            served = [b for b in config_batches if accepting(ranges, profiles, b)]
            assert served == [*range(1, 33), 128]
    text = (repository / "dynamic_identity" / "config.pbtxt").read_text()
    assert text.startswith(
        "# Written by export_triton.py for dynamic_identity.engine, built by TensorRT 8.6.0 for "
        "NVIDIA H100 80GB HBM3:\n# Triton must run that TensorRT version.\n"
    )


@pytest.mark.parametrize(
    ("ranges", "top"),
    [
        ([(1, 1, 1), (1, 4, 32), (128, 128, 128)], 32),
        ([(1, 1, 8), (9, 16, 16), (17, 32, 64)], 64),
        ([(2, 4, 8)], 0),
        ([(1, 1, 1), (3, 3, 3)], 1),
    ],
)
def test_the_batcher_gets_the_run_of_batch_sizes_from_1_without_a_gap(ranges, top):
    assert gapless_top(ranges) == top


def test_the_queue_delay_and_the_name_are_settable(tmp_path):
    engine = save_fake_engine(tmp_path, MODEL_PATH, PROFILES)
    out = tmp_path / "r"
    argv = ["--engine", str(engine), "--output", str(out), "--name", "m", "--max-queue-delay-us"]
    assert main([*argv, "500"]) == 0
    assert main([*argv, "500"]) == 0  # again, into the repository it wrote
    config = read_config(out / "m" / "config.pbtxt")
    assert config.name == "m" and config.dynamic_batching.max_queue_delay_microseconds == 500
    assert (out / "m_all_profiles" / "config.pbtxt").is_file()


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda e: e.unlink(), "no engine at"),
        (
            lambda e: record_path(e).unlink(),
            "dynamic_identity.engine.json is missing or unreadable",
        ),
        (
            lambda e: e.write_bytes(b"another plan"),
            "is not the engine dynamic_identity.engine.json",
        ),
    ],
)
def test_an_engine_without_its_own_record_is_refused_in_one_line(tmp_path, damage, message):
    engine = save_fake_engine(tmp_path, MODEL_PATH, PROFILES)
    damage(engine)
    result = run_script(
        "export_triton.py", "--engine", str(engine), "--output", str(tmp_path / "r")
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("export_triton.py: ") and message in result.stderr
    assert not (tmp_path / "r").exists()


def test_an_engine_built_from_another_model_is_refused(tmp_path):
    other = tmp_path / "other.onnx"
    write_model("convnet", other)
    engine = save_fake_engine(tmp_path, other, PROFILES)
    result = run_script(
        "export_triton.py", "--engine", str(engine), "--output", str(tmp_path / "r")
    )
    assert result.returncode == 1
    assert "dynamic_identity.engine was not built from" in result.stderr
    assert "pass the model it was built from with --model" in result.stderr


def test_an_output_dtype_triton_cannot_carry_is_refused():
    from dynamic_shapes.tensors import TensorSpec
    from dynamic_shapes.triton import tensorrt_configs

    spec = TensorSpec("X", np.dtype(np.float32), (3,))
    odd = TensorSpec("Y", np.dtype(np.complex64), (3,))
    with pytest.raises(ValueError, match="Triton has no type for complex64"):
        tensorrt_configs("m", [(1, 1, 8)], [spec], [odd])


def test_an_output_that_is_a_file_is_refused_before_any_work(tmp_path):
    engine = save_fake_engine(tmp_path, MODEL_PATH, PROFILES)
    result = run_script("export_triton.py", "--engine", str(engine), "--output", str(engine))
    assert result.returncode == 2
    assert "argument --output: " in result.stderr and "is a file; name a folder" in result.stderr


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--name", "../evil"], "argument --name: '../evil' cannot name a model: use letters, "),
        (["--name", "a b"], "argument --name: 'a b' cannot name a model"),
        (["--name=-x"], "argument --name: '-x' cannot name a model"),
        (["--name", "m" * 101], "cannot name a model: use letters, digits, '_', '.' and '-', up"),
        (
            ["--max-queue-delay-us", "99999999999999999999"],
            "argument --max-queue-delay-us: must be 18446744073709551615 or less: "
            "99999999999999999999",
        ),
        (["--max-queue-delay-us", "-1"], "argument --max-queue-delay-us: must be 0 or more: -1"),
    ],
)
def test_bad_arguments_are_refused_naming_the_option(tmp_path, options, message):
    engine = save_fake_engine(tmp_path, MODEL_PATH, PROFILES)
    out = tmp_path / "r"
    result = run_script("export_triton.py", "--engine", str(engine), "--output", str(out), *options)
    assert result.returncode == 2
    last = result.stderr.splitlines()[-1]
    assert last.startswith("export_triton.py: error: argument ") and message in last
    assert not out.exists() and not (tmp_path / "evil").exists()


@pytest.mark.parametrize("name", ["dynamic_identity", "m", "resnet-50.v2", "_x", "A1"])
def test_a_model_name_is_letters_digits_and_a_little_punctuation(name):
    assert check_model_name(name) == name


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "a\\b", "a b", "a\tb", "é", "a?b", "a%2F"])
def test_a_model_name_that_is_not_one_path_part_or_url_part_is_refused(name):
    with pytest.raises(ValueError, match="cannot name a model: use letters, digits"):
        check_model_name(name)


def test_an_existing_folder_of_someone_elses_is_never_written_into(tmp_path):
    engine = save_fake_engine(tmp_path, MODEL_PATH, PROFILES)
    theirs = tmp_path / "theirs"
    (theirs / "dynamic_identity").mkdir(parents=True)
    (theirs / "dynamic_identity" / "config.pbtxt").write_text("name: 'theirs'")
    argv = ["export_triton.py", "--engine", str(engine), "--output", str(theirs)]
    result = run_script(*argv)
    assert result.returncode == 2
    assert f"argument --output: {theirs} holds files this project did not write" in result.stderr
    assert (theirs / "dynamic_identity" / "config.pbtxt").read_text() == "name: 'theirs'"
    # An empty folder is fine, and once written the repository is the project's to replace.
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["--engine", str(engine), "--output", str(empty)]) == 0
    assert (empty / REPOSITORY_MARK).is_file()
    assert main(["--engine", str(engine), "--output", str(empty), "--name", "other"]) == 0
    assert sorted(p.name for p in empty.iterdir()) == [
        REPOSITORY_MARK,
        "other",
        "other_all_profiles",
    ]

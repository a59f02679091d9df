"""The model repository for Triton's TensorRT backend, written and read back through Triton's
own ModelConfig protobuf: every profile, dim and batch size checked against the engine's record
and the ONNX model (needs no GPU)."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import json_format, text_format
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
# What Triton 2.51 with the TensorRT backend r23.12 served for the repository this script wrote
# before its configs were written out in full (tests/data/README.md).
SERVED = Path(__file__).parent / "data" / "triton_tensorrt_served.json"


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
        assert config.backend == "tensorrt" and config.default_model_filename == "model.plan"
        # A model Triton does not batch (max_batch_size 0) carries the batch dimension itself.
        batch = [-1] if config.max_batch_size == 0 else []
        (x,), outputs = config.input, config.output
        assert (x.name, x.data_type, list(x.dims)) == ("X", mc.TYPE_FP32, [*batch, 3, 28, 28])
        expected = [*batch, 3, 28, 28] if model == "identity" else [*batch, 10]
        assert [(o.name, o.data_type, list(o.dims)) for o in outputs] == [
            ("Y", mc.TYPE_FP32, expected)
        ]
        (group,) = config.instance_group
        assert group.kind == mc.ModelInstanceGroup.KIND_GPU and group.count == 1
        assert not group.gpus  # every visible GPU, as Triton places a group that names none
        profiles = [int(p) for p in group.profile]
        assert config.optimization.input_pinned_memory.enable
        assert config.optimization.output_pinned_memory.enable
        # The backend captures every graph on every listed profile's context: each graph's
        # batch must fit every listed profile, or the server logs an error at load.
        cuda = config.optimization.cuda
        graph_batches = [spec.batch_size for spec in cuda.graph_spec]
        for size in graph_batches:
            assert accepting(ranges, profiles, size) == profiles, size
        assert cuda.graphs == bool(graph_batches)
        config_batches = range(1, config.max_batch_size + 1)
        if name == "dynamic_identity":
            # The dynamic batcher may form any batch up to max_batch_size: each must be served.
            assert profiles == [0, 1] and config.max_batch_size == 32
            assert all(accepting(ranges, profiles, batch) for batch in config_batches)
            batcher = config.dynamic_batching
            assert list(batcher.preferred_batch_size) == [4, 32]
            assert batcher.max_queue_delay_microseconds == 100
            assert graph_batches == [1]
        else:
            # Triton batches nothing: a client's batch is served where a profile accepts it,
            # else refused. No graph: no batch lies in all three profiles.
            assert profiles == [0, 1, 2] and config.max_batch_size == 0
            assert not config.HasField("dynamic_batching")
            assert not cuda.graphs and not cuda.graph_spec
            served = [b for b in range(1, 300) if accepting(ranges, profiles, b)]
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
        (["--instances", "0"], "argument --instances: must be 1 or more: 0"),
        (["--instances", "2147483648"], "argument --instances: must be 2147483647 or less"),
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


def written_configs(tmp_path, *options) -> dict:
    """{model name: ModelConfig} that export_triton.py writes for the scenario's engine."""
    engine = save_fake_engine(tmp_path, MODEL_PATH, PROFILES)
    repository = tmp_path / "repository"
    assert main(["--engine", str(engine), "--output", str(repository), *options]) == 0
    return {p.parent.name: read_config(p) for p in repository.glob("*/config.pbtxt")}


def served_config(model) -> mc.ModelConfig:
    """The config Triton served for `model` in that run, without what depends on the machine:
    the GPUs an instance group was placed on, and the group's name."""
    served = json.loads(SERVED.read_text())["configs"][model]
    config = json_format.ParseDict(served, mc.ModelConfig(), ignore_unknown_fields=True)
    for group in config.instance_group:
        group.ClearField("name")
        group.ClearField("gpus")
    return config


def test_the_config_triton_served_is_the_one_written_but_for_the_defects_that_run_showed(
    tmp_path,
):
    written = written_configs(tmp_path)
    # dynamic_identity: all Triton completed (backend, file name, version policy, pinned
    # memory) is now written. The run's config named no graph, so the backend tried 1, 4 and
    # 32 on both contexts and logged an error for 4 and 32 on profile 0; now it names the one
    # graph both profiles take.
    served = served_config("dynamic_identity")
    assert not served.optimization.cuda.graph_spec
    served.optimization.cuda.graph_spec.add(batch_size=1)
    assert written["dynamic_identity"] == served
    # dynamic_identity_all_profiles was written without a batcher, and served with one the
    # backend's auto-complete added: it would gather concurrent requests into batches no
    # profile takes. Written now as a model Triton does not batch, which gets none; and
    # without the graphs at 1 and 128, which failed on the profiles that take neither.
    served = served_config("dynamic_identity_all_profiles")
    assert list(served.dynamic_batching.preferred_batch_size) == [128]
    assert served.dynamic_batching.max_queue_delay_microseconds == 0
    assert [spec.batch_size for spec in served.optimization.cuda.graph_spec] == [1, 128]
    served.ClearField("dynamic_batching")
    served.max_batch_size = 0
    for tensor in [*served.input, *served.output]:
        tensor.dims.insert(0, -1)
    served.optimization.ClearField("cuda")
    assert written["dynamic_identity_all_profiles"] == served


def test_that_run_captured_graphs_only_where_every_listed_profile_takes_the_batch():
    """The run's log: the graph at 1 captured on both of dynamic_identity's contexts, 4 and 32
    on one only (the other logged an error): the rule the configs follow now."""
    data = json.loads(SERVED.read_text())
    captured = sorted((instance, int(size)) for instance, size in data["captured_graphs"])
    assert captured.count(("dynamic_identity_0_0", 1)) == 2
    assert captured.count(("dynamic_identity_0_0", 4)) == 1
    assert captured.count(("dynamic_identity_0_0", 32)) == 1
    assert data["graph_errors_at_load"] == 5


def test_instances_batching_and_graphs_are_settable(tmp_path):
    written = written_configs(tmp_path, "--instances", "3", "--no-cuda-graphs")
    for config in written.values():
        assert [group.count for group in config.instance_group] == [3]
        assert not config.optimization.cuda.graphs and not config.optimization.cuda.graph_spec
    # Without the batcher the model is one Triton does not batch (an absent batcher would be
    # added back); its graph names the whole shape, at the one batch both profiles take.
    (tmp_path / "b").mkdir()
    online = written_configs(tmp_path / "b", "--no-dynamic-batching")["dynamic_identity"]
    assert online.max_batch_size == 0 and not online.HasField("dynamic_batching")
    assert list(online.input[0].dims) == [-1, 3, 28, 28]
    (spec,) = online.optimization.cuda.graph_spec
    assert spec.batch_size == 0 and list(spec.input["X"].dim) == [1, 3, 28, 28]
    assert [int(p) for p in online.instance_group[0].profile] == [0, 1]


@pytest.mark.parametrize("version", ["8.6.0", "8.6.0.12"])
def test_an_engine_of_the_servers_tensorrt_is_exported(tmp_path, version):
    assert written_configs(tmp_path, "--server-tensorrt", version)


@pytest.mark.parametrize("version", ["8.6.1", "10.0.1.6"])
def test_an_engine_of_another_tensorrt_than_the_servers_is_refused_saying_how_to_rebuild(
    tmp_path, version
):
    engine = save_fake_engine(tmp_path, MODEL_PATH, PROFILES)  # built by 8.6.0
    out = tmp_path / "r"
    result = run_script(
        "export_triton.py", "--engine", str(engine), "--output", str(out),
        "--server-tensorrt", version,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    last = result.stderr.splitlines()[-1]
    assert last.startswith("export_triton.py: error: argument --server-tensorrt: ")
    assert f"built by TensorRT 8.6.0, the server runs TensorRT {version}" in last
    assert "inside NVIDIA's Triton container" in last and "example.py" in last
    assert not out.exists()


@pytest.mark.parametrize("version", ["8.6", "v8.6.1", "latest", "8.6.1-1"])
def test_a_server_tensorrt_that_is_not_a_version_is_refused(tmp_path, version):
    result = run_script("export_triton.py", "--server-tensorrt", version)
    assert result.returncode == 2
    assert "argument --server-tensorrt: " in result.stderr
    assert "is not a TensorRT version such as 8.6.1" in result.stderr


def test_a_queue_delay_without_the_batcher_is_refused(tmp_path):
    engine = save_fake_engine(tmp_path, MODEL_PATH, PROFILES)
    options = ["--no-dynamic-batching", "--max-queue-delay-us", "500"]
    result = run_script("export_triton.py", "--engine", str(engine), *options)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        "export_triton.py: error: --max-queue-delay-us configures the dynamic batcher; drop one "
        "of them"
    )

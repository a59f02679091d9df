"""The real thing on a GPU: the engine, its profiles, every runner and the example script."""

import os
import re
import shutil
import sys
from pathlib import Path

import pytest

from dynamic_shapes.engines import (
    build_engine,
    build_record,
    create_contexts,
    load_engine,
    record_path,
    save_engine,
)
from scenario import (
    BATCH_SIZES,
    INPUT_NAME,
    MODEL_PATH,
    OUTPUT_NAME,
    PROFILES,
    check_identity,
    random_images,
)
from tests.support import run_script

pytestmark = pytest.mark.gpu

# The scenario table, as the engine must report it.
EXPECTED_PROFILE_SHAPES = [
    ((1, 3, 28, 28), (1, 3, 28, 28), (1, 3, 28, 28)),
    ((1, 3, 28, 28), (4, 3, 28, 28), (32, 3, 28, 28)),
    ((128, 3, 28, 28), (128, 3, 28, 28), (128, 3, 28, 28)),
]
# For each profile, a batch size just outside it.
OUTSIDE = {"low latency": 2, "dynamic batching": 33, "offline": 64}


def profile_shapes(engine):
    return [
        tuple(tuple(shape) for shape in engine.get_tensor_profile_shape(INPUT_NAME, index))
        for index in range(engine.num_optimization_profiles)
    ]


@pytest.fixture(scope="module")
def engine():
    return build_engine(MODEL_PATH, PROFILES)


@pytest.fixture(scope="module")
def runners(engine):
    """One TrtRunner per profile, each over a context this module owns."""
    from polygraphy.backend.trt import TrtRunner

    contexts = create_contexts(engine, len(PROFILES))
    return {
        use_case: TrtRunner(context, optimization_profile=index)
        for index, (use_case, context) in enumerate(zip(PROFILES, contexts, strict=True))
    }


def test_engine_has_exactly_the_three_profiles_of_the_table(engine):
    assert profile_shapes(engine) == EXPECTED_PROFILE_SHAPES


@pytest.mark.parametrize("use_case", list(PROFILES))
def test_each_runner_returns_the_identity_for_every_batch_its_profile_allows(runners, use_case):
    low, _, high = BATCH_SIZES[use_case]
    with runners[use_case] as runner:
        for batch in range(low, high + 1):
            images = random_images(batch, seed=batch)
            check_identity(images, runner.infer({INPUT_NAME: images})[OUTPUT_NAME])


@pytest.mark.parametrize("use_case", list(PROFILES))
def test_a_batch_outside_the_profile_is_refused_and_the_runner_still_works(runners, use_case):
    from polygraphy.exception import PolygraphyException

    low, _, _ = BATCH_SIZES[use_case]
    with runners[use_case] as runner:
        with pytest.raises(PolygraphyException):
            runner.infer({INPUT_NAME: random_images(OUTSIDE[use_case])})
        images = random_images(low, seed=7)
        check_identity(images, runner.infer({INPUT_NAME: images})[OUTPUT_NAME])


def test_a_runner_over_an_owned_context_keeps_the_profile_set_after_activation():
    from polygraphy.backend.trt import TrtRunner

    # A separate engine: the `runners` contexts hold this module's engine's profiles.
    *_, context = create_contexts(build_engine(MODEL_PATH, PROFILES), len(PROFILES))
    offline = TrtRunner(context)
    with offline:
        offline.set_profile(2)
    with offline:
        assert context.active_optimization_profile == 2
        images = random_images(128)
        check_identity(images, offline.infer({INPUT_NAME: images})[OUTPUT_NAME])


def test_example_runs_every_use_case_logs_no_errors_and_inspect_lists_the_profiles(tmp_path):
    engine_path = tmp_path / "dynamic_identity.engine"
    result = run_script("example.py", "--engine", str(engine_path))
    assert result.returncode == 0, result.stdout + result.stderr
    for line in [
        "low latency      (profile 0): batch 1: Y == X exactly",
        "dynamic batching (profile 1): batch 1, 4, 13, 32: Y == X exactly",
        "offline          (profile 2): batch 128: Y == X exactly",
        "offline again    (profile 2, kept by its context): batch 128: Y == X exactly",
    ]:
        assert line in result.stdout.splitlines()
    output = result.stdout + result.stderr
    assert not re.search(r"^\[E\]|Error|Traceback", output, re.MULTILINE), output

    assert profile_shapes(load_engine(engine_path)) == EXPECTED_PROFILE_SHAPES
    polygraphy = shutil.which("polygraphy", path=str(Path(sys.executable).parent))
    polygraphy = polygraphy or shutil.which("polygraphy")
    result = run_script(polygraphy, "inspect", "model", str(engine_path))
    assert result.returncode == 0, result.stderr
    assert "---- 3 Profile(s)" in result.stdout
    for index, (low, opt, high) in enumerate(EXPECTED_PROFILE_SHAPES):
        assert f"- Profile: {index}" in result.stdout
        assert f"min={low}, opt={opt}, max={high}" in result.stdout


def test_an_interrupted_save_never_replaces_a_good_engine(engine, tmp_path, monkeypatch):
    path = tmp_path / "dynamic_identity.engine"
    record = build_record(MODEL_PATH, PROFILES)
    save_engine(engine, path, record)
    good, good_record = path.read_bytes(), record_path(path).read_bytes()

    def interrupted(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_engine(engine, path, record)
    monkeypatch.undo()

    assert (path.read_bytes(), record_path(path).read_bytes()) == (good, good_record)
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name, record_path(path).name]
    assert profile_shapes(load_engine(path)) == EXPECTED_PROFILE_SHAPES


def test_example_without_a_visible_gpu_says_so_without_a_traceback(tmp_path):
    result = run_script(
        "example.py", "--engine", str(tmp_path / "x.engine"), env={"CUDA_VISIBLE_DEVICES": ""}
    )
    assert result.returncode == 1
    assert result.stderr.startswith("example.py: No CUDA GPU is visible"), result.stderr
    assert "Traceback" not in result.stderr

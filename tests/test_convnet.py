"""The compute-heavy model on a real GPU: its engine agrees with ONNX Runtime at every profile,
through TrtRunner and through every dispatcher path, and needs activation memory per context."""

import pytest

import build_model
from dynamic_shapes.dispatch import Dispatcher
from dynamic_shapes.engines import (
    build_engine,
    context_memory_size,
    create_contexts,
    deactivate_runner,
)
from dynamic_shapes.reference import OnnxRuntimeReference, mismatch
from scenario import BATCH_SIZES, INPUT_NAME, PROFILES, random_images

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def convnet(tmp_path_factory):
    path = tmp_path_factory.mktemp("convnet") / "dynamic_convnet.onnx"
    build_model.write_model("convnet", path)
    return path


@pytest.fixture(scope="module")
def engine(convnet):
    return build_engine(convnet, PROFILES)


@pytest.fixture(scope="module")
def reference(convnet):
    return OnnxRuntimeReference(convnet)


def test_every_profile_agrees_with_onnx_runtime_at_its_min_opt_and_max(engine, reference):
    from polygraphy.backend.trt import TrtRunner

    for index, (use_case, context) in enumerate(
        zip(PROFILES, create_contexts(engine, len(PROFILES)), strict=True)
    ):
        runner = TrtRunner(context, optimization_profile=index)
        runner.activate()
        try:
            for batch in sorted(set(BATCH_SIZES[use_case])):
                images = random_images(batch, seed=batch)
                outputs = runner.infer({INPUT_NAME: images})
                problem = mismatch(outputs, reference({INPUT_NAME: images}), exact=False)
                assert problem is None, f"{use_case}, batch {batch}: {problem}"
        finally:
            deactivate_runner(runner)


@pytest.mark.parametrize(
    "settings",
    [
        {"path": "lean", "cuda_graphs": True},
        {"path": "lean", "cuda_graphs": False},
        {"path": "lean", "contexts_per_profile": 2},
        {"path": "runner"},
    ],
)
def test_every_dispatcher_path_agrees_with_onnx_runtime_at_any_batch(engine, reference, settings):
    with Dispatcher(engine, **settings) as dispatcher:
        for batch in [1, 2, 4, 31, 32, 33, 128, 129, 300]:
            images = random_images(batch, seed=1000 + batch)
            outputs = {"Y": dispatcher.infer(images)}
            problem = mismatch(outputs, reference({INPUT_NAME: images}), exact=False)
            assert problem is None, f"batch {batch}: {problem}"


def test_each_context_needs_activation_memory(engine):
    # What the identity cannot show: a context per profile costs GPU memory here.
    assert context_memory_size(engine) > 2**20

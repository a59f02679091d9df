"""The dispatcher on a real GPU: every path exact for every batch, under threads, and refusals."""

import gc
import random
import re
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from dynamic_shapes.dispatch import Dispatcher
from dynamic_shapes.engines import build_engine
from scenario import MODEL_PATH, PROFILES, check_identity, random_images

pytestmark = pytest.mark.gpu

CONFIGURATIONS = {
    "lean with CUDA graphs": {"path": "lean", "cuda_graphs": True},
    "lean": {"path": "lean", "cuda_graphs": False},
    "lean, 2 contexts per profile": {"path": "lean", "contexts_per_profile": 2},
    "runner": {"path": "runner"},
}


@pytest.fixture(scope="module")
def engine():
    return build_engine(MODEL_PATH, PROFILES)


@pytest.fixture(params=list(CONFIGURATIONS))
def dispatcher(engine, request):
    # One dispatcher at a time: TensorRT lets only one live context hold each profile.
    with Dispatcher(engine, **CONFIGURATIONS[request.param]) as dispatcher:
        yield dispatcher


def test_graphs_serve_the_static_profiles(engine):
    # The scenario names the profiles; the dispatcher would call them "profile 0", ...
    use_cases = list(PROFILES)
    with Dispatcher(engine, use_cases, contexts_per_profile=2) as dispatcher:
        assert dispatcher.graph_use_cases == ["low latency", "offline"]
    with Dispatcher(engine, use_cases, path="lean", cuda_graphs=True) as dispatcher:
        assert dispatcher.graph_use_cases == ["low latency", "offline"]
    with Dispatcher(engine, use_cases, path="lean", cuda_graphs=False) as dispatcher:
        assert dispatcher.graph_use_cases == []


def test_identity_for_every_batch_from_1_to_300_and_a_few_large_ones(dispatcher):
    for batch in [*range(1, 301), 513, 1000]:
        images = random_images(batch, seed=batch)
        check_identity(images, dispatcher.infer(images))


def test_outputs_belong_to_the_caller(dispatcher):
    first_images, second_images = random_images(128, seed=1), random_images(128, seed=2)
    first = dispatcher.infer(first_images)
    dispatcher.infer(second_images)
    check_identity(first_images, first)  # not overwritten by the next request


def test_out_receives_the_outputs_and_a_wrong_out_is_refused(dispatcher):
    images = random_images(40)
    out = np.empty_like(images)
    assert dispatcher.infer({"X": images}, out=out) is out
    check_identity(images, out)
    with pytest.raises(ValueError, match=r"out must be float32 \(40, 3, 28, 28\)"):
        dispatcher.infer(images, out=np.empty((39, 3, 28, 28), np.float32))


def test_non_contiguous_requests_are_served_exactly(dispatcher):
    base = random_images(256)
    for view in (base[::2], base[:, ::-1], np.asfortranarray(base[:33])):
        assert not view.flags.c_contiguous
        check_identity(view, dispatcher.infer(view))


def test_concurrent_requests_from_8_threads_are_all_exact(dispatcher):
    def serve(thread):
        rng = random.Random(thread)
        for request in range(40):
            images = random_images(rng.randint(1, 300), seed=thread * 1000 + request)
            check_identity(images, dispatcher.infer(images))

    with ThreadPoolExecutor(8) as pool:
        for future in [pool.submit(serve, thread) for thread in range(8)]:
            future.result()


BAD_REQUESTS = [
    np.zeros((0, 3, 28, 28), np.float32),
    np.zeros((3, 28, 28), np.float32),
    np.zeros((2, 3, 28, 27), np.float32),
    np.zeros((2, 3, 28, 28), np.float16),
    {"input": np.zeros((1, 3, 28, 28), np.float32)},
]


def test_refusals_raise_before_tensorrt_is_touched(dispatcher, capfd):
    for bad in BAD_REQUESTS:
        with pytest.raises(ValueError):
            dispatcher.infer(bad)
    # TensorRT logs an error for every shape it refuses; none may appear.
    output = "".join(capfd.readouterr())
    assert not re.search(r"\[E\]|Error", output), output
    images = random_images(5)
    check_identity(images, dispatcher.infer(images))


def test_a_batch_too_large_for_host_memory_is_refused_before_tensorrt(dispatcher, capfd):
    # Ten billion images, as a view of one: nothing that large is ever allocated.
    huge = np.broadcast_to(random_images(1), (10**10, 3, 28, 28))
    with pytest.raises(MemoryError, match="send it in smaller requests"):
        dispatcher.infer(huge)
    assert "[E]" not in "".join(capfd.readouterr())


def test_a_second_dispatcher_on_the_same_engine_is_refused_clearly(engine):
    with (
        Dispatcher(engine),
        pytest.raises(RuntimeError, match="another Dispatcher serves this engine"),
    ):
        Dispatcher(engine)


def test_a_closed_dispatcher_says_so(engine):
    dispatcher = Dispatcher(engine)
    dispatcher.close()
    dispatcher.close()  # a second close() is harmless
    with pytest.raises(RuntimeError, match="this Dispatcher is closed; create a new one"):
        dispatcher.infer(random_images(1))


def test_a_dispatcher_nobody_closed_lets_go_of_its_engine_when_collected(engine):
    from dynamic_shapes.gpu import device_memory

    Dispatcher(engine).infer(random_images(128))  # never closed, and unreachable at once
    gc.collect()
    free_before, _ = device_memory()
    with Dispatcher(engine) as dispatcher:  # refused while the first one held the engine
        images = random_images(300)
        check_identity(images, dispatcher.infer(images))
    # The second one's buffers came back; had the first one's stayed, the loop below would
    # keep growing instead of coming back to the same figure.
    for _ in range(3):
        Dispatcher(engine).infer(random_images(128))
        gc.collect()
    assert abs(device_memory()[0] - free_before) < 2**20


# ---------------------------------------------------------------------------------------------
# Page-locked and GPU-resident requests (lean path)

BATCHES = (1, 4, 32, 77, 128, 300)


@pytest.fixture
def lean(engine):
    with Dispatcher(engine, contexts_per_profile=2) as dispatcher:
        yield dispatcher


def test_page_locked_requests_are_served_exactly_without_staging(lean):
    from dynamic_shapes.gpu import is_page_locked

    for batch in BATCHES:
        (inputs,), (outputs,) = (
            lean.page_locked_inputs(batch).values(),
            lean.page_locked_outputs(batch).values(),
        )
        assert is_page_locked(inputs) and is_page_locked(outputs[1:])
        inputs[:] = random_images(batch, seed=batch)
        assert lean.infer(inputs, out=outputs) is outputs
        check_identity(inputs, outputs)
    assert not is_page_locked(random_images(1))


@pytest.fixture(scope="module")
def cupy():
    return pytest.importorskip(
        "cupy", reason="GPU-resident requests are tested with CuPy: requirements-gpu-arrays.txt"
    )


def test_cupy_arrays_are_served_on_the_gpu_and_results_stay_there(lean, cupy):
    for batch in BATCHES:
        images = random_images(batch, seed=batch)
        on_gpu = cupy.asarray(images)
        out = cupy.empty_like(on_gpu)
        assert lean.infer(on_gpu, out=out) is out
        check_identity(images, cupy.asnumpy(out))
        check_identity(images, lean.infer(on_gpu))  # without out, to the host


def test_gpu_views_that_start_mid_allocation_are_served_exactly(lean, cupy):
    # 9408-byte images: a view from the second one on is not aligned as TensorRT needs, and is
    # copied on the GPU rather than bound in place; so is an output written there.
    images = random_images(130, seed=3)
    on_gpu, out = cupy.asarray(images), cupy.zeros((130, 3, 28, 28), cupy.float32)
    lean.infer(on_gpu[1:129], out=out[2:130])
    check_identity(images[1:129], cupy.asnumpy(out[2:130]))


class DLPackOnly:
    """A GPU array that speaks only DLPack, as JAX's do."""

    def __init__(self, array):
        self.array = array

    def __dlpack__(self, stream=None):
        return self.array.__dlpack__(stream=stream)

    def __dlpack_device__(self):
        return self.array.__dlpack_device__()


def test_dlpack_arrays_are_served_on_the_gpu(lean, cupy):
    images = random_images(40, seed=4)
    assert not hasattr(DLPackOnly(None), "__cuda_array_interface__")
    check_identity(images, lean.infer(DLPackOnly(cupy.asarray(images))))


@pytest.mark.parametrize("how", ["infer", "prepared"])
@pytest.mark.parametrize("producer", ["legacy default stream", "non-blocking stream"])
def test_work_queued_on_the_producers_stream_is_waited_for(lean, cupy, producer, how):
    # Each request is written on the producer's stream behind a long copy: read too early, it
    # still holds zeros. CUDA itself orders the contexts' (blocking) streams after the legacy
    # default stream; any other stream is waited for through an event.
    images = random_images(128, seed=5)
    source, out = cupy.asarray(images), cupy.empty((128, 3, 28, 28), cupy.float32)
    delay = cupy.zeros(64 * 2**20, cupy.float32)  # 256 MiB: its copy takes a while
    spare = cupy.empty_like(delay)
    null = producer == "legacy default stream"
    with cupy.cuda.Stream.null if null else cupy.cuda.Stream(non_blocking=True) as stream:
        request = cupy.empty_like(source)
        assert request.__cuda_array_interface__["stream"] == (1 if null else stream.ptr)
        prepared = lean.prepare(128, inputs=request, out=out) if how == "prepared" else None
    for _ in range(10):
        out.data.memset(0, out.nbytes)
        # CuPy's arrays name the current stream: the request is served while it is current.
        with stream:
            request.data.memset_async(0, request.nbytes)
            spare.data.copy_from_device_async(delay.data, delay.nbytes)
            request.data.copy_from_device_async(source.data, source.nbytes)
            if prepared is None:
                lean.infer(request, out=out)
            else:
                prepared.run()
        check_identity(images, cupy.asnumpy(out))


def test_mixed_requests_gpu_input_page_locked_output(lean, cupy):
    images = random_images(300, seed=6)
    out = lean.page_locked_outputs(300)["Y"]
    lean.infer({"X": cupy.asarray(images)}, out={"Y": out})
    check_identity(images, out)


def test_the_runner_path_refuses_gpu_arrays_clearly(engine, cupy):
    with (
        Dispatcher(engine, path="runner") as dispatcher,
        pytest.raises(ValueError, match="the runner path serves NumPy arrays; use path='lean'"),
    ):
        dispatcher.infer(cupy.asarray(random_images(1)))


@pytest.mark.parametrize("graphs", [True, False], ids=["graphs", "no graphs"])
def test_prepared_requests_serve_new_data_on_every_run(engine, graphs):
    # A graph replays the copies from and to the prepared arrays: each run must read what the
    # caller wrote there since, and write where the caller reads.
    with Dispatcher(engine, cuda_graphs=graphs, contexts_per_profile=2) as dispatcher:
        for batch in BATCHES:
            prepared = dispatcher.prepare(batch)
            for seed in range(3):
                prepared.inputs["X"][:] = random_images(batch, seed=batch * 10 + seed)
                assert prepared.run() is prepared.outputs
                check_identity(prepared.inputs["X"], prepared.outputs["Y"])
            prepared.close()
            prepared.close()  # safe twice


def test_prepared_requests_for_a_profile_of_a_range_replay_graphs_on_contexts_of_their_own(
    engine,
):
    # A graph replays the shape it was captured with. Requests through infer() set the
    # dynamic-batching profile's contexts to other shapes between the prepared runs; the
    # prepared requests' own contexts keep theirs. 77 images run as 32 + 32 + 13.
    rng = random.Random(9)
    with Dispatcher(engine) as dispatcher:
        prepared = {batch: dispatcher.prepare(batch) for batch in (4, 32, 77)}
        for seed in range(5):
            for batch, request in prepared.items():
                assert request.uses_graphs
                images = random_images(rng.randint(2, 31), seed=seed)
                check_identity(images, dispatcher.infer(images))
                request.inputs["X"][:] = random_images(batch, seed=batch * 10 + seed)
                check_identity(request.inputs["X"], request.run()["Y"])
        for request in prepared.values():
            request.close()
        with pytest.raises(RuntimeError, match="this prepared request is closed"):
            request.run()
    with Dispatcher(engine, cuda_graphs=False) as dispatcher:
        assert not dispatcher.prepare(4).uses_graphs
        assert not dispatcher.prepare(1).uses_graphs


def test_an_engine_without_profile_sharing_serves_prepared_requests_on_its_contexts(capfd):
    import tensorrt as trt
    from polygraphy.backend.trt import CreateConfig, engine_from_network, network_from_onnx_path

    if int(trt.__version__.split(".")[0]) >= 10:
        pytest.skip(f"TensorRT {trt.__version__} shares profiles in every engine")
    config = CreateConfig(profiles=list(PROFILES.values()))  # no PROFILE_SHARING_0806
    unshared = engine_from_network(network_from_onnx_path(str(MODEL_PATH)), config=config)
    capfd.readouterr()
    # TensorRT 8.6 would crash where a second context asked for a profile: refused before.
    with pytest.raises(ValueError, match="contexts_per_profile=2 needs an engine that shares"):
        Dispatcher(unshared, contexts_per_profile=2)
    # With the graphs of shapes sent again on: batch 9's falls on the profile of a range, where
    # a prepared request replays no graph, so it is freed and served as before.
    with Dispatcher(unshared, graphs_after=1) as dispatcher:
        for batch, graphs in [(4, False), (1, True), (77, False)]:
            prepared = dispatcher.prepare(batch)
            assert prepared.uses_graphs == graphs
            for seed in range(3):
                prepared.inputs["X"][:] = random_images(batch, seed=seed)
                check_identity(prepared.inputs["X"], prepared.run()["Y"])
                images = random_images(9, seed=seed)
                check_identity(images, dispatcher.infer(images))
    # The refused profile is expected, and its error is not logged.
    assert "[E]" not in "".join(capfd.readouterr())


def test_prepared_requests_from_8_threads_are_all_exact(lean):
    def serve(thread):
        batch = random.Random(thread).choice(BATCHES)
        prepared = lean.prepare(batch)
        for request in range(30):
            prepared.inputs["X"][:] = random_images(batch, seed=thread * 100 + request)
            check_identity(prepared.inputs["X"], prepared.run()["Y"])

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(serve, range(8)))


def test_prepared_requests_take_gpu_arrays_aligned_or_not(lean, cupy):
    images = random_images(130, seed=7)
    on_gpu, out = cupy.asarray(images), cupy.zeros((130, 3, 28, 28), cupy.float32)
    for inputs, outputs in [(on_gpu[:128], out[:128]), (on_gpu[1:129], out[2:130])]:
        prepared = lean.prepare(128, inputs=inputs, out=outputs)
        for _ in range(2):
            outputs.set(np.zeros(outputs.shape, np.float32))
            prepared.run()
            check_identity(cupy.asnumpy(inputs), cupy.asnumpy(outputs))
        inputs.set(random_images(128, seed=8))  # new data in place: the next run reads it
        prepared.run()
        check_identity(cupy.asnumpy(inputs), cupy.asnumpy(outputs))


def test_prepared_requests_refuse_what_they_cannot_serve(engine):
    with Dispatcher(engine) as dispatcher:
        with pytest.raises(ValueError, match="a prepared request needs page-locked arrays"):
            dispatcher.prepare(4, inputs=random_images(4))
        with pytest.raises(ValueError, match="the inputs hold batch 4, not 5"):
            dispatcher.prepare(5, inputs=dispatcher.page_locked_inputs(4))
        with pytest.raises(ValueError, match="a request needs at least one image"):
            dispatcher.prepare(0)
        prepared = dispatcher.prepare(1)
    with pytest.raises(RuntimeError, match="its Dispatcher is closed; prepare the request again"):
        prepared.run()
    with (
        Dispatcher(engine, path="runner") as dispatcher,
        pytest.raises(ValueError, match="prepared requests run on the lean path"),
    ):
        dispatcher.prepare(1)


# ---------------------------------------------------------------------------------------------
# Shapes sent again, served from their graphs (shape_graphs.py)

SHAPES_AGAIN = (1, 4, 13, 32, 77, 128, 300)


def test_shapes_sent_again_are_served_from_their_graphs_from_fresh_arrays(engine):
    with Dispatcher(engine, graphs_after=1) as dispatcher:
        for round_ in range(3):  # new arrays for every request: the graphs copy from them
            for batch in SHAPES_AGAIN:
                images = random_images(batch, seed=round_ * 1000 + batch)
                check_identity(images, dispatcher.infer(images))
        stats = dispatcher.graph_stats()
        assert (stats.misses, stats.captures, stats.hits, stats.busy) == (7, 7, 14, 0)
        assert stats.shapes == 7 and stats.bytes > 0
        images = random_images(13, seed=5)
        out = np.empty_like(images)
        assert dispatcher.infer(images, out=out) is out
        check_identity(images, out)
        assert dispatcher.graph_stats().hits == 15
        # Page-locked arrays in and out are copied straight to and from the GPU, as before.
        inputs, outputs = dispatcher.page_locked_inputs(13), dispatcher.page_locked_outputs(13)
        inputs["X"][:] = images
        assert dispatcher.infer(inputs, out=outputs) is outputs
        check_identity(images, outputs["Y"])
        stats = dispatcher.graph_stats()
        assert stats.hits + stats.misses + stats.busy == 22


def test_a_dispatcher_with_graphs_nobody_closed_lets_go_of_its_engine_when_dropped(engine):
    dispatcher = Dispatcher(engine, graphs_after=1)
    for _ in range(3):
        dispatcher.infer(random_images(4))
    assert dispatcher.graph_stats().captures == 1
    del dispatcher  # no cycle holds it: freed at once, without the garbage collector
    with Dispatcher(engine, graphs_after=1) as again:
        images = random_images(4)
        check_identity(images, again.infer(images))


def test_graphs_of_shapes_sent_again_are_off_by_default_and_where_there_are_no_graphs(engine):
    for options in (
        {},
        {"graphs_after": None},
        {"graphs_after": 1, "cuda_graphs": False},
        {"graphs_after": 1, "path": "runner"},
    ):
        with Dispatcher(engine, **options) as dispatcher:
            for _ in range(3):
                images = random_images(4, seed=4)
                check_identity(images, dispatcher.infer(images))
            assert dispatcher.graph_stats() is None, options
            assert dispatcher.graphs_after is None, options
    with pytest.raises(ValueError, match="graphs_after must be an integer of 1 or more"):
        Dispatcher(engine, graphs_after=0)
    with Dispatcher(engine, graphs_after=2) as dispatcher:  # the refusal left the engine free
        assert dispatcher.graph_stats().hits == 0
        assert dispatcher.graphs_after == 2


def test_the_graphs_kept_stay_within_their_limits_and_serve_exactly(engine):
    with Dispatcher(engine, graphs_after=1, graph_shapes=2) as dispatcher:
        for round_ in range(4):
            for batch in SHAPES_AGAIN:
                images = random_images(batch, seed=round_ * 1000 + batch)
                check_identity(images, dispatcher.infer(images))
                assert dispatcher.graph_stats().shapes <= 2
        stats = dispatcher.graph_stats()
        assert stats.hits + stats.misses + stats.busy == 4 * len(SHAPES_AGAIN)
        assert stats.captures - stats.evictions == stats.shapes == 2


def test_shapes_sent_again_from_8_threads_are_all_exact(engine):
    def serve(thread):
        rng = random.Random(thread)
        for request in range(40):
            batch = rng.choice((1, 4, 13, 32))
            images = random_images(batch, seed=thread * 100 + request)
            check_identity(images, dispatcher.infer(images))

    with Dispatcher(engine, contexts_per_profile=2, graphs_after=1) as dispatcher:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(serve, range(8)))
        stats = dispatcher.graph_stats()
        assert stats.hits + stats.misses + stats.busy == 8 * 40
        assert stats.hits > 0 and stats.captures == stats.shapes == 4

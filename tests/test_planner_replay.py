"""The planner's replay: requests made per shape and dtype, engines named from their profiles,
the replay's timing and order, the ONNX Runtime check, and the JSON record, without a GPU; and,
on the GPU, plan_profiles.py planning a small scenario workload end to end on the identity."""

import json
import statistics
import threading

import numpy as np
import pytest

import build_model
import dynamic_shapes.planner.replay as replay_module
import scenario
from dynamic_shapes.planner import generators
from dynamic_shapes.planner.candidates import given_candidate, plan_candidates
from dynamic_shapes.planner.replay import (
    ROUND_REQUESTS,
    Plan,
    Replay,
    Settings,
    ShapeChecks,
    engine_name,
    plan_record,
    replay,
    replay_side_by_side,
    turns,
)
from dynamic_shapes.planner.requests import (
    DEFAULT_VALUE_RANGE,
    check_value_ranges,
    check_workload_fits_model,
    is_identity,
    make_request,
    make_requests,
    parse_value_range,
    read_input_dtypes,
)
from dynamic_shapes.planner.scoring import Measurement
from dynamic_shapes.planner.workloads import make_histogram, shape_key
from dynamic_shapes.profiles import profile_shapes, profiles_from_json, read_profiles_file
from scenario import IMAGE_SHAPE, INPUT_NAME, MODEL_PATH, PROFILES
from tests.support import run_script

IDS, MASK = scenario.TOKEN_IDS_NAME, scenario.ATTENTION_MASK_NAME


def key(**shapes):
    return shape_key(shapes)


@pytest.fixture(scope="module")
def transformer(tmp_path_factory):
    path = tmp_path_factory.mktemp("transformer") / "dynamic_transformer.onnx"
    build_model.write_model("transformer", path)
    return path


# The model


def test_the_identity_is_told_apart_from_a_model_that_computes(transformer):
    assert is_identity(MODEL_PATH)
    assert not is_identity(transformer)


def test_dtypes_are_the_models_inputs(transformer):
    assert read_input_dtypes(MODEL_PATH) == {INPUT_NAME: np.dtype(np.float32)}
    assert read_input_dtypes(transformer) == {IDS: np.dtype(np.int32), MASK: np.dtype(np.int32)}


def test_a_workload_for_another_model_is_refused(transformer):
    check_workload_fits_model({key(X=(4, *IMAGE_SHAPE)): 2}, MODEL_PATH)
    check_workload_fits_model({key(input_ids=(2, 7), attention_mask=(2, 7)): 1}, transformer)
    with pytest.raises(ValueError, match=r"give inputs \['X'\], but .* takes \['attention_m"):
        check_workload_fits_model({key(X=(4, *IMAGE_SHAPE)): 2}, transformer)
    with pytest.raises(ValueError, match=r"X \[4, 3, 28\] does not fit .*X is \[\?, 3, 28, 28\]"):
        check_workload_fits_model({key(X=(4, 3, 28)): 2}, MODEL_PATH)
    with pytest.raises(ValueError, match=r"X \[4, 1, 28, 28\] does not fit"):
        check_workload_fits_model({key(X=(4, 1, 28, 28)): 2}, MODEL_PATH)


# The requests


def test_value_ranges_are_read_and_checked(transformer):
    assert parse_value_range("input_ids:0..999") == (IDS, (0, 999))
    assert parse_value_range("a:b:-3..-3") == ("a:b", (-3, -3))
    for bad in ["input_ids", "input_ids:0-9", ":0..9", "x:9..0", "x:a..b", "x:1..2..3"]:
        with pytest.raises(ValueError, match=r"is not NAME:LOW\.\.HIGH"):
            parse_value_range(bad)
    dtypes = read_input_dtypes(transformer)
    check_value_ranges({IDS: (0, 999), MASK: (1, 1)}, dtypes, transformer)
    with pytest.raises(
        ValueError, match=r"X is not an integer input .* are \['input_ids', 'attention_mask'\]"
    ):
        check_value_ranges({"X": (0, 1)}, dtypes, transformer)
    with pytest.raises(ValueError, match="does not fit its dtype int32"):
        check_value_ranges({IDS: (0, 2**31)}, dtypes, transformer)


def test_a_request_has_the_shapes_and_dtypes_and_stays_in_range():
    dtypes = {"ids": np.int32, "mask": np.int64, "x": np.float16, "flag": np.bool_}
    shapes = key(ids=(3, 50), mask=(3, 50), x=(3, 4), flag=(3, 2))
    request = make_request(shapes, dtypes, {"ids": (5, 7), "mask": (1, 1)}, seed=0)
    assert {name: (a.shape, a.dtype) for name, a in request.items()} == {
        "ids": ((3, 50), np.int32), "mask": ((3, 50), np.int64), "x": ((3, 4), np.float16),
        "flag": ((3, 2), np.bool_),
    }  # fmt: skip
    assert set(np.unique(request["ids"])) == {5, 6, 7}  # both ends included
    assert np.all(request["mask"] == 1)
    assert np.std(request["x"].astype(np.float64)) > 0.1  # random, not zeros
    again = make_request(shapes, dtypes, {"ids": (5, 7), "mask": (1, 1)}, seed=0)
    assert all(np.array_equal(request[n], again[n]) for n in request)


def test_integers_take_the_default_range_unless_given():
    request = make_request(key(ids=(64, 64)), {"ids": np.int32}, {}, seed=1)
    low, high = DEFAULT_VALUE_RANGE
    assert request["ids"].min() == low and request["ids"].max() == high


def test_a_request_of_a_dtype_that_is_no_number_is_refused():
    with pytest.raises(ValueError, match="input s has dtype <U1"):
        make_request(key(s=(1,)), {"s": np.dtype("U1")}, {}, seed=0)


def test_one_request_per_distinct_shape_each_of_its_own():
    workload = generators.scenario_requests(300, INPUT_NAME, IMAGE_SHAPE)
    histogram = make_histogram(workload)
    requests = make_requests(histogram, {INPUT_NAME: np.float32})
    assert list(requests) == list(histogram)
    for shapes, request in requests.items():
        assert request[INPUT_NAME].shape == dict(shapes)[INPUT_NAME]
    firsts = [request[INPUT_NAME].ravel()[:8] for request in requests.values()]
    assert len({first.tobytes() for first in firsts}) == len(firsts)


# The engines


def test_an_engine_is_named_from_the_model_and_a_hash_of_its_profiles():
    name = engine_name(MODEL_PATH, list(PROFILES.values()))
    assert name.startswith("dynamic_identity.plan-") and name.endswith(".engine")
    assert len(name.split(".plan-")[1]) == len("0123456789ab.engine")
    # Equal profiles built anew find the same file; other profiles another.
    same = profiles_from_json(json.dumps([
        {INPUT_NAME: {"min": [lo, *IMAGE_SHAPE], "opt": [o, *IMAGE_SHAPE],
                      "max": [hi, *IMAGE_SHAPE]}}
        for lo, o, hi in scenario.BATCH_SIZES.values()
    ]))  # fmt: skip
    assert engine_name(MODEL_PATH, same) == name
    histogram = make_histogram(generators.scenario_requests(300, INPUT_NAME, IMAGE_SHAPE))
    names = {engine_name(MODEL_PATH, c.profiles) for c in plan_candidates(histogram, 3)}
    assert len(names) == 3 and name not in names


# The replay


def scenario_order(count=200):
    return generators.scenario_requests(count, INPUT_NAME, IMAGE_SHAPE)


def test_one_thread_serves_the_workload_in_order_and_times_every_request():
    order = scenario_order()
    requests = {shapes: f"request {shapes}" for shapes in dict.fromkeys(order)}
    served = []
    timed = replay(served.append, order, requests)
    assert served == [requests[shapes] for shapes in order]
    assert timed.requests == len(order) and timed.wall_seconds > 0
    histogram = make_histogram(order)
    assert {shapes: len(ns) for shapes, ns in timed.samples.items()} == histogram
    assert all(ns > 0 for samples in timed.samples.values() for ns in samples)


def test_threads_serve_every_request_once_at_the_same_time():
    order = scenario_order(400)
    requests = {shapes: shapes for shapes in dict.fromkeys(order)}
    served, lock, calls, inside, most = [], threading.Lock(), [0], [0], [0]
    barrier = threading.Barrier(4)

    def infer(request):
        with lock:
            calls[0] += 1
            first = calls[0] <= 4
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        if first:
            barrier.wait(timeout=10)  # the first four calls meet: four threads send at once
        with lock:
            inside[0] -= 1
            served.append(request)

    timed = replay(infer, order, requests, threads=4)
    assert sorted(served) == sorted(order)
    assert most[0] == 4
    assert {shapes: len(ns) for shapes, ns in timed.samples.items()} == make_histogram(order)


def test_a_failing_request_ends_the_replay_with_its_error():
    order = scenario_order()
    requests = {shapes: shapes for shapes in dict.fromkeys(order)}

    def infer(request):
        if dict(request)[INPUT_NAME][0] == 128:
            raise ValueError("batch 128 refused")

    for threads in (1, 3):
        with pytest.raises(ValueError, match="batch 128 refused"):
            replay(infer, order, requests, threads=threads)


def test_side_by_side_every_candidate_serves_the_whole_workload_in_rounds_that_take_turns():
    order = scenario_order(2 * ROUND_REQUESTS + 30)
    requests = {shapes: shapes for shapes in dict.fromkeys(order)}
    log = []
    infers = [lambda request, i=i: log.append((i, request)) for i in range(3)]
    timed = replay_side_by_side(infers, order, requests)
    for index in range(3):
        assert [request for i, request in log if i == index] == order
        counts = {shapes: len(ns) for shapes, ns in timed[index].samples.items()}
        assert counts == make_histogram(order)
        assert timed[index].wall_seconds > 0
    # Each round served by every candidate in turn, in the order turns() gives.
    served_by = []
    for start in range(0, 6 * ROUND_REQUESTS, ROUND_REQUESTS):  # two full rounds
        block = log[start : start + ROUND_REQUESTS]
        assert len({i for i, _ in block}) == 1  # one candidate's turn at a time
        served_by.append(block[0][0])
    rounds = [
        served_by[:3],
        served_by[3:],
        [log[k][0] for k in range(len(served_by) * ROUND_REQUESTS, len(log), 30)],
    ]
    assert rounds == [turns(0, 3), turns(1, 3), turns(2, 3)]


def test_every_candidate_takes_every_place_and_follows_more_than_one():
    # All six orders of three.
    assert [turns(n, 3) for n in range(6)] == [
        [0, 1, 2],
        [2, 1, 0],
        [1, 2, 0],
        [0, 2, 1],
        [2, 0, 1],
        [1, 0, 2],
    ]
    for count in (2, 4, 5):
        orders = [turns(n, count) for n in range(2 * count)]
        for place in range(count):
            assert sorted(order[place] for order in orders) == sorted(list(range(count)) * 2)
        for candidate in range(count):
            before = {
                order[order.index(candidate) - 1] for order in orders if order[0] != candidate
            }
            assert len(before) == min(2, count - 1)


def test_side_by_side_a_drift_weighs_on_every_candidate_alike(monkeypatch):
    # A machine that slows as it runs: each request takes a microsecond longer than the last.
    clock, served = [0], [0]

    def infer(request):
        served[0] += 1
        clock[0] += 1000 * served[0]

    monkeypatch.setattr(replay_module.time, "perf_counter_ns", lambda: clock[0])
    order = scenario_order(20 * ROUND_REQUESTS)
    requests = {shapes: shapes for shapes in dict.fromkeys(order)}

    def mean(timed):
        return statistics.fmean(ns for samples in timed.samples.values() for ns in samples)

    first, second = replay(infer, order, requests), replay(infer, order, requests)
    assert mean(second) / mean(first) > 2  # one after the other: the later, the slower
    served[0] = 0
    first, second = replay_side_by_side([infer, infer], order, requests)
    assert mean(second) / mean(first) == pytest.approx(1.0, abs=0.01)


def test_a_shapes_latency_is_the_median_of_its_requests():
    a, b = key(X=(1, 2)), key(X=(4, 2))
    timed = Replay({a: [3000, 1000, 2000], b: [10_000, 50_000]}, wall_seconds=1.0)
    assert timed.latencies() == {a: 2e-6, b: 30e-6}
    figures = timed.shape_figures()
    assert figures[0] == {"shapes": {"X": [1, 2]}, "requests": 3, "median_s": 2e-6,
                          "mean_s": 2e-6, "max_s": 3e-6}  # fmt: skip
    assert figures[1]["mean_s"] == pytest.approx(30e-6) and figures[1]["max_s"] == 50e-6


# The reference


def test_the_identitys_outputs_are_checked_bit_for_bit():
    histogram = make_histogram(scenario_order(50))
    requests = make_requests(histogram, read_input_dtypes(MODEL_PATH))
    checks = ShapeChecks(MODEL_PATH, requests, exact=True)
    for shapes, request in requests.items():
        checks.check("wide", shapes, request[INPUT_NAME].copy())  # one output: an array
        checks.check("wide", shapes, {scenario.OUTPUT_NAME: request[INPUT_NAME]})  # or a dict
    assert checks.largest_difference == 0.0
    shapes = next(iter(requests))
    wrong = requests[shapes][INPUT_NAME].copy()
    wrong.flat[7] = np.nextafter(wrong.flat[7], np.float32(np.inf))
    with pytest.raises(AssertionError, match=r"2 profiles, request X \[.*differs .* in 1 of"):
        checks.check("2 profiles", shapes, wrong)
    with pytest.raises(AssertionError, match="output Y is missing"):
        checks.check("given", shapes, {"Z": wrong})


# The record


def measured_plan():
    """A Plan with figures set by hand: the record's assembly needs no GPU."""
    order = scenario_order(300)
    histogram = make_histogram(order)
    candidates = plan_candidates(histogram, 3)
    candidates.append(given_candidate("given", list(PROFILES.values())))
    measurements, details = [], []
    for index, candidate in enumerate(candidates):
        # The wide profile slowest, the given one fastest, the others between.
        speed = {0: 3.0, 1: 2.0, 2: 1.5, 3: 1.0}[index]
        latencies = {shapes: speed * 1e-5 * dict(shapes)[INPUT_NAME][0] for shapes in histogram}
        measurements.append(Measurement(candidate, latencies, 1024 * 1024 * (index + 1), 2.5))
        details.append({"engine": f"e{index}.engine", "replayed_requests": len(order)})
    return Plan(histogram, measurements, details, exact=True, largest_difference=0.0)


def test_the_record_holds_every_candidates_figures_ranked():
    plan = measured_plan()
    settings = Settings(engine_dir="engines", threads=1, warmup=10)
    record = plan_record(plan, settings, {"gpu": "NVIDIA H100"}, {"model": "m.onnx"})
    assert record["environment"] == {"gpu": "NVIDIA H100"}
    assert record["workload"]["requests"] == 300
    assert record["settings"] == {"threads": 1, "warmup": 10, "engine_dir": "engines",
                                  "checked": "bit for bit", "model": "m.onnx"}  # fmt: skip
    candidates = record["candidates"]
    assert [c["name"] for c in candidates] == ["wide", "2 profiles", "3 profiles", "given"]
    assert [c["rank"] for c in candidates] == [4, 3, 2, 1]
    assert record["best"] == "given" and plan.best.role == "given"
    wide, given = candidates[0], candidates[3]
    assert wide["mean_s"] == pytest.approx(3 * given["mean_s"])
    assert given["p50_s"] <= given["p99_s"]
    assert given["context_memory_bytes"] == 4 * 1024 * 1024 and given["build_seconds"] == 2.5
    assert not given["throughput_measured"] and given["throughput_per_s"] > 0
    assert given["engine"] == "e3.engine" and given["cost"] is None and wide["cost"] > 0
    # The profiles as the profile file holds them, and as Polygraphy's options.
    assert profile_shapes(profiles_from_json(json.dumps(given["profiles"]))) == profile_shapes(
        PROFILES
    )
    assert given["polygraphy_options"].startswith("--trt-min-shapes 'X:[1,3,28,28]'")
    assert json.loads(json.dumps(record)) == record  # plain JSON throughout


# On the GPU: the command, end to end, on the identity.


@pytest.mark.gpu
def test_plan_profiles_plans_a_small_scenario_workload_on_the_identity(tmp_path):
    report, best = tmp_path / "report.json", tmp_path / "best.json"
    walkthrough = []
    for low, opt, high in scenario.BATCH_SIZES.values():
        for option, batch in zip(("min", "opt", "max"), (low, opt, high), strict=True):
            walkthrough += [f"--trt-{option}-shapes", f"X:[{batch},3,28,28]"]
    argv = [
        "plan_profiles.py", "--model", "identity", "--generate", "scenario", "--requests", "300",
        "--max-profiles", "2", "--warmup", "20", "--engine-dir", str(tmp_path),
        "--json", str(report), "--write-profiles", str(best), *walkthrough,
    ]  # fmt: skip
    first = run_script(*argv)
    assert first.returncode == 0, first.stdout + first.stderr
    # The report, from its first line: Polygraphy may log a warning to stdout before it.
    lines = first.stdout.splitlines()
    lines = lines[next(i for i, line in enumerate(lines) if line.startswith("Workload: ")) :]
    assert lines[0].startswith("Workload: 300 requests, ")
    header = lines[1].split()
    assert header[:2] == ["Rank", "Candidate"] and "vs wide" in lines[1] and "vs given" in lines[1]
    rows = {line.split()[1] for line in lines[2:5]}
    assert rows == {"wide", "2", "given"}
    assert "Every distinct shape's outputs matched ONNX Runtime's, bit for bit." in lines
    (at,) = [i for i, line in enumerate(lines) if line.startswith("Best: ")]
    assert lines[at + 1].startswith("--trt-min-shapes 'X:[")

    record = json.loads(report.read_text())
    assert record["settings"]["checked"] == "bit for bit"
    assert record["largest_difference_from_onnx_runtime"] == 0.0
    assert record["environment"]["tensorrt"] and record["environment"]["gpu"]
    candidates = {c["name"]: c for c in record["candidates"]}
    assert set(candidates) == {"wide", "2 profiles", "given"}
    for candidate in candidates.values():
        assert candidate["replayed_requests"] == 300
        assert sum(shape["requests"] for shape in candidate["shapes"]) == 300
        assert 0 < candidate["p50_s"] <= candidate["p99_s"]
        assert candidate["throughput_per_s"] > 0
        # The identity needs no activation memory: TensorRT reports 0 bytes a context for it.
        assert candidate["context_memory_bytes"] == 0
        assert candidate["build_seconds"] > 0
        assert candidate["engine_line"].startswith("Built ")
    assert len(candidates["2 profiles"]["profiles"]) == 2
    assert candidates["given"]["contexts"] == 3
    assert profile_shapes(read_profiles_file(best)) == profile_shapes(
        profiles_from_json(json.dumps(candidates[record["best"]]["profiles"]))
    )
    assert lines[at] == f"Best: {record['best']}"
    assert len(list(tmp_path.glob("dynamic_identity.plan-*.engine"))) == 3

    # A second run reuses the engine of every set of profiles the first built, and still reports
    # what it took to build. The planned set is cut by measured latencies, so where two cuts
    # cost nearly the same it may differ, and then is built anew.
    again = run_script(*argv)
    assert again.returncode == 0, again.stdout + again.stderr
    second = {c["name"]: c for c in json.loads(report.read_text())["candidates"]}
    assert set(second) == set(candidates)
    for name, candidate in second.items():
        if name != "2 profiles" or candidate["profiles"] == candidates[name]["profiles"]:
            assert candidate["engine_line"].startswith("Reusing "), candidate["engine_line"]
            assert candidate["build_seconds"] == pytest.approx(
                candidates[name]["build_seconds"], 1e-3
            )
        else:
            assert candidate["engine_line"].startswith("Built "), candidate["engine_line"]


@pytest.mark.gpu
def test_the_planner_replays_from_threads_and_measures_their_throughput(tmp_path):
    from dynamic_shapes.planner.replay import plan_profiles

    workload = generators.scenario_requests(200, INPUT_NAME, IMAGE_SHAPE, seed=3)
    settings = Settings(engine_dir=tmp_path, threads=3, warmup=0)
    plan = plan_profiles(MODEL_PATH, workload, 1, settings)
    ((measurement, score),) = plan.ranked()
    assert measurement.candidate.role == "wide" and plan.exact
    assert measurement.throughput is not None and score.throughput == measurement.throughput
    (detail,) = plan.details
    assert detail["contexts"] == 3 and detail["replayed_requests"] == 200
    assert set(measurement.latencies) == set(make_histogram(workload))


@pytest.mark.gpu
def test_a_histogram_workload_is_planned_too(tmp_path):
    from dynamic_shapes.planner.workloads import write_histogram

    path = tmp_path / "histogram.json"
    write_histogram(path, {key(X=(1, *IMAGE_SHAPE)): 40, key(X=(8, *IMAGE_SHAPE)): 10})
    result = run_script(
        "plan_profiles.py", "--model", "identity", "--workload", str(path), "--max-profiles", "2",
        "--engine-dir", str(tmp_path), "--warmup", "0",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "\nWorkload: 50 requests, 2 distinct shapes" in "\n" + result.stdout

"""A results folder for the renderer's tests, in the formats benchmark.py, plan_profiles.py,
stress.py and loadgen.py write. Every figure in it is INVENTED for the tests (plausible, never
measured): none of it may appear in the documentation."""

import json

import scenario
from dynamic_shapes.measure.by_shape import summarize
from dynamic_shapes.planner import generators
from dynamic_shapes.planner.candidates import given_candidate, plan_candidates
from dynamic_shapes.planner.replay import Plan, Settings, plan_record
from dynamic_shapes.planner.scoring import Measurement
from dynamic_shapes.planner.workloads import make_histogram
from dynamic_shapes.results import EARLIER_COMMIT, EARLIER_STRESS

ENVIRONMENT = {
    "gpu": "NVIDIA H100 80GB HBM3",
    "driver": "580.00.00",
    "driver_cuda": "13.0",
    "tensorrt": "8.6.0",
    "polygraphy": "0.49.26",
    "cuda_bindings": "12.9.10",
    "onnxruntime": "1.23.2",
    "numpy": "1.26.4",
    "cupy": "13.6.0",
    "tritonclient": "2.73.0",
    "pytriton": "0.7.0",
    "python": "3.10.13",
    "cpu_cores": 16,
    "commit": "abc1234",
    "date": "2030-01-02T03:04:05+00:00",
    "summary": "NVIDIA H100 80GB HBM3, TensorRT 8.6.0, 2030-01-02",
}


def stats(median, p90=None, p99=None):
    return {
        "median_us": median,
        "p90_us": p90 or median * 1.1,
        "p99_us": p99 or median * 1.5,
        "samples": 2000,
    }


def convenience(scale: float, prepared_graph_at_1: float) -> dict:
    """Section 6 of benchmark.py for one model: every variant it times, at batch 1, 4, 32, 128
    (the bare graph replay only on the profiles of one shape, 1 and 128, as benchmark.py)."""
    by_batch = {}
    for batch in (1, 4, 32, 128):
        floor = (26.0 + batch * 0.35) * scale
        static = batch in (1, 128)
        variants = {"TrtRunner.infer": stats(1500.0 + batch)}
        variants["dispatcher, pageable, CUDA graph"] = stats(floor * 1.4)
        variants["dispatcher, page-locked, CUDA graph"] = stats(floor * 1.3)
        variants["dispatcher, pageable, fresh arrays, CUDA graph"] = stats(floor * 1.45)
        variants.update(
            {
                "dispatcher, pageable": stats(floor * (2.2 if batch < 128 else 6.5)),
                "dispatcher, page-locked": stats(floor * 1.8),
                "dispatcher, prepared, page-locked": stats(floor * 1.1),
                "dispatcher, prepared, GPU-resident": stats(floor * 0.7),
                "dispatcher, prepared, page-locked, CUDA graph": stats(floor * 0.9),
                "dispatcher, prepared, GPU-resident, CUDA graph": stats(floor * 0.45),
                "dispatcher, pageable, out=": stats(floor * 2.1),
                "dispatcher, GPU-resident": stats(floor * 1.7),
                "staging copies alone, one thread (no GPU)": stats(batch * 1.8),
                "bare loop, pageable": stats(floor * 1.25),
                "bare loop, page-locked": stats(floor),
                "bare copies alone, page-locked (no inference)": stats(floor * 0.6),
                "bare execute, GPU-resident": stats(floor * 0.65),
            }
        )
        if static:
            variants["bare graph replay, page-locked"] = stats(floor * 0.62)
        if batch == 1:
            variants["dispatcher, prepared, page-locked, CUDA graph"] = stats(prepared_graph_at_1)
        by_batch[str(batch)] = {name: s for name, s in variants.items() if s is not None}
    return {
        "by_batch": by_batch,
        "notes": ["batch 4: CUDA graphs for prepared requests only (invented note)"],
        "capturing_requests": {
            "1": {**stats(30.0 * scale * 25), "samples": 20, "captured": 20, "graphs_after": 2},
            "128": {**stats(70.0 * scale * 25), "samples": 20, "captured": 19, "graphs_after": 2},
        },
        "trtrunner_profile": [
            {"function": "infer", "us_per_infer": 12.0, "calls_per_infer": 1.0},
        ],
        "infer_profile": {
            "dispatcher, page-locked, CUDA graph": [
                {
                    "function": "dispatcher.py:229 infer",
                    "us_per_infer": 2.5,
                    "calls_per_infer": 1.0,
                },
                {"function": "pools.py:8 take", "us_per_infer": 1.25, "calls_per_infer": 1.0},
            ],
        },
    }


def model(name: str, scale: float, prepared_graph_at_1: float) -> dict:
    exact = name == "identity"
    return {
        "path": f"/project/dynamic_{name}.onnx",
        "input": "X float32 [batch, 3, 28, 28]",
        "checked": "bit for bit" if exact else "within a tolerance",
        "engines": [f"Reusing dynamic_{name}.engine"],
        "narrow_vs_wide": {
            "by_batch": {
                str(batch): {
                    "three narrow profiles": stats(27.0 * scale + batch),
                    "one wide profile (1..128)": stats(27.0 * scale + batch * (1 + 0.02 * scale)),
                }
                for batch in (1, 4, 16, 32, 128)
            },
            "notes": [],
        },
        "shape_switching": {
            "stats": {
                "fixed batch 1": stats(28.0 * scale),
                "fixed batch 32": stats(33.0 * scale),
                "alternating 1 and 32 (two requests)": stats(167.0 * scale),
            },
            "baseline": "fixed batch 1",
            "cost_per_switch_us": (167.0 - 28.0 - 33.0) * scale / 2,
        },
        "profile_switching": {
            "stats": {
                "one context per profile": stats(94.0 * scale),
                "one context, switching profiles": stats(1166.0 * scale),
            },
            "baseline": "one context per profile",
            "cost_per_switch_us": (1166.0 - 94.0) * scale / 2,
            "ratio": 1166.0 / 94.0,
        },
        "memory": {
            "engine_measured_mib": 2.0 * scale,
            "plan_mib": 0.01 * scale,
            "contexts_measured_mib": [0.0, 0.0, 0.0] if exact else [50.0, 50.0, 50.0],
            "context_reported_mib": 0.0 if exact else 49.0,
            "notes": ["TensorRT reports no memory figure for the engine itself"],
        },
        "runner_activation": {
            "stats": {
                "over an owned context": stats(55.0),
                "creating its own context": stats(4700.0),
            },
            "baseline": "over an owned context",
        },
        "convenience": convenience(scale, prepared_graph_at_1),
        "contexts": {
            "by_batch": {
                str(batch): {
                    f"{memory}, {count} context{'s' * (count > 1)}": {
                        "requests_per_s": rate,
                        "images_per_s": rate * batch,
                        "vs_one_context": rate / base,
                    }
                    for memory, base in (("page-locked", 2400.0), ("GPU-resident", 2300.0))
                    for count, rate in ((1, base), (4, base * (2.5 if exact is False else 0.7)))
                }
                for batch in (4, 128)
            },
            "notes": [],
            "threads": 8,
        },
        "largest_difference_from_onnx_runtime": 0.0 if exact else 1.5e-6,
    }


def benchmark(prepared_graph_at_1=16.0) -> dict:
    return {
        "environment": ENVIRONMENT,
        "settings": {"rounds": 10, "reps": 200, "warmup": 50},
        "models": {
            "identity": model("identity", 1.0, prepared_graph_at_1),
            "convnet": model("convnet", 15.0, 390.0),
        },
        "complete": True,
    }


def stress(
    processes=1, threads=8, memory="pageable", mps=False, images_per_s=220_000.0, commit=None
):
    """stress.py's figures; with `commit`, an earlier commit's (stress.py --at)."""
    seconds = 27.0
    requests = int(images_per_s * seconds / 150)
    earlier = {"at": commit} if commit else {}
    return {
        **earlier,
        "environment": {**ENVIRONMENT, "commit": commit or ENVIRONMENT["commit"]},
        "load": {
            "processes": processes,
            "threads": threads,
            "requests_per_thread": 5000,
            "max_batch": 300,
            "path": "lean",
            "memory": memory,
            "contexts_per_profile": 4,
            "mps": mps,
            "requests_served": requests,
            "images_served": int(images_per_s * seconds),
            "errors": 0,
            "first_errors": [],
            "seconds": seconds,
            "cpu_cores_busy": 2.5,
            "cpu_cores": 16,
            "infer_us_per_request": 4700.0,
            "check_us_per_request": 570.0,
            "device_mib_before": 1318.0,
            "device_mib_after": 1318.0,
            "host_rss_mib_before": 4311.0,
            "host_rss_mib_after": 4313.0,
            "host_rss_mib_checkpoints": [[4000, 4312.0], [40000, 4313.0]],
            "per_process": [],
        },
        "lifecycle": {
            "dispatchers": 200,
            "dispatchers_device_mib_delta": 0.0,
            "prepared": 300,
            "prepared_batches": [1, 77, 128],
            "prepared_device_mib_delta": 0.0,
            "activations": 1000,
            "activations_device_mib_delta": 0.0,
            "activations_plain_deactivate_device_mib_delta": 8.0,
        },
    }


def level(concurrency, requests_per_s, p50, p99, per_execution, rss=None, errors=0, seconds=5):
    result = {
        "concurrency": concurrency,
        "requests": int(requests_per_s * seconds),
        "requests_per_s": requests_per_s,
        "images_per_s": requests_per_s,
        "p50_us": p50,
        "p90_us": (p50 + p99) / 2,
        "p99_us": p99,
        "requests_per_execution": per_execution,
        "errors": errors,
        "server_us": p50 * 0.6,
        "queue_us": p50 * 0.2,
        "compute_input_us": 20.0,
        "compute_infer_us": p50 * 0.3,
        "compute_output_us": 60.0,
        "gpu_memory_mib_before": 2000.0,
        "gpu_memory_mib_after": 2000.0,
    }
    if rss is not None:
        result["server_rss_mib_before"], result["server_rss_mib_after"] = rss
    return result


def mixed(concurrency, requests_per_s, images_per_request, errors) -> dict:
    """A level of mixed batch sizes: images per request served, and the requests refused."""
    result = level(concurrency, requests_per_s, 9000.0, 30000.0, 3.5, errors=errors)
    result["images_per_s"] = requests_per_s * images_per_request
    return result


def triton(levels, protocol="grpc") -> dict:
    return {
        "model": "dynamic_identity",
        "protocol": protocol,
        "levels": levels,
        "environment": ENVIRONMENT,
    }


def routing(ratios=(1.0, 1.08, 0.97), overlapping=False) -> dict:
    """benchmark.py --shapes's JSON: each shape's nearest-opt latency is `ratio` times its
    narrowest one; the rules route the shapes whose ratio is not 1 differently."""
    by_shape = []
    for index, ratio in enumerate(ratios):
        batch, sequence = 2**index, 16 * 4**index
        narrowest = 40.0 + batch * sequence * 0.05
        routes = {"narrowest": [[1, batch]], "nearest-opt": [[1 if ratio == 1.0 else 0, batch]]}
        by_shape.append({
            "shapes": f"input_ids:[{batch},{sequence}] attention_mask:[{batch},{sequence}]",
            "count": index + 1,
            "routes": routes,
            "latency": {"narrowest": stats(narrowest), "nearest-opt": stats(narrowest * ratio)},
        })  # fmt: skip
    return {
        "environment": ENVIRONMENT,
        "settings": {"rounds": 10, "reps": 200, "warmup": 50},
        "model": {
            "name": "transformer",
            "path": "/project/dynamic_transformer.onnx",
            "engine": "Built dynamic_transformer.shapes.engine",
        },
        "complete": True,
        "routing": {
            "profiles": [
                {
                    "min": "input_ids:[1,1] attention_mask:[1,1]",
                    "opt": "input_ids:[1,16] attention_mask:[1,16]",
                    "max": "input_ids:[16,512] attention_mask:[16,512]"
                    if overlapping
                    else "input_ids:[1,64] attention_mask:[1,64]",
                },
                {
                    "min": "input_ids:[1,1] attention_mask:[1,1]",
                    "opt": "input_ids:[8,256] attention_mask:[8,256]",
                    "max": "input_ids:[8,256] attention_mask:[8,256]",
                },
            ],
            "by_shape": by_shape,
            "summary": summarize(by_shape),
            "notes": ["input_ids:[64,600] attention_mask:[64,600] left out: invented note"],
            "largest_difference_from_onnx_runtime": 2.4e-6,
        },
    }


def plan(model="convnet", speeds=None) -> dict:
    """plan_profiles.py's JSON, assembled by the planner's own plan_record: each candidate's
    latency is its speed (by name; 1.0 where not given) times a figure per shape."""
    speeds = speeds or {}
    if model == "convnet":
        order = generators.scenario_requests(300, scenario.INPUT_NAME, scenario.IMAGE_SHAPE)
    else:
        names = (scenario.TOKEN_IDS_NAME, scenario.ATTENTION_MASK_NAME)
        order = generators.transformer_requests(200, names, scenario.MAX_SEQUENCE)
    histogram = make_histogram(order)
    candidates = plan_candidates(histogram, 3)
    if model == "convnet":
        candidates.append(given_candidate("given", list(scenario.PROFILES.values())))
    measurements, details = [], []
    for index, candidate in enumerate(candidates):
        speed = speeds.get(candidate.name, 1.0)
        latencies = {
            key: speed * 1e-5 * (1 + sum(d for _, shape in key for d in shape) / 100)
            for key in histogram
        }
        measurements.append(Measurement(candidate, latencies, 1024 * 1024 * (index + 1), 12.5))
        shapes = [
            {"shapes": dict(key), "requests": count, "median_s": latencies[key],
             "mean_s": latencies[key], "max_s": latencies[key]}
            for key, count in histogram.items()
        ]  # fmt: skip
        details.append(
            {"engine": f"e{index}.engine", "replayed_requests": len(order), "shapes": shapes}
        )
    result = Plan(histogram, measurements, details, exact=False, largest_difference=1e-6)
    settings = Settings(engine_dir="/project", threads=1, warmup=100)
    extra = {"model": f"dynamic_{model}.onnx", "max_profiles": 3}
    return json.loads(json.dumps(plan_record(result, settings, ENVIRONMENT, extra)))


EXAMPLE = """Built dynamic_identity.engine in 12.0 s because there is no dynamic_identity.engine yet; it has 3 profiles
low latency      (profile 0): batch 1: Y == X exactly
"""  # noqa: E501
SUITE = """....ss.... [100%]
SKIPPED [1] tests/test_cli.py:136: root may write into any folder
300 passed, 1 skipped in 400.00s (0:06:40)
"""


def write_folder(folder, runs: dict) -> None:
    """Writes {file name: dict (as JSON) or str} into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, run in runs.items():
        text = run if isinstance(run, str) else json.dumps(run, indent=2)
        (folder / name).write_text(text, encoding="utf-8")


def full_folder() -> dict:
    """Every kind of run, as a folder of one environment holds them."""
    return {
        "environment.json": ENVIRONMENT,
        "benchmark.json": benchmark(),
        "stress.json": stress(),
        "stress-page-locked.json": stress(memory="page-locked", images_per_s=400_000.0),
        EARLIER_STRESS: stress(images_per_s=200_000.0, commit=EARLIER_COMMIT),
        "stress-mps-6x3-page-locked.json": stress(6, 3, "page-locked", True, 1_700_000.0),
        "triton.json": triton(
            [level(1, 1100.0, 870.0, 1270.0, 1.0), level(64, 8400.0, 7100.0, 12100.0, 37.8)]
        ),
        "triton-no-batcher.json": triton(
            [level(1, 1000.0, 872.0, 3000.0, 1.0), level(64, 1500.0, 34600.0, 60600.0, 1.0)]
        ),
        "triton-soak.json": triton(
            [level(64, 6900.0, 8800.0, 14700.0, 36.4, (900.0, 800.0), seconds=60)]
        ),
        "triton-mixed.json": triton([mixed(16, 900.0, 60.0, 0)]),
        "triton-tensorrt.json": triton(
            [level(1, 1800.0, 540.0, 700.0, 1.0), level(64, 25200.0, 2300.0, 3800.0, 9.5)]
        ),
        "triton-tensorrt-no-batcher.json": triton(
            [level(1, 1790.0, 545.0, 720.0, 1.0), level(64, 14000.0, 4400.0, 7000.0, 1.0)]
        ),
        "triton-tensorrt-4-instances.json": triton([level(64, 29000.0, 2100.0, 3100.0, 7.0)]),
        "triton-tensorrt-mixed.json": triton([mixed(16, 1500.0, 12.0, 7400)]),
        "routing.json": routing(),
        "routing-overlapping.json": routing((1.0, 1.3, 1.2, 1.0), overlapping=True),
        "plan-convnet.json": plan("convnet", {"wide": 3.0, "2 profiles": 1.2, "given": 1.0}),
        "plan-transformer.json": plan("transformer", {"wide": 1.5}),
        "plan-convnet-profiles.json": '[{"X": {"min": [1, 3, 28, 28]}}]',
        "example.txt": EXAMPLE,
        "suite.txt": SUITE,
    }

"""benchmark.py: arguments, models it refuses, statistics and reports (CPU), and quick
end-to-end runs (GPU)."""

import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import pytest

import benchmark
from dynamic_shapes.measure.convenience import (
    BASELINE,
    CAPTURES,
    COPIES,
    GPU_BASELINE,
    GRAPH_FLOOR,
    INFER_PROFILED,
    capturing_requests,
)
from dynamic_shapes.measure.report import latency_panels, report
from dynamic_shapes.measure.sections import CONVENIENCE_BATCHES, SECTIONS
from dynamic_shapes.measure.timing import summarize
from dynamic_shapes.onnx_inputs import read_model_input
from dynamic_shapes.serving.shape_graphs import DEFAULT_AFTER
from scenario import CONVNET_PATH, MODEL_PATH
from tests.support import run_script


def write_model(path, inputs):
    """An ONNX model that adds one to each of the given (name, shape) float inputs."""
    variables = [gs.Variable(name, dtype=np.float32, shape=shape) for name, shape in inputs]
    outputs = [
        gs.Variable(f"out{i}", dtype=np.float32, shape=v.shape) for i, v in enumerate(variables)
    ]
    nodes = [
        gs.Node("Identity", inputs=[v], outputs=[o])
        for v, o in zip(variables, outputs, strict=True)
    ]
    onnx.save(
        gs.export_onnx(gs.Graph(nodes=nodes, inputs=variables, outputs=outputs, opset=17)), path
    )
    return path


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        (
            [("X", (1, 3, 28, 28))],
            "has a fixed first dimension (1); a dynamic batch dimension is needed there",
        ),
        ([("X", ("n", "h", 28))], "has dynamic dimensions after the batch (['n', 'h', 28])"),
        (
            [("A", ("n", 2)), ("B", ("n", 2))],
            "has 2 inputs ['A', 'B']; one is needed",
        ),
    ],
)
def test_refuses_models_it_cannot_benchmark(tmp_path, inputs, message):
    path = write_model(tmp_path / "m.onnx", inputs)
    with pytest.raises(ValueError, match=re.escape(message)):
        read_model_input(path)


def test_arguments_defaults_and_quick():
    args = benchmark.parse_args([])
    assert args.models == [
        ("identity", MODEL_PATH, True),  # checked bit for bit
        ("convnet", CONVNET_PATH, False),  # checked within a tolerance
    ]
    assert args.engine_dir is None  # beside each model
    assert (args.rounds, args.reps, args.warmup) == (10, 200, 50)
    assert args.narrow_vs_wide_batches == (1, 4, 16, 32, 128)
    assert args.convenience_batches == (1, 4, 32, 128)
    assert args.contexts_batches == (4, 128)
    assert args.sections == SECTIONS
    quick = benchmark.parse_args(["--quick", "--batch-sizes", "2,8", "--sections", "memory"])
    assert (quick.rounds, quick.reps, quick.warmup) == (3, 20, 5)
    assert quick.narrow_vs_wide_batches == quick.convenience_batches == (2, 8)
    assert quick.sections == ("memory",)
    yours = benchmark.parse_args(["--model", "models/yours.onnx", "--model", "identity"])
    assert yours.models == [
        ("yours", Path("models/yours.onnx"), False),
        benchmark.model_choice("identity"),
    ]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--batch-sizes", "1,x"], "not a comma-separated list of integers"),
        (["--batch-sizes", "0,4"], "batch sizes must be 1 or more"),
        (["--sections", "memory,speed"], "unknown section(s) ['speed']"),
        (["--reps", "0"], "must be 1 or more"),
        (["--model", "identity", "--model", "identity"], "two models named alike"),
        (["--engine-dir", "/nonexistent"], "argument --engine-dir: there is no folder"),
        (["--plot", "x.txt"], "argument --plot: x.txt: name the chart's format by its suffix"),
        (["--plot", "out"], "argument --plot: out: name the chart's format by its suffix, one of "),
    ],
)
def test_bad_arguments_are_refused(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        benchmark.parse_args(argv)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_summarize_gives_median_and_percentiles_in_microseconds():
    stats = summarize([1000 * i for i in range(1, 101)])  # 1..100 us
    assert stats["median_us"] == pytest.approx(50.5)
    assert stats["p90_us"] == pytest.approx(90.1)
    assert stats["p99_us"] == pytest.approx(99.01)
    assert stats["samples"] == 100
    assert "round_medians_us" not in stats  # one round: no drift between rounds to show
    # Rounds of as many samples each, in order: each round's median, the drift between them.
    rounds = summarize([1000 * i for i in range(1, 101)], rounds=4)
    assert rounds["round_medians_us"] == pytest.approx([13.0, 38.0, 63.0, 88.0])
    assert rounds["median_us"] == stats["median_us"]


ACCEPTED = "low latency 1, dynamic batching 1..32, offline 128"


def stats(median):
    return summarize([median * 1000 + d for d in (-100, 0, 0, 100, 900)])


def synthetic_model(wide_us, context_mib):
    return {
        "path": "m.onnx",
        "input": "X float32 [batch, 3, 28, 28]",
        "narrow_vs_wide": {
            "by_batch": {
                1: {"three narrow profiles": stats(20), "one wide profile (1..128)": stats(wide_us)}
            },
            "notes": [f"batch 256 left out: the narrow profiles accept {ACCEPTED}"],
        },
        "shape_switching": {
            "stats": {
                "fixed batch 1": stats(20),
                "fixed batch 32": stats(25),
                "alternating": stats(50),
            },
            "baseline": "fixed batch 1",
            "cost_per_switch_us": 2.5,
        },
        "profile_switching": {
            "stats": {
                "one context per profile": stats(80),
                "one context, switching profiles": stats(120),
            },
            "baseline": "one context per profile",
            "cost_per_switch_us": 20.0,
            "ratio": 1.5,
        },
        "memory": {
            "engine_measured_mib": 2.0,
            "plan_mib": 0.01,
            "contexts_measured_mib": [context_mib] * 3,
            "context_reported_mib": context_mib,
        },
        "runner_activation": {
            "stats": {"over an owned context": stats(100), "creating its own context": stats(400)},
            "baseline": "over an owned context",
        },
        "convenience": {
            "by_batch": {
                1: {
                    "TrtRunner.infer": stats(1200),
                    "dispatcher, GPU-resident": stats(12),
                    BASELINE: stats(20),
                    GPU_BASELINE: stats(10),
                }
            },
            "notes": [f"batch 64 left out: no profile accepts it ({ACCEPTED})"],
            "trtrunner_profile": [
                {"function": "runner.py:1 infer", "us_per_infer": 500.0, "calls_per_infer": 1}
            ],
            "infer_profile": {
                "dispatcher, GPU-resident": [
                    {"function": "pools.py:8 take", "us_per_infer": 1.5, "calls_per_infer": 1}
                ]
            },
        },
        "contexts": {
            "threads": 8,
            "by_batch": {
                4: {
                    "GPU-resident, 1 context": rate(1000, 4, 1.0),
                    "GPU-resident, 4 contexts": rate(1200, 4, 1.2),
                }
            },
        },
    }


def rate(requests_per_s, batch, vs_one_context):
    return {
        "requests_per_s": requests_per_s,
        "images_per_s": requests_per_s * batch,
        "vs_one_context": vs_one_context,
    }


def synthetic_results():
    return {
        "environment": {"summary": "Some GPU, TensorRT 9.9, 2026-11-24"},
        "models": {"identity": synthetic_model(30, 0.0), "convnet": synthetic_model(44, 49.0)},
    }


def test_report_shows_a_table_per_measurement_with_ratios():
    text = report(synthetic_results())
    for title in [
        "##### identity: m.onnx, input X float32 [batch, 3, 28, 28]",
        "=== 1. Narrow vs wide profiles, batch 1",
        "=== 2. Shape switching",
        "=== 3. Low-latency and offline requests",
        "=== 4. GPU memory",
        "=== 5. TrtRunner activate + deactivate",
        "=== 6. Serving paths and the floors under them, batch 1",
        "=== Where TrtRunner.infer spends its time",
        "=== Where infer spends its time, dispatcher, GPU-resident, batch 1",
        "=== 7. Concurrent requests for one profile: one context, or several, batch 4, 8 threads",
    ]:
        assert title in text
    assert "1.50x" in text  # wide vs narrow
    assert "60.00x" in text  # TrtRunner.infer vs the bare loop
    assert "cost per shape switch: 2.5 us" in text
    assert "cost per profile switch: 20.0 us" in text
    # What a section left out is said, after its tables.
    assert f"note: batch 64 left out: no profile accepts it ({ACCEPTED})" in text
    assert text.index("=== 6. Serving paths") < text.index("note: batch 64")
    # Each serving path against the floor for its memory.
    assert re.search(r"dispatcher, GPU-resident +12.0 +12.6 +12.9 +1.20x", text)
    assert (
        "vs floor: against bare loop, page-locked; GPU-resident rows against bare execute" in text
    )
    assert re.search(r"GPU-resident, 4 contexts +1200 +4800 +1.20x", text)


def test_the_report_puts_the_models_trade_offs_side_by_side():
    text = report(synthetic_results())
    table = text[text.index("=== The trade-offs, side by side") :].splitlines()
    assert table[1].split() == ["trade-off", "identity", "convnet"]
    # Columns are two or more spaces apart; a claim has single spaces only.
    rows = {cells[0]: cells[1:] for cells in (re.split(r"\s{2,}", line) for line in table[3:])}
    assert rows["1. one wide profile vs three narrow, batch 1"] == ["1.50x", "2.20x"]
    assert rows["4. GPU memory of each execution context, MiB"] == ["0.00", "49.00"]
    assert rows["5. TrtRunner making its context vs given one"] == ["4.00x", "4.00x"]
    one = {"environment": {}, "models": {"identity": synthetic_model(30, 0.0)}}
    assert "side by side" not in report(one)


def test_latency_panels_skip_what_was_not_measured():
    results = synthetic_results()
    titles = [title for title, _ in latency_panels(results)]
    assert titles[:5] == [
        "identity: 1. narrow vs wide, batch 1",
        "identity: 6. convenience, batch 1",
        "identity: 2. shape switching",
        "identity: 3. profile switching",
        "identity: 5. runner activation",
    ]
    assert len(titles) == 10
    memory = {"memory": results["models"]["identity"]["memory"]}
    assert latency_panels({"models": {"identity": memory}}) == []


@pytest.mark.gpu
def test_quick_run_of_both_models_checks_and_writes_every_section(tmp_path):
    convnet = tmp_path / "dynamic_convnet.onnx"
    assert (
        run_script("build_model.py", "--model", "convnet", "--output", str(convnet)).returncode == 0
    )
    path = tmp_path / "quick.json"
    argv = ["--model", "identity", "--model", str(convnet), "--engine-dir", str(tmp_path)]
    result = run_script("benchmark.py", *argv, "--quick", "--json", str(path), timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    results = json.loads(path.read_bytes())
    assert results["complete"] and list(results["models"]) == ["identity", "dynamic_convnet"]
    assert results["environment"]["tensorrt"]
    for model in results["models"].values():
        assert set(SECTIONS) <= set(model)
        for batch, stats in model["convenience"]["by_batch"].items():
            assert int(batch) in CONVENIENCE_BATCHES
            assert all(s["median_us"] > 0 for s in stats.values())
            # Graph rows through infer() for every batch (a shape sent again replays graphs of
            # its own), from the same array and from fresh ones; the bare graph where the
            # profile is static (batch 1 and 128).
            assert "dispatcher, pageable, CUDA graph" in stats
            assert "dispatcher, pageable, fresh arrays, CUDA graph" in stats
            assert (GRAPH_FLOOR in stats) == (int(batch) in (1, 128))
            assert "dispatcher, prepared, page-locked, CUDA graph" in stats
            assert "dispatcher, prepared, GPU-resident, CUDA graph" in stats
            assert "dispatcher, page-locked" in stats and COPIES in stats
            rounds = results["settings"]["rounds"]
            assert all(len(s.get("round_medians_us", [0])) in (1, rounds) for s in stats.values())
        # The requests that capture their shape's graphs, at every batch: each one captured.
        captures = model["convenience"]["capturing_requests"]
        assert set(captures) == set(model["convenience"]["by_batch"])
        assert all(c["captured"] == c["samples"] == CAPTURES for c in captures.values())
        assert set(model["contexts"]["by_batch"]) == {"4", "128"}
        # Where infer's time goes at batch 1, for each kind of memory.
        profiles = model["convenience"]["infer_profile"]
        assert set(profiles) == set(INFER_PROFILED)
        assert all(item["us_per_infer"] >= 0 for items in profiles.values() for item in items)
    # Activation memory: none for the identity, some for every context of the convnet.
    assert results["models"]["identity"]["memory"]["context_reported_mib"] == 0
    assert results["models"]["dynamic_convnet"]["memory"]["context_reported_mib"] > 1
    assert "=== 6. Serving paths and the floors under them, batch 128" in result.stdout
    assert "=== The trade-offs, side by side (medians)" in result.stdout
    # A second run reuses the four engines instead of building them again.
    again = run_script("benchmark.py", *argv, "--sections", "memory", "--json", str(path))
    assert again.returncode == 0, again.stderr
    assert again.stderr.count("Reusing ") == 4 and "Built " not in again.stderr


@pytest.mark.gpu
def test_a_model_tensorrt_cannot_parse_fails_in_one_line(tmp_path):
    x = gs.Variable("X", dtype=np.float32, shape=("batch", 3, 28, 28))
    y = gs.Variable("Y", dtype=np.float32, shape=("batch", 3, 28, 28))
    node = gs.Node("NoSuchOp", inputs=[x], outputs=[y], domain="com.example")
    path = tmp_path / "custom.onnx"
    onnx.save(gs.export_onnx(gs.Graph(nodes=[node], inputs=[x], outputs=[y], opset=17)), path)
    result = run_script("benchmark.py", "--model", str(path), "--quick", "--json",
                        str(tmp_path / "b.json"))  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert re.search(
        rf"^benchmark.py: TensorRT \S+ could not parse {re.escape(str(path))} \(.*\); its ONNX "
        "parser's errors are above$",
        result.stderr.splitlines()[-1],
    ), result.stderr
    assert not (tmp_path / "b.json").exists()  # nothing was measured, so nothing is written


def test_quick_keeps_the_counts_given_explicitly():
    args = benchmark.parse_args(["--quick", "--rounds", "50"])
    assert (args.rounds, args.reps, args.warmup) == (50, 20, 5)
    args = benchmark.parse_args(["--reps", "7", "--warmup", "0"])
    assert (args.rounds, args.reps, args.warmup) == (10, 7, 0)
    # --help says so.
    help_text = " ".join(run_script("benchmark.py", "--help").stdout.split())
    assert "--rounds, --reps and --warmup, where given, are kept" in help_text


@pytest.mark.parametrize("suffix", ["png", "PNG", "svg", "pdf"])
def test_a_chart_is_written_in_the_format_its_suffix_names(tmp_path, suffix):
    plot = tmp_path / f"chart.{suffix}"
    assert benchmark.plot_file(str(plot)) == plot


def test_every_chart_format_is_one_matplotlib_writes():
    pytest.importorskip("matplotlib", reason="needs matplotlib, which --plot needs")
    from matplotlib.backend_bases import FigureCanvasBase

    assert set(benchmark.PLOT_FORMATS) <= set(FigureCanvasBase.get_supported_filetypes())


class CapturingDispatcher:
    """A dispatcher's share of capturing_requests, as ShapeGraphs does it: free_graphs()
    forgets how often the shape was sent, so its first `graphs_after` requests after it are
    served as before and the next captures, except where a capture fails (served as before,
    `failing` counts those captures from 1)."""

    def __init__(self, failing=(), graphs_after=DEFAULT_AFTER):
        self.output_names = ["Y"]
        self.graphs_after = graphs_after
        self.captures, self.freed, self.requests, self.failing = 0, 0, 0, set(failing)
        self.sent, self.tries = 0, 0

    def free_graphs(self):
        self.freed += 1
        self.sent = 0

    def infer(self, request):
        self.requests += 1
        self.sent += 1
        if self.sent == self.graphs_after + 1:
            self.tries += 1
            if self.tries not in self.failing:
                self.captures += 1
        return request.copy()

    def graph_stats(self):
        return SimpleNamespace(captures=self.captures)


def test_each_capturing_request_is_timed_after_the_graphs_are_freed_and_checked():
    checked = []
    reference = SimpleNamespace(check=lambda what, inputs, outputs: checked.append(what))
    dispatcher = CapturingDispatcher(failing={3})
    dispatcher.captures = 7  # captured before: not counted
    stats = capturing_requests(dispatcher, np.zeros((2, 3)), reference, batch=2)
    assert dispatcher.freed == dispatcher.tries == stats["samples"] == CAPTURES
    assert dispatcher.requests == CAPTURES * (DEFAULT_AFTER + 1)
    assert stats["captured"] == CAPTURES - 1  # the one whose capture failed is said
    assert stats["median_us"] > 0 and stats["p99_us"] >= stats["median_us"]
    assert [what for what in checked if what.startswith("capturing")] == [
        f"capturing request, batch 2, {n}" for n in range(1, CAPTURES + 1)
    ]
    assert len(checked) == dispatcher.requests  # those served before each capture too
    assert stats["graphs_after"] == DEFAULT_AFTER


def test_capturing_requests_follow_the_dispatchers_graphs_after_and_say_it():
    reference = SimpleNamespace(check=lambda what, inputs, outputs: None)
    dispatcher = CapturingDispatcher(graphs_after=3)
    stats = capturing_requests(dispatcher, np.zeros((2, 3)), reference, batch=2)
    assert dispatcher.requests == CAPTURES * 4  # three served as before, then the capture
    assert stats["captured"] == CAPTURES and stats["graphs_after"] == 3

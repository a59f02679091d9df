"""benchmark.py's shapes mode on the command line, and its comparison of the routing rules as
data and text, without a GPU; tests/test_transformer_dispatch.py serves the shapes on one."""

import pytest

import benchmark
from dynamic_shapes.measure.by_shape import report_routing, summarize
from dynamic_shapes.planner.workloads import write_requests
from dynamic_shapes.profiles import profile_shapes
from scenario import TRANSFORMER_PROFILE_OPTIONS

SHORT = ["input_ids:[1,16]", "attention_mask:[1,16]"]
BATCHED = ["input_ids:[8,128]", "attention_mask:[8,128]"]


def test_shapes_are_read_in_polygraphy_syntax_with_the_transformer_profiles_by_default():
    args = benchmark.parse_args(
        ["--model", "transformer", "--shapes", *SHORT, "--shapes", *BATCHED]
    )
    assert args.by_shape
    assert args.workload_shapes == [
        ({"input_ids": (1, 16), "attention_mask": (1, 16)}, 1),
        ({"input_ids": (8, 128), "attention_mask": (8, 128)}, 1),
    ]
    default = benchmark.profiles_from_command_line(TRANSFORMER_PROFILE_OPTIONS)
    assert profile_shapes(args.profile_list) == profile_shapes(default)


def test_a_workload_file_gives_each_shape_with_its_count(tmp_path):
    path = tmp_path / "workload.jsonl"
    short = {"input_ids": [1, 16], "attention_mask": [1, 16]}
    long = {"input_ids": [4, 300], "attention_mask": [4, 300]}
    write_requests(path, [short, long, short])
    options = "--trt-min-shapes input_ids:[1,1] attention_mask:[1,1] "
    options += "--trt-max-shapes input_ids:[8,512] attention_mask:[8,512]"
    args = benchmark.parse_args(
        ["--model", "transformer", "--workload", str(path), *options.split()]
    )
    counts = {shapes["input_ids"]: count for shapes, count in args.workload_shapes}
    assert counts == {(1, 16): 2, (4, 300): 1}
    assert len(args.profile_list) == 1  # the profiles given, not the default


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model", "transformer"], "--model transformer is measured over shapes"),
        (["--model", "transformer", "--shapes", "input_ids:[1,16"], "is not an input's shape"),
        (["--model", "transformer", "--shapes", *SHORT, "--workload", "w.jsonl"], "not both"),
        (["--shapes", *SHORT], "measure one model: give --model once"),
        (["--model", "yours.onnx", "--shapes", *SHORT], "give the model's profiles"),
        (["--model", "transformer", "--workload", "missing.jsonl"], "argument --workload"),
        (["--trt-min-shapes", "X:[1,3,28,28]"], "profiles are given for --shapes or --workload"),
    ],
)
def test_bad_shape_options_are_refused(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        benchmark.parse_args(argv)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def timing(median):
    return {"median_us": median, "p90_us": median, "p99_us": median, "samples": 1}


def test_the_comparison_weights_each_shape_by_its_count_and_names_the_differing_routes():
    rows = [
        {"shapes": "x:[1,16]", "count": 3, "routes": {"narrowest": [[0, 0, 1]],
         "nearest-opt": [[0, 0, 1]]},
         "latency": {"narrowest": timing(100.0), "nearest-opt": timing(100.0)}},
        {"shapes": "x:[1,20]", "count": 1, "routes": {"narrowest": [[1, 0, 1]],
         "nearest-opt": [[0, 0, 1]]},
         "latency": {"narrowest": timing(200.0), "nearest-opt": timing(300.0)}},
    ]  # fmt: skip
    summary = summarize(rows)
    assert summary["weighted_median_us"] == {"narrowest": 125.0, "nearest-opt": 150.0}
    assert summary["ratio_to_narrowest"]["nearest-opt"] == pytest.approx(1.2)
    assert summary["routed_differently"] == ["x:[1,20]"]
    text = report_routing(
        {"profiles": [{"min": "x:[1,1]", "opt": "x:[1,16]", "max": "x:[1,64]"}],
         "by_shape": rows, "summary": summary, "notes": ["x:[9,9] left out: no profile"]}
    )  # fmt: skip
    assert "x:[1,20]" in text and "1.500" in text and "x1.200" in text
    assert "1 of 2 shapes routed differently" in text
    assert "note: x:[9,9] left out" in text


@pytest.mark.gpu
def test_the_shapes_mode_compares_both_rules_on_the_transformer(tmp_path, capsys):
    import json

    argv = ["--model", "transformer", "--quick", "--engine-dir", str(tmp_path)]
    for batch, sequence in [(1, 16), (8, 128), (40, 100), (2, 600)]:
        argv += ["--shapes", f"input_ids:[{batch},{sequence}]"]
        argv += [f"attention_mask:[{batch},{sequence}]"]
    argv += ["--json", str(tmp_path / "routing.json")]
    assert benchmark.main(argv) == 0
    results = json.loads((tmp_path / "routing.json").read_text())
    routing = results["routing"]
    assert results["complete"]
    assert [row["shapes"] for row in routing["by_shape"]] == [
        "input_ids:[1,16] attention_mask:[1,16]",
        "input_ids:[8,128] attention_mask:[8,128]",
        "input_ids:[40,100] attention_mask:[40,100]",
    ]
    assert routing["by_shape"][2]["routes"]["narrowest"] == [[1, 0, 32], [1, 32, 8]]
    assert "input_ids:[2,600] attention_mask:[2,600] left out" in routing["notes"][0]
    assert routing["largest_difference_from_onnx_runtime"] < 1e-4
    assert set(routing["summary"]["ratio_to_narrowest"]) == {"narrowest", "nearest-opt"}
    assert "Routing rules: narrowest range vs nearest opt" in capsys.readouterr().out

"""The results pages: rendered from committed data, current, and refusing data they cannot
use. The figures in tests/results_data.py are invented for these tests."""

import json
import re

import pytest

import loadgen
from dynamic_shapes import results
from dynamic_shapes.measure import convenience
from dynamic_shapes.measure.report import report as benchmark_report
from dynamic_shapes.results import ResultsError, read_results
from dynamic_shapes.results_pages import render_pages, stale_pages
from dynamic_shapes.stress.verdicts import verdicts
from dynamic_shapes.targets import TARGETS
from scenario import HERE
from tests import results_data as data
from tests.support import TENSORRT_MISSING, run_script, script_with_imports_failing

FOLDER = "h100-trt8.6.0"


def render(tmp_path, runs, folder=FOLDER) -> tuple:
    data.write_folder(tmp_path / "results" / folder, runs)
    pages = render_pages(tmp_path)
    return pages[tmp_path / "docs/results.md"], pages[tmp_path / "docs/results.zh-CN.md"]


def row(page: str, starts: str) -> list:
    """The cells of the table row that starts with `starts`."""
    (line,) = [line for line in page.splitlines() if line.startswith(f"| {starts} |")]
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_the_committed_pages_are_what_the_committed_data_renders():
    assert stale_pages(HERE) == [], "run python3 render_results.py and commit the pages"
    result = run_script("render_results.py", "--check")
    assert result.returncode == 0, result.stderr


def test_without_results_the_pages_say_so_in_both_languages(tmp_path):
    pages = render_pages(tmp_path)
    english, chinese = (
        pages[tmp_path / "docs/results.md"],
        pages[tmp_path / "docs/results.zh-CN.md"],
    )
    assert "No results yet" in english
    assert "尚无结果" in chinese


def test_a_page_that_differs_from_the_data_is_stale(tmp_path):
    data.write_folder(tmp_path / "results" / FOLDER, data.full_folder())
    for path, text in render_pages(tmp_path).items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert stale_pages(tmp_path) == []
    stress_run = data.stress(images_per_s=230_000.0)
    data.write_folder(tmp_path / "results" / FOLDER, {"stress.json": stress_run})
    assert stale_pages(tmp_path) == [
        tmp_path / "docs/results.md",
        tmp_path / "docs/results.zh-CN.md",
    ]


def test_the_serving_paths_are_pivoted_to_batch_rows_with_ratios_to_the_floor(tmp_path):
    english, _ = render(tmp_path, {"benchmark.json": data.benchmark(prepared_graph_at_1=16.0)})
    identity = english.split("#### 6. Serving paths and the floors under them, identity")[1]
    identity = identity.split("####")[0]
    prepared = identity.split("Prepared requests and the bare loops:")[1]
    header = row(prepared, "batch")
    cells = dict(zip(header, row(prepared, "1"), strict=True))
    floor = data.benchmark()["models"]["identity"]["convenience"]["by_batch"]["1"]
    floor = floor["bare loop, page-locked"]["median_us"]
    assert cells["prepared, page-locked, CUDA graph"] == f"16.0 ({16.0 / floor:.2f}x)"
    assert cells["bare loop, page-locked"] == f"{floor:.1f}"  # the floor itself: no ratio
    # GPU-resident paths are held against the bare execute on GPU buffers.
    gpu_floor = data.benchmark()["models"]["identity"]["convenience"]["by_batch"]["1"]
    gpu_floor = gpu_floor["bare execute, GPU-resident"]["median_us"]
    ratio = float(cells["prepared, GPU-resident, CUDA graph"].split("(")[1].rstrip("x)"))
    assert ratio == pytest.approx(0.45 * (26.0 + 0.35) / gpu_floor, abs=0.006)
    # A bare graph replays only on a profile of one shape: batch 4 shows a dash there.
    cells = dict(zip(header, row(prepared, "4"), strict=True))
    assert cells["bare graph replay, page-locked"] == "-"
    # The requests that capture their shape's graphs, against the replays of the same shape
    # (1.4x the floor: 36.89 us at batch 1, 99.12 us at batch 128), with the graphs_after the
    # data says they were measured with, not the default's.
    assert (
        "The request that captures its shape's graphs (`pageable, CUDA graph`, after "
        "free_graphs() and the requests served as before that graphs_after=2 asks for), "
        "against the replays: batch 1, median 750.0 us, p99 1125.0 us, "
        "20.33x the replay's median (20 of 20 captured); batch 128, median 1750.0 us, p99 "
        "2625.0 us, 17.66x the replay's median (19 of 20 captured)."
    ) in identity
    # Where infer's time goes at batch 1, a row per function of each path profiled.
    profile = identity.split("Where `infer` spends its time at batch 1")[1]
    assert table_rows(profile) == [
        ["page-locked, CUDA graph", "`dispatcher.py:229 infer`", "2.5", "1"],
        ["page-locked, CUDA graph", "`pools.py:8 take`", "1.2", "1"],
    ]


@pytest.mark.parametrize(("median", "met"), [(16.0, "yes"), (18.5, "no")])
def test_whether_a_target_is_met_is_computed_from_the_data(tmp_path, median, met):
    english, chinese = render(tmp_path, {"benchmark.json": data.benchmark(median)})
    cells = row(english, "18 us or less at batch 1: a prepared page-locked request with its "
                         "CUDA graph (identity)")  # fmt: skip
    assert cells[1:] == [f"{median:.1f} us", met]
    (line,) = [
        line for line in chinese.splitlines() if line.startswith("| 批大小 1 时不超过 18 us")
    ]
    assert line.endswith(f"| {median:.1f} us | {'是' if met == 'yes' else '否'} |")
    # Without the run a target reads, it is not measured, neither met nor missed.
    cells = row(english, "Triton: 64 batch-1 clients at p99 under 5 ms")
    assert cells[1:] == ["not measured", "-"]


INFER_PAGE_LOCKED = (
    "infer with page-locked arrays within 1.15x of the page-locked bare loop at batch 1, 4, 32 "
    "and 128"
)
INFER_PAGEABLE = (
    "infer with pageable arrays at batch 1 within 1.15x of the page-locked bare loop (identity; "
    "fresh arrays for every request among them)"
)


def test_infer_is_judged_against_its_floors_at_the_batches_asked_for(tmp_path):
    benchmark = data.benchmark()
    identity = benchmark["models"]["identity"]["convenience"]["by_batch"]
    identity["4"]["dispatcher, page-locked, CUDA graph"] = data.stats(27.4 * 1.6)
    english, _ = render(tmp_path / "as measured", {"benchmark.json": benchmark})
    assert row(english, INFER_PAGE_LOCKED)[2] == "no"  # 1.3x the floor, 1.6x at batch 4
    cells = row(english, "infer with GPU arrays within 1.3x of a bare execute_async_v3 + "
                         "synchronize")  # fmt: skip
    assert cells[1].startswith("identity: 2.62x, 2.62x, 2.62x, 2.62x (batch 1, 4, 32, 128)")
    assert cells[2] == "no"
    # The fastest pageable path decides; every one measured is listed. Short of the target,
    # its work is taken apart: its graph is a prepared page-locked request's (16.0 us), the
    # staging copies (1.8 us) are done around it, and the rest (19.1 us) is infer()'s own,
    # where 1.15x of the floor (26.35 us) leaves 4.0 us.
    assert row(english, INFER_PAGEABLE)[1:] == [
        "pageable 2.20x, pageable, CUDA graph 1.40x, pageable, fresh arrays, CUDA graph 1.45x; "
        "pageable, CUDA graph: a prepared request (the same copies and inference, without "
        "infer()'s work per request) takes 0.61x, staging copies alone, one thread (no GPU) "
        "0.07x, and the rest, infer()'s own work, adds 19.1 us, where the target leaves 4.0 us "
        "over the floor",
        "no",
    ]
    # The same for the model and batch furthest from the target.
    assert row(english, INFER_PAGE_LOCKED)[1].endswith(
        "; furthest, identity at batch 4: a prepared request (the same copies and inference, "
        "without infer()'s work per request) takes 0.90x, and the rest, infer()'s own work, adds "
        "19.2 us, where the target leaves 4.1 us over the floor"
    )
    # Where what infer() cannot do without is over the target already, the row says so: at
    # batch 128 the prepared request (63.72 us) and the staging copies (230.4 us) come to 4.15x
    # of the floor (70.8 us), against 2x.
    identity["128"]["dispatcher, pageable, CUDA graph"] = data.stats(70.8 * 5.0)
    english, _ = render(tmp_path / "staging over", {"benchmark.json": benchmark})
    cells = row(english, "pageable requests through infer within 2x of the page-locked bare loop "
                         "at batch 128 (identity)")  # fmt: skip
    assert cells[1].endswith(
        "staging copies alone, one thread (no GPU) 3.25x: together 4.15x of the floor, over the "
        "target before infer()'s own work, which adds 59.9 us"
    )
    assert cells[2] == "no"
    # Where the rounds were recorded, the lowest and highest round's ratio follow each one.
    identity["4"]["bare loop, page-locked"]["round_medians_us"] = [20.0, 25.0, 30.0]
    identity["4"]["dispatcher, page-locked, CUDA graph"]["round_medians_us"] = [24.0, 45.0, 48.0]
    english, _ = render(tmp_path / "rounds", {"benchmark.json": benchmark})
    assert row(english, INFER_PAGE_LOCKED)[1].startswith(
        "identity: 1.30x, 1.60x (1.20x-1.80x), 1.30x, 1.30x (batch 1, 4, 32, 128)"
    )
    assert "the lowest and the highest round's" in english
    for model in benchmark["models"].values():
        for batch_stats in model["convenience"]["by_batch"].values():
            floor = batch_stats["bare loop, page-locked"]["median_us"]
            batch_stats["dispatcher, page-locked, CUDA graph"] = data.stats(floor * 1.1)
    identity["1"]["dispatcher, pageable, fresh arrays, CUDA graph"] = data.stats(
        identity["1"]["bare loop, page-locked"]["median_us"] * 1.1
    )
    english, _ = render(tmp_path / "within", {"benchmark.json": benchmark})
    assert row(english, INFER_PAGE_LOCKED)[2] == "yes"
    assert row(english, INFER_PAGEABLE)[2] == "yes"
    # A batch asked for but not measured: not measured, neither met nor missed.
    for model in benchmark["models"].values():
        del model["convenience"]["by_batch"]["1"]
    english, _ = render(tmp_path / "without batch 1", {"benchmark.json": benchmark})
    assert row(english, INFER_PAGE_LOCKED)[1:] == ["not measured", "-"]
    assert row(english, INFER_PAGEABLE)[1:] == ["not measured", "-"]


STRESS_AGAINST_EARLIER = (
    "one process's stress load (stress.json: 8 threads, pageable) at least 1.5x the images/s of "
    f"commit {results.EARLIER_COMMIT}'s, run beside it ({results.EARLIER_STRESS}), every output "
    "exact"
)


@pytest.mark.parametrize(
    ("now", "met", "measured"),
    [
        (330_000.0, "yes", "1.50x (330,000 / 220,000 images/s)"),
        (264_000.0, "no", "1.20x (264,000 / 220,000 images/s); the same load from page-locked "
                          "arrays, without staging copies: 396,000 images/s (1.50x stress.json's)"),
    ],
)  # fmt: skip
def test_the_stress_load_is_held_against_the_earlier_commits_run_beside_it(
    tmp_path, now, met, measured
):
    earlier = results.EARLIER_STRESS
    runs = {
        "stress.json": data.stress(images_per_s=now),
        earlier: data.stress(images_per_s=220_000.0, commit=results.EARLIER_COMMIT),
        "stress-page-locked.json": data.stress(memory="page-locked", images_per_s=396_000.0),
        # Another earlier commit's run, faster than any: compared nowhere, judged nowhere.
        "stress-0123abc.json": data.stress(images_per_s=2_000_000.0, commit="0123abc"),
    }
    english, _ = render(tmp_path / "one day", runs)
    assert row(english, STRESS_AGAINST_EARLIER)[1:] == [measured, met]
    # The earlier commits' loads are compared, not judged with this code's loads.
    assert row(english, "stress.py's load: 1,000,000 images/s or more, every output exact")[1] == (
        "396,000 images/s (`stress-page-locked.json`)"
    )
    assert f"| `{earlier}` |" in english  # its figures are shown with the others
    assert f"commit {results.EARLIER_COMMIT}, 2030-01-02" in english
    # Another load than this commit's is no comparison: the settings that differ are named.
    runs[earlier]["load"]["threads"] = 4
    english, _ = render(tmp_path / "other load", runs)
    assert row(english, STRESS_AGAINST_EARLIER)[1:] == [
        f"{earlier} is not the same load (threads differ): run both again",
        "no",
    ]
    runs[earlier]["load"]["threads"] = 8
    # A wrong response in either misses the target, whatever the speed.
    runs["stress.json"]["load"]["errors"] = 2
    english, _ = render(tmp_path / "errors", runs)
    assert row(english, STRESS_AGAINST_EARLIER)[1].endswith("; 2 wrong or failed responses")
    assert row(english, STRESS_AGAINST_EARLIER)[2] == "no"
    runs["stress.json"]["load"]["errors"] = 0
    # Measured on other days, the two are no comparison.
    runs[earlier]["environment"]["date"] = "2030-01-01T03:04:05+00:00"
    english, _ = render(tmp_path / "two days", runs)
    assert row(english, STRESS_AGAINST_EARLIER)[1:] == [
        f"{earlier} was not measured on the same day: run both again",
        "no",
    ]
    del runs[earlier]
    english, _ = render(tmp_path / "alone", runs)
    assert row(english, STRESS_AGAINST_EARLIER)[1:] == ["not measured", "-"]


def table_rows(page: str) -> list:
    """The cells of every table row of a page, headers and rules left out."""
    lines = page.splitlines()
    return [
        [cell.strip() for cell in line.strip("|").split("|")]
        for index, line in enumerate(lines)
        if line.startswith("| ")
        and not line.startswith("| ---")
        and not (index + 1 < len(lines) and lines[index + 1].startswith("| ---"))
    ]


def test_every_target_is_judged_from_a_full_folder(tmp_path):
    english, _ = render(tmp_path, data.full_folder())
    targets = english.split("### Targets")[1].split("###")[0]
    verdicts = {cells[0]: cells[2] for cells in table_rows(targets)}
    assert len(verdicts) == len(TARGETS)
    assert "not measured" not in targets
    assert verdicts["Triton: one batch-1 client at p50 under 0.6 ms"] == "no"  # 870 us
    assert verdicts["every response exact, under stress.py's load and Triton's"] == "yes"
    assert row(english, "Triton: 64 batch-1 clients, at least 5x the requests/s of the batcher "
                        "off")[1:] == ["5.60x (8,400 / 1,500)", "yes"]  # fmt: skip


def test_both_pages_carry_the_same_figures(tmp_path):
    english, chinese = render(tmp_path, data.full_folder())
    # Past each table's first column (the target's words, in each language), row by row; the
    # words around a figure may put it elsewhere in its cell.
    number = re.compile(r"[-+]?\d[\d,]*(?:\.\d+)?")
    english_rows, chinese_rows = table_rows(english), table_rows(chinese)
    assert len(english_rows) == len(chinese_rows)
    for english_cells, chinese_cells in zip(english_rows, chinese_rows, strict=True):
        english_figures = sorted(number.findall(" ".join(english_cells[1:])))
        assert english_figures == sorted(number.findall(" ".join(chinese_cells[1:])))


def test_the_provenance_names_the_environment_and_each_runs_commit(tmp_path):
    runs = data.full_folder()
    later = {**data.ENVIRONMENT, "commit": "def5678", "date": "2030-02-03T00:00:00+00:00"}
    runs["triton.json"] = {**runs["triton.json"], "environment": later}
    english, _ = render(tmp_path, runs)
    section = english.split(f"## {FOLDER}")[1]
    assert "NVIDIA H100 80GB HBM3, driver 580.00.00, TensorRT 8.6.0, Python 3.10.13." in section
    assert "- commit def5678, 2030-02-03, Polygraphy 0.49.26" in section
    (line,) = [line for line in section.splitlines() if "def5678" in line]
    assert line.endswith(": `triton.json`")


def test_each_environment_has_its_own_tables(tmp_path):
    other = {**data.ENVIRONMENT, "tensorrt": "10.13.0", "gpu": "NVIDIA H200"}
    data.write_folder(tmp_path / "results" / "h200-trt10.13.0", {
        "stress.json": {**data.stress(images_per_s=440_000.0), "environment": other}})  # fmt: skip
    english, _ = render(tmp_path, {"stress.json": data.stress(images_per_s=220_000.0)})
    first, second = english.split(f"## {FOLDER}")[1].split("## h200-trt10.13.0")
    assert "220,000" in first and "440,000" not in first
    assert "440,000" in second and "220,000" not in second


def test_a_folder_whose_runs_come_from_two_environments_is_refused(tmp_path):
    other = {**data.ENVIRONMENT, "tensorrt": "10.13.0"}
    runs = {"stress.json": data.stress(), "triton.json": {**data.triton([]), "environment": other}}
    data.write_folder(tmp_path / "results" / FOLDER, runs)
    with pytest.raises(ResultsError, match=r"triton\.json ran with tensorrt '10\.13\.0'"):
        read_results(tmp_path / "results")


@pytest.mark.parametrize(
    ("folder", "runs", "message"),
    [
        ("H100", {"stress.json": data.stress()}, "named <gpu>-trt<TensorRT version>"),
        ("h200-trt8.6.0", {"stress.json": data.stress()}, r"name the folder .*\(h100-trt8.6.0\)"),
        (FOLDER, {"benchmrk.json": data.benchmark()}, "benchmrk.json: not a results file"),
        (FOLDER, {"example.txt": data.EXAMPLE}, "needs .*environment.json beside it"),
        (FOLDER, {"stress.json": {k: v for k, v in data.stress().items() if k != "environment"}},
         "no environment record"),
        (FOLDER, {"stress.json": "{not json"}, "stress.json: not JSON"),
    ],
)  # fmt: skip
def test_results_it_cannot_use_are_refused_with_the_fix(tmp_path, folder, runs, message):
    data.write_folder(tmp_path / "results" / folder, runs)
    with pytest.raises(ResultsError, match=message):
        render_pages(tmp_path)


def test_the_folder_name_comes_from_the_gpu_and_tensorrt():
    assert results.folder_name(data.ENVIRONMENT) == "h100-trt8.6.0"
    assert results.folder_name({"gpu": "NVIDIA A10G", "tensorrt": "10.0.1"}) == "a10g-trt10.0.1"
    with pytest.raises(ResultsError, match="no GPU or no TensorRT recorded"):
        results.folder_name({"gpu": None, "tensorrt": None})


def test_record_environment_writes_the_record_into_the_folder_named(tmp_path):
    folder = tmp_path / "results" / FOLDER
    result = run_script("render_results.py", "--record-environment", str(folder))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(folder)
    record = json.loads((folder / "environment.json").read_text())
    assert set(results.IDENTITY) <= set(record)


def test_record_environment_without_a_gpu_names_no_folder_and_says_why():
    # TensorRT made to fail, so that a machine with it (a GPU machine) shows the same.
    result = run_script(
        *script_with_imports_failing("render_results.py", TENSORRT_MISSING, "--record-environment")
    )
    assert result.returncode == 1
    assert result.stderr.startswith("render_results.py: no GPU or no TensorRT recorded")


def test_the_fixtures_are_in_the_formats_the_scripts_write():
    """The scripts' own reports read the fixtures: their formats are the real ones."""
    assert convenience.BASELINE == results.FLOOR
    assert convenience.GPU_BASELINE == results.GPU_FLOOR
    run = data.benchmark()
    assert "three narrow profiles" in benchmark_report(json.loads(json.dumps(run)))
    stress_run = data.stress()
    assert all(passed for passed, _ in verdicts(stress_run["load"], stress_run["lifecycle"]))
    assert "8400" in loadgen.report(data.full_folder()["triton.json"]["levels"])


def test_every_declared_run_is_a_file_the_renderer_reads():
    for run in results.RUNS:
        assert run.file in results.RUN_OF
        assert f"$folder/{run.file}" in run.command or run.file == "environment.json"


def test_the_routing_rules_are_compared_per_shape_and_the_faster_one_is_computed(tmp_path):
    english, chinese = render(tmp_path, {"routing.json": data.routing((1.0, 0.8, 0.9))})
    section = english.split("### The routing rules compared")[1].split("###")[0]
    cells = row(section, "`input_ids:[2,64] attention_mask:[2,64]`")
    assert cells[1:] == ["2", "p1", "46.4", "p0", f"{46.4 * 0.8:.1f}", "0.80x"]
    assert "nearest-opt is faster, by" in section
    assert "2 shapes routed differently" in section
    assert "nearest-opt 更快" in chinese


@pytest.mark.parametrize(("ratio", "met"), [(0.9, "yes"), (1.3, "no")])
def test_the_default_routing_rule_is_held_to_being_the_faster(tmp_path, ratio, met):
    english, _ = render(tmp_path, {"routing-overlapping.json": data.routing((1.0, ratio))})
    cells = row(english, "routing: the dispatcher's default rule at least as fast as the other "
                         "on profiles where they part (routing-overlapping.json, weighted by "
                         "count; the other's mean latency over the default's)")  # fmt: skip
    # The default is nearest-opt: `ratio` is its latency over the narrowest range's.
    assert cells[1].startswith("nearest-opt: ") and cells[2] == met


def test_each_planned_candidate_is_held_against_the_wide_and_the_given_profiles(tmp_path):
    run = data.plan("convnet", {"wide": 3.0, "2 profiles": 1.2, "3 profiles": 0.9})
    english, _ = render(tmp_path, {"plan-convnet.json": run})
    section = english.split("### Profiles planned from a workload")[1].split("###")[0]
    header = row(section, "rank")
    assert header[-2:] == ["vs wide", "vs given"]
    cells = dict(zip(header, row(section, "1"), strict=True))
    assert cells["candidate"] == "3 profiles" and cells["role"] == "planned"
    assert cells["vs wide"] == f"{3.0 / 0.9:.2f}x" and cells["vs given"] == f"{1 / 0.9:.2f}x"
    (best,) = [c for c in run["candidates"] if c["name"] == "3 profiles"]
    assert f"```text\n{best['polygraphy_options']}\n```" in section
    assert row(english, "planning, the convnet on the scenario's workload: the planner's choice "
                        "within 5% of the hand-picked profiles' mean latency, or better (its "
                        "mean over theirs)")[2] == "yes"  # fmt: skip


def test_each_candidates_requests_are_shown_by_the_profile_that_serves_them(tmp_path):
    run = data.plan("convnet", {"wide": 3.0, "3 profiles": 0.9, "given": 1.5})
    english, _ = render(tmp_path, {"plan-convnet.json": run})
    section = english.split("Where each candidate gains or loses")[1].split("The best")[0]
    rows = [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in section.splitlines()
        if line.startswith("| ") and not line.startswith(("| candidate", "| ---"))
    ]
    by_candidate = {}
    for candidate, where, requests, *_, gain in rows:
        by_candidate.setdefault(candidate, []).append((where, int(requests.replace(",", "")), gain))
    assert "wide" not in by_candidate and set(by_candidate) == {"2 profiles", "3 profiles", "given"}
    for candidate, speed in (("3 profiles", 0.9), ("given", 1.5)):
        assert sum(requests for _, requests, _ in by_candidate[candidate]) == 300
        assert {gain for *_, gain in by_candidate[candidate]} == {f"{3.0 / speed:.2f}x"}
    # The walkthrough's profiles, as the dispatcher routes to them: batch 1 to the first.
    assert [where for where, *_ in by_candidate["given"]][:3] == [
        "0: X [1, 3, 28, 28]", "1: X [1..32, 3, 28, 28]", "2: X [128, 3, 28, 28]"
    ]  # fmt: skip


@pytest.mark.parametrize(("wide", "met"), [(1.25, "yes"), (1.1, "no")])
def test_the_transformers_plan_is_held_to_1_2x_over_the_wide_profile(tmp_path, wide, met):
    run = data.plan("transformer", {"wide": wide})
    english, _ = render(tmp_path, {"plan-transformer.json": run})
    cells = row(english, "planning, the transformer on its workload: the best planned set of at "
                         "most three profiles at least 1.2x lower mean latency than one wide "
                         "profile")  # fmt: skip
    # Every planned set runs at speed 1.0 here: the first of them ranks best.
    (best,) = [c for c in run["candidates"] if c["rank"] == 1]
    assert cells[1].startswith(f"{best['name']}: {wide:.2f}x (")
    assert cells[2] == met
    # Short of the target, the measurement that says why: every planned profile serves its own
    # requests at the wide profile's speed over the set's (the same for each, here).
    why = (
        f"every planned set's profiles, each on the requests it serves: {wide:.2f}x to {wide:.2f}x"
    )
    assert (why in cells[1]) == (met == "no")


def test_the_planners_profile_files_lie_beside_its_runs_but_a_stray_file_is_refused(tmp_path):
    runs = {"plan-convnet.json": data.plan(), "plan-convnet-profiles.json": "[]"}
    render(tmp_path, runs)  # the profile file the run wrote is passed over
    data.write_folder(tmp_path / "results" / FOLDER, {"plan-notes.txt": "hand-written"})
    with pytest.raises(ResultsError, match=r"plan-notes\.txt: not a results file"):
        render_pages(tmp_path)


def test_the_backends_are_side_by_side_at_each_level_with_their_ratios(tmp_path):
    runs = data.full_folder()
    english, _ = render(tmp_path, runs)
    section = english.split("### Triton's two backends side by side")[1].split("###")[0]
    header = row(section, "clients")
    rows = [dict(zip(header, cells, strict=True)) for cells in table_rows(section)
            if cells[0] == "64" and len(cells) == len(header)]  # fmt: skip
    tensorrt = next(r for r in rows if r["file"] == "`triton-tensorrt.json`")
    assert tensorrt["backend"] == "TensorRT"
    assert tensorrt["server"] == "`python3 serve.py --backend tensorrt`"
    assert tensorrt["vs serve.py"] == "3.00x" and tensorrt["requests per execution"] == "9.50"
    level = runs["triton-tensorrt.json"]["levels"][1]
    compute = level["compute_input_us"] + level["compute_infer_us"] + level["compute_output_us"]
    assert tensorrt["compute"] == f"{compute:,.0f}"
    assert "The most requests/s at 64 clients: `triton-tensorrt-4-instances.json`" in section
    mixed = dict(zip(row(section, "backend"), row(section, "TensorRT"), strict=True))
    assert mixed["images/s"] == "18,000" and mixed["refused or failed"] == "7,400"
    assert mixed["images/s vs Python"] == f"{18_000 / 54_000:.2f}x"


def test_refusals_count_as_errors_only_where_the_server_refuses_by_design(tmp_path):
    runs = data.full_folder()
    by_design = row(render(tmp_path, runs)[0], "every response exact, under stress.py's load "
                                               "and Triton's")  # fmt: skip
    assert by_design[2] == "yes"
    runs["triton-tensorrt.json"]["levels"][0]["errors"] = 3
    cells = row(render(tmp_path, runs)[0], "every response exact, under stress.py's load and "
                                           "Triton's")  # fmt: skip
    assert cells[1:] == [by_design[1].replace(" 0 errors", " 3 errors"), "no"]


@pytest.mark.parametrize(("p99", "met"), [(3900.0, "yes"), (4100.0, "no")])
def test_the_tensorrt_backend_is_held_to_2_5x_the_python_backend_under_4_ms(tmp_path, p99, met):
    runs = data.full_folder()
    runs["triton-tensorrt.json"]["levels"][1] = data.level(64, 21000.0, 2000.0, p99, 9.0)
    english, _ = render(tmp_path, runs)
    cells = row(english, "Triton: the TensorRT backend as export_triton.py writes it, 64 batch-1 "
                         "clients: at least 2.5x the requests/s of the Python backend as serve.py "
                         "starts it, at p99 under 4 ms")  # fmt: skip
    assert cells[1:] == [f"2.50x (21,000 / 8,400), p99 {p99:,.0f} us", met]


def test_a_load_measured_for_other_seconds_than_its_command_says_so(tmp_path):
    runs = data.full_folder()
    english, chinese = render(tmp_path, runs)
    assert "instead (measure.py --seconds)" not in english  # 5 s a level, as declared
    for level in runs["triton.json"]["levels"]:
        level["requests"] = int(level["requests_per_s"] * 3)
    english, chinese = render(tmp_path, runs)
    (line,) = [line for line in english.splitlines() if line.startswith("- `triton.json`")]
    assert line.endswith("; each level measured for 3 s instead (measure.py --seconds)")
    assert "但每一级实际测量 3 秒" in chinese


def test_a_batcher_off_run_that_served_nothing_renders_without_a_ratio(tmp_path):
    runs = data.full_folder()
    for level in runs["triton-no-batcher.json"]["levels"]:
        level["requests_per_s"] = 0.0
    english, _ = render(tmp_path, runs)
    pair = "| `triton.json` / `triton-no-batcher.json` |"
    rows = [line.strip("|").split("|") for line in english.splitlines() if line.startswith(pair)]
    assert rows and all(cells[4].strip() == "-" for cells in rows)
    assert "the run without the batcher served no request" in english


def test_record_environment_refuses_a_folder_named_for_another_machine(tmp_path, monkeypatch):
    import render_results

    record = {"gpu": "NVIDIA H100 80GB HBM3", "tensorrt": "8.6.0"}
    monkeypatch.setattr(render_results, "environment", lambda: record)
    args = render_results.parse_args(["--record-environment", str(tmp_path / "a10g-trt8.6.0")])
    with pytest.raises(ValueError, match=r"\(NVIDIA H100 80GB HBM3, TensorRT 8\.6\.0\) go into"):
        render_results.run(args)
    assert not (tmp_path / "a10g-trt8.6.0").exists()
    args = render_results.parse_args(["--record-environment", str(tmp_path / "h100-trt8.6.0")])
    render_results.run(args)
    assert json.loads((tmp_path / "h100-trt8.6.0" / "environment.json").read_text()) == record


def test_the_hand_picked_profiles_of_the_planning_run_are_the_walkthroughs():
    # The library may not import scenario.py, so the run restates its table: held to it here.
    from dynamic_shapes.profiles import profile_shapes, profiles_from_command_line
    from scenario import PROFILES

    assert profile_shapes(profiles_from_command_line(results.HAND_PICKED)) == profile_shapes(
        PROFILES
    )


def test_a_text_run_shows_no_folder_of_the_machine_it_ran_on(tmp_path):
    inspect = "[I] Loading bytes from /home/someone/project/dynamic_identity.engine\n[I] ok\n"
    english, _ = render(tmp_path, {"inspect.txt": inspect, "environment.json": data.ENVIRONMENT})
    assert "[I] Loading bytes from dynamic_identity.engine\n[I] ok" in english
    assert "/home/someone" not in english

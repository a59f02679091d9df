"""The targets the project is measured against, declared once: each says what it asks for,
in both languages of the results pages, and how to tell from a results folder's data whether
it is met."""

import inspect
from dataclasses import dataclass

from dynamic_shapes.measure.convenience import FRESH, STAGING
from dynamic_shapes.measure.report import floor_of
from dynamic_shapes.results import (
    EARLIER_COMMIT,
    EARLIER_STRESS,
    GRAPH,
    INFER,
    PAGEABLE_INFER,
    PREPARED,
    PYTHON_AS_STARTED,
    RUN_OF,
    STRESS_FILE,
    TENSORRT_AS_EXPORTED,
    TRITON_FILE,
    Environment,
    by_batch,
    images_per_s,
)
from dynamic_shapes.results_backends import BUSIEST, best_of, level_at
from dynamic_shapes.results_figures import change, count, short, times, us
from dynamic_shapes.results_planning import shares_against_wide

# The limits stress.py passes or fails a load by, applied to Triton's soak too.
DEVICE_LEAK_LIMIT_MIB = 1.0
HOST_GROWTH_LIMIT_MIB = 16.0


def convenience(environment: Environment) -> dict:
    """{model: {batch: stats}} of benchmark.py's serving paths, where measured."""
    benchmark = environment.runs.get("benchmark.json") or {"models": {}}
    return {
        name: dict(by_batch(model["convenience"]["by_batch"]))
        for name, model in benchmark["models"].items()
        if model.get("convenience", {}).get("by_batch")
    }


def ratio_to_floor(stats: dict, variant: str) -> float | None:
    if variant not in stats:
        return None
    return stats[variant]["median_us"] / stats[floor_of(variant)]["median_us"]


def with_spread(stats: dict, variant: str) -> str:
    """The variant's ratio to its floor and, where the rounds were recorded, in parentheses
    the lowest and the highest round's ratio (the two are timed in the same rounds)."""
    text = times(ratio_to_floor(stats, variant))
    rounds = stats[variant].get("round_medians_us")
    floors = stats[floor_of(variant)].get("round_medians_us")
    if rounds and floors and len(rounds) == len(floors):
        ratios = [mine / floor for mine, floor in zip(rounds, floors, strict=True)]
        text += f" ({times(min(ratios))}-{times(max(ratios))})"
    return text


def prepared_of(variant: str) -> str:
    """The prepared request of the same arrays as an infer() variant: the same copies and
    inference, without infer()'s checks, routing and outputs, which it does once."""
    return PREPARED + variant.removeprefix(INFER)


def infer_work(stats: dict, variant: str, limit: float, t, prepared=None, also=()) -> str | None:
    """Why `variant` misses `limit`: what the prepared request it amounts to (by default the
    one of the same arrays) takes of the floor, the same for each of `also` (work infer() does
    beside it, on the host), and how many us infer() adds to them all, against the us the
    limit leaves over the floor."""
    prepared = prepared or prepared_of(variant)
    if prepared not in stats or any(part not in stats for part in also):
        return None
    floor = stats[floor_of(variant)]["median_us"]
    beside = [stats[part]["median_us"] for part in also]
    parts = stats[prepared]["median_us"] + sum(beside)
    added = stats[variant]["median_us"] - parts
    text = t["infer_work"].format(
        prepared=times(stats[prepared]["median_us"] / floor),
        beside="".join(
            t["infer_beside"].format(part=short(part), ratio=times(us_ / floor))
            for part, us_ in zip(also, beside, strict=True)
        ),
    )
    if also and parts > limit * floor:  # what infer() cannot do without is over the target
        return text + t["parts_over"].format(ratio=times(parts / floor), added=us(added))
    return text + t["infer_rest"].format(added=us(added), left=us((limit - 1.0) * floor))


def within_floor(variant: str, limit: float, batches=None):
    """A target: `variant` within `limit` of its floor at every batch measured (or `batches`),
    for every model. For an infer() variant that misses it, the model and batch furthest from
    it say why (infer_work)."""

    def evaluate(environment, t):
        parts, met, worst = [], True, None
        for name, batch_stats in convenience(environment).items():
            wanted = batches or tuple(batch_stats)
            ratios = [ratio_to_floor(batch_stats.get(b, {}), variant) for b in wanted]
            if None in ratios:  # not measured for this model (GPU arrays need CuPy)
                continue
            met &= max(ratios) <= limit
            listed = ", ".join(with_spread(batch_stats[b], variant) for b in wanted)
            parts.append(f"{name}: {listed} ({t['batch']} {', '.join(map(str, wanted))})")
            for batch, ratio in zip(wanted, ratios, strict=True):
                if worst is None or ratio > worst[0]:
                    worst = (ratio, name, batch, batch_stats[batch])
        if not parts:
            return None
        text = "; ".join(parts)
        if not met and variant.startswith(INFER) and not variant.startswith(PREPARED):
            _, name, batch, stats = worst
            why = infer_work(stats, variant, limit, t)
            if why:
                text += "; " + t["infer_worst"].format(model=name, batch=batch) + why
        return text, met

    return evaluate


def batch_one_graph(environment, t):
    stats = convenience(environment).get("identity", {}).get(1, {})
    variant = PREPARED + "page-locked" + GRAPH
    if variant not in stats:
        return None
    median = stats[variant]["median_us"]
    return f"{us(median)} us", median <= 18.0


def pageable_within(batch: int, limit: float, variants=PAGEABLE_INFER):
    """A target: the fastest of the pageable `variants` through infer within `limit` of the
    page-locked bare loop at `batch` (identity); every one measured is listed. Where it is
    missed, the fastest one's work is taken apart: a graph of a shape sent again is a prepared
    page-locked request (with its graph) and the staging copies around it (infer_work)."""

    def evaluate(environment, t):
        stats = convenience(environment).get("identity", {}).get(batch, {})
        ratios = {v: ratio_to_floor(stats, v) for v in variants if v in stats}
        if not ratios:
            return None
        text = ", ".join(f"{short(v)} {with_spread(stats, v)}" for v in ratios)
        best = min(ratios, key=ratios.get)
        met = ratios[best] <= limit
        if not met and best.endswith(GRAPH):
            prepared = PREPARED + "page-locked" + GRAPH
            why = infer_work(stats, best, limit, t, prepared, (STAGING,))
            if why:
                text += "; " + t["pageable_worst"].format(variant=short(best)) + why
        return text, met

    return evaluate


def stress_runs(environment) -> dict:
    """The stress loads of the code measured; an earlier commit's (stress.py --at) is there to
    compare with."""
    runs = environment.json_runs(STRESS_FILE)
    return {name: run for name, run in runs.items() if "at" not in run}


# What makes two stress loads the same load.
LOAD_SETTINGS = ("processes", "threads", "requests_per_thread", "max_batch", "path", "memory",
                 "contexts_per_profile")  # fmt: skip


def stress_against_earlier(environment, t):
    """stress.json's load against the earlier commit's, run beside it in one session; where
    it falls short, the same load from page-locked arrays, which has no staging copies."""
    runs = environment.json_runs(STRESS_FILE)
    now, then = runs.get("stress.json"), runs.get(EARLIER_STRESS)
    if now is None or then is None:
        return None
    if now["environment"]["date"][:10] != then["environment"]["date"][:10]:
        return t["stress_apart"].format(file=EARLIER_STRESS), False
    differ = [key for key in LOAD_SETTINGS if now["load"].get(key) != then["load"].get(key)]
    if differ:
        return t["stress_differ"].format(file=EARLIER_STRESS, settings=", ".join(differ)), False
    ratio = images_per_s(now) / images_per_s(then)
    text = f"{times(ratio)} ({count(images_per_s(now))} / {count(images_per_s(then))} images/s)"
    errors = now["load"]["errors"] + then["load"]["errors"]
    if errors:
        return text + "; " + t["stress_errors"].format(errors=errors), False
    met = ratio >= 1.5
    page_locked = runs.get("stress-page-locked.json")
    if not met and page_locked is not None:
        rate = images_per_s(page_locked)
        text += "; " + t["stress_page_locked"].format(
            rate=count(rate), ratio=times(rate / images_per_s(now))
        )
    return text, met


def stress_load(environment, t):
    loads = {
        name: images_per_s(run)
        for name, run in stress_runs(environment).items()
        if run["load"]["errors"] == 0
    }
    if not loads:
        return None
    best = max(loads, key=loads.get)
    return f"{count(loads[best])} images/s (`{best}`)", loads[best] >= 1_000_000


def contexts_pay_off(environment, t):
    benchmark = environment.runs.get("benchmark.json") or {"models": {}}
    rates = benchmark["models"].get("convnet", {}).get("contexts", {}).get("by_batch", {})
    rate = rates.get("4", {}).get("page-locked, 4 contexts")
    if rate is None:
        return None
    return times(rate["vs_one_context"]), rate["vs_one_context"] > 1.0


def triton_level(environment, file, concurrency):
    return level_at(environment.runs.get(file), concurrency)


def triton_one_client(environment, t):
    level = triton_level(environment, "triton.json", 1)
    return None if level is None else (f"p50 {count(level['p50_us'])} us", level["p50_us"] < 600)


def triton_batcher(environment, t):
    on = triton_level(environment, "triton.json", 64)
    off = triton_level(environment, "triton-no-batcher.json", 64)
    if on is None or off is None:
        return None
    if not off["requests_per_s"]:  # no ratio to judge: a run that served nothing fails it
        return "the run without the batcher served no request", False
    ratio = on["requests_per_s"] / off["requests_per_s"]
    text = f"{times(ratio)} ({count(on['requests_per_s'])} / {count(off['requests_per_s'])})"
    return text, ratio >= 5.0


def triton_p99(environment, t):
    level = triton_level(environment, "triton.json", 64)
    return None if level is None else (f"p99 {count(level['p99_us'])} us", level["p99_us"] < 5000)


def every_response_exact(environment, t):
    errors = [run["load"]["errors"] for run in stress_runs(environment).values()]
    # Where the server refuses part of the load by design, loadgen.py's errors count refusals.
    errors += [
        level["errors"]
        for name, run in environment.json_runs(TRITON_FILE).items()
        if not (name in RUN_OF and RUN_OF[name].refusals)
        for level in run["levels"]
    ]
    if not errors:
        return None
    return t["runs_of"].format(count=len(errors), errors=sum(errors)), sum(errors) == 0


def no_memory_growth(environment, t):
    growth = []  # (GPU MiB, host MiB) of each load: stress.py's process, Triton's server
    for run in stress_runs(environment).values():
        load = run["load"]
        gpu = load["device_mib_after"] - load["device_mib_before"]
        growth.append((gpu, load["host_rss_mib_after"] - load["host_rss_mib_before"]))
    soak = environment.runs.get("triton-soak.json") or {"levels": []}
    for level in soak["levels"]:
        if "server_rss_mib_before" in level:  # loadgen.py --server-pid
            gpu = level["gpu_memory_mib_after"] - level["gpu_memory_mib_before"]
            growth.append((gpu, level["server_rss_mib_after"] - level["server_rss_mib_before"]))
    if not growth:
        return None
    met = all(
        abs(gpu) < DEVICE_LEAK_LIMIT_MIB and host <= HOST_GROWTH_LIMIT_MIB for gpu, host in growth
    )
    gpu_most = max((gpu for gpu, _ in growth), key=abs)
    host_most = max(host for _, host in growth)
    text = t["growth"].format(gpu=change(gpu_most), host=change(host_most), loads=len(growth))
    return text, met


def tensorrt_backend_vs_python(environment, t):
    """The TensorRT backend as export_triton.py writes it against the Python backend as
    serve.py starts it, at BUSIEST batch-1 clients: the ratio of requests/s, and its p99."""
    triton = environment.json_runs(TRITON_FILE)
    tensorrt = level_at(triton.get(TENSORRT_AS_EXPORTED), BUSIEST)
    python = level_at(triton.get(PYTHON_AS_STARTED), BUSIEST)
    if tensorrt is None or python is None or tensorrt["p99_us"] is None:
        return None
    ratio = tensorrt["requests_per_s"] / python["requests_per_s"]
    text = (
        f"{times(ratio)} ({count(tensorrt['requests_per_s'])} / "
        f"{count(python['requests_per_s'])}), p99 {count(tensorrt['p99_us'])} us"
    )
    return text, ratio >= 2.5 and tensorrt["p99_us"] < 4000


def best_set_up_p99(environment, t):
    """The set-up with the most requests/s at BUSIEST batch-1 clients, and its p99."""
    triton = environment.json_runs(TRITON_FILE)
    best = best_of(triton)
    if best is None:
        return None
    level = level_at(triton[best], BUSIEST)
    if level["p99_us"] is None:  # nothing served
        return None
    text = f"`{best}`: {count(level['requests_per_s'])} requests/s, p99 {count(level['p99_us'])} us"
    return text, level["p99_us"] < 3000


def planned(run: dict) -> dict:
    """The planner's own choice (of its sets and the wide profile): the one of least mean."""
    return min((c for c in run["candidates"] if c["role"] != "given"), key=lambda c: c["mean_s"])


def plan_against_hand_picked(environment, t):
    run = environment.runs.get("plan-convnet.json")
    given = [c for c in (run or {}).get("candidates", []) if c["role"] == "given"]
    if not given:
        return None
    best = planned(run)
    ratio = best["mean_s"] / given[0]["mean_s"]
    text = (
        f"{best['name']}: {times(ratio)} ({us(best['mean_s'] * 1e6)} / "
        f"{us(given[0]['mean_s'] * 1e6)} us)"
    )
    return text, ratio <= 1.05


def plan_against_wide(environment, t):
    run = environment.runs.get("plan-transformer.json")
    sets = [c for c in (run or {}).get("candidates", []) if c["role"] == "planned"]
    wide = [c for c in (run or {}).get("candidates", []) if c["role"] == "wide"]
    if not sets or not wide:
        return None
    best = min(sets, key=lambda c: c["mean_s"])
    ratio = wide[0]["mean_s"] / best["mean_s"]
    text = (
        f"{best['name']}: {times(ratio)} ({us(wide[0]['mean_s'] * 1e6)} / "
        f"{us(best['mean_s'] * 1e6)} us)"
    )
    if ratio < 1.2:
        # What the target asks for then: the measurement that shows why, each planned profile
        # on the requests it serves against the same requests on the wide profile.
        gains = [
            share.gain
            for c, _, shares in shares_against_wide(run["candidates"])
            if c["role"] == "planned"
            for share in shares
            if share.profile is not None
        ]
        if gains:  # none where every request was split over several profiles
            text += "; " + t["plan_profile_gains"].format(
                low=times(min(gains)), high=times(max(gains))
            )
    return text, ratio >= 1.2


def default_routing_rule() -> str:
    from dynamic_shapes.serving.dispatcher import Dispatcher

    return inspect.signature(Dispatcher).parameters["routing"].default


def default_rule_faster(environment, t):
    """The dispatcher's default rule against the other, weighted over the shapes of the run
    on profiles where the rules part."""
    run = environment.runs.get("routing-overlapping.json")
    summary = (run or {}).get("routing", {}).get("summary")
    if not summary:
        return None
    mean = summary["weighted_median_us"]
    default = default_routing_rule()
    (other,) = [rule for rule in mean if rule != default]
    ratio = mean[other] / mean[default]
    return f"{default}: {times(ratio)} ({us(mean[other])} / {us(mean[default])} us)", ratio >= 1.0


@dataclass(frozen=True)
class Target:
    en: str
    zh: str
    evaluate: object  # (Environment, words) -> (measured text, met) or None where not measured


TARGETS = (
    Target(
        "prepared page-locked requests, with their CUDA graphs, within 1.1x of the page-locked "
        "bare loop at batch 1, 4, 32 and 128",
        "预备的页锁定请求（使用其 CUDA 图）在批大小 1、4、32、128 时不超过页锁定裸循环的 1.1 倍",
        within_floor(PREPARED + "page-locked" + GRAPH, 1.1, (1, 4, 32, 128)),
    ),
    Target(
        "18 us or less at batch 1: a prepared page-locked request with its CUDA graph (identity)",
        "批大小 1 时不超过 18 us：使用 CUDA 图的预备页锁定请求（恒等网络）",
        batch_one_graph,
    ),
    Target(
        "prepared GPU-resident requests, with their CUDA graphs, within 1.2x of a bare "
        "execute_async_v3 + synchronize",
        "预备的 GPU 常驻请求（使用其 CUDA 图）不超过裸 execute_async_v3 + 同步的 1.2 倍",
        within_floor(PREPARED + "GPU-resident" + GRAPH, 1.2),
    ),
    Target(
        "pageable requests through infer within 2x of the page-locked bare loop at batch 128 "
        "(identity)",
        "批大小 128 时，经 infer 的可分页请求不超过页锁定裸循环的 2 倍（恒等网络）",
        pageable_within(128, 2.0),
    ),
    Target(
        "infer with page-locked arrays within 1.15x of the page-locked bare loop at batch 1, 4, "
        "32 and 128",
        "批大小 1、4、32、128 时，经 infer 的页锁定数组不超过页锁定裸循环的 1.15 倍",
        within_floor(INFER + "page-locked" + GRAPH, 1.15, (1, 4, 32, 128)),
    ),
    Target(
        "infer with GPU arrays within 1.3x of a bare execute_async_v3 + synchronize",
        "经 infer 的 GPU 数组不超过裸 execute_async_v3 + 同步的 1.3 倍",
        within_floor(INFER + "GPU-resident", 1.3),
    ),
    Target(
        "infer with pageable arrays at batch 1 within 1.15x of the page-locked bare loop "
        "(identity; fresh arrays for every request among them)",
        "批大小 1 时，经 infer 的可分页数组不超过页锁定裸循环的 1.15 倍（恒等网络；其中包括每个"
        "请求都用新数组的情形）",
        pageable_within(1, 1.15, (*PAGEABLE_INFER, FRESH)),
    ),
    Target(
        "stress.py's load: 1,000,000 images/s or more, every output exact",
        "stress.py 的负载：每秒 1,000,000 张图像或更多，每个输出都准确",
        stress_load,
    ),
    Target(
        f"one process's stress load (stress.json: 8 threads, pageable) at least 1.5x the "
        f"images/s of commit {EARLIER_COMMIT}'s, run beside it ({EARLIER_STRESS}), every "
        "output exact",
        f"单进程的 stress 负载（stress.json：8 个线程，可分页）每秒图像数至少为同一次测量中提交 "
        f"{EARLIER_COMMIT} 的负载（{EARLIER_STRESS}）的 1.5 倍，每个输出都准确",
        stress_against_earlier,
    ),
    Target(
        "several contexts per profile pay off where the GPU has room: 4 contexts serve more "
        "than 1 (convnet, batch 4, page-locked)",
        "在 GPU 尚有余力时，每个配置文件多个上下文有收益："
        "4 个上下文多于 1 个（卷积网络，批大小 4，页锁定）",
        contexts_pay_off,
    ),
    Target(
        "Triton: one batch-1 client at p50 under 0.6 ms",
        "Triton：单个批大小为 1 的客户端，p50 低于 0.6 ms",
        triton_one_client,
    ),
    Target(
        "Triton: 64 batch-1 clients, at least 5x the requests/s of the batcher off",
        "Triton：64 个批大小为 1 的客户端，每秒请求数至少为关闭组批器时的 5 倍",
        triton_batcher,
    ),
    Target(
        "Triton: 64 batch-1 clients at p99 under 5 ms",
        "Triton：64 个批大小为 1 的客户端，p99 低于 5 ms",
        triton_p99,
    ),
    Target(
        "every response exact, under stress.py's load and Triton's",
        "在 stress.py 与 Triton 的负载下，每个响应都准确",
        every_response_exact,
    ),
    Target(
        "Triton: the TensorRT backend as export_triton.py writes it, 64 batch-1 clients: at "
        "least 2.5x the requests/s of the Python backend as serve.py starts it, at p99 under "
        "4 ms",
        "Triton：export_triton.py 写出的 TensorRT 后端，64 个批大小为 1 的客户端：每秒请求数"
        "至少为 serve.py 默认启动的 Python 后端的 2.5 倍，p99 低于 4 ms",
        tensorrt_backend_vs_python,
    ),
    Target(
        "Triton: the set-up with the most requests/s at 64 batch-1 clients, at p99 under 3 ms",
        "Triton：64 个批大小为 1 的客户端时每秒请求数最多的配置，p99 低于 3 ms",
        best_set_up_p99,
    ),
    Target(
        "routing: the dispatcher's default rule at least as fast as the other on profiles where "
        "they part (routing-overlapping.json, weighted by count; the other's mean latency over "
        "the default's)",
        "路由：在两种规则路由不同的配置文件上（routing-overlapping.json，按次数加权），dispatcher "
        "的默认规则至少与另一种一样快（另一种的平均延迟与默认规则之比）",
        default_rule_faster,
    ),
    Target(
        "planning, the convnet on the scenario's workload: the planner's choice within 5% of the "
        "hand-picked profiles' mean latency, or better (its mean over theirs)",
        "规划，卷积网络在场景工作负载上：规划器的选择的平均延迟不超过手选配置文件的 1.05 倍"
        "（其平均延迟与手选之比）",
        plan_against_hand_picked,
    ),
    Target(
        "planning, the transformer on its workload: the best planned set of at most three "
        "profiles at least 1.2x lower mean latency than one wide profile",
        "规划，Transformer 在其工作负载上：至多三个配置文件的最佳规划组合，平均延迟比单个宽"
        "配置文件低至少 1.2 倍",
        plan_against_wide,
    ),
    Target(
        f"no memory growth under load: GPU memory within {DEVICE_LEAK_LIMIT_MIB:g} MiB, host "
        f"memory {HOST_GROWTH_LIMIT_MIB:g} MiB or less (stress.py, Triton's soak)",
        f"负载下内存不增长：GPU 内存变化在 {DEVICE_LEAK_LIMIT_MIB:g} MiB 以内，主机内存增长不超过 "
        f"{HOST_GROWTH_LIMIT_MIB:g} MiB（stress.py、Triton 长时间运行）",
        no_memory_growth,
    ),
)

"""The words of the results pages, in each language they are written in. Variant and file
names stay as the scripts print them."""

from dynamic_shapes.results import FLOOR, GPU_FLOOR

TEXT = {
    "en": {
        "title": "Measured results",
        "generated": "<!-- Written by render_results.py from results/: change the data or the "
        "renderer, then run python3 render_results.py. -->",
        "intro": "Every figure here was measured by the project's own scripts and committed as "
        "data under [results/](../results/), one folder per environment; render_results.py "
        "writes this page from it. A table never mixes environments. A page may be older "
        "than the code: each run says which commit it measured. How to measure again: "
        "[Measuring](measuring.md). [中文](results.zh-CN.md)",
        "none": "No results yet: no folder under results/ holds a run. [Measuring](measuring.md) "
        "says how to make one.",
        "environments": "Environments",
        "gpu_line": "{gpu}, driver {driver}, TensorRT {tensorrt}, Python {python}.",
        "run_line": "commit {commit}, {date}",
        "measured_with": "Measured with",
        "level_seconds": "each level measured for {seconds} s instead (measure.py --seconds)",
        "server": "server",
        "under_mps": "under MPS (`nvidia-cuda-mps-control -d` before, "
        "`echo quit | nvidia-cuda-mps-control` after)",
        "targets": "Targets",
        "target": "target",
        "measured": "measured",
        "met": "met",
        "yes": "yes",
        "no": "no",
        "not_measured": "not measured",
        "benchmark": "The trade-offs and the serving paths (benchmark.py)",
        "settings": "{rounds} rounds of {reps} timed calls per variant after {warmup} warm-up "
        "calls; latency in microseconds.",
        "incomplete": "This run stopped early: the sections it had measured are kept.",
        "narrow_vs_wide": "1. Narrow vs wide profiles: median (p99), bare loop, page-locked",
        "wide_sentence": "{model}: the wide profile takes {ratios} the time of the narrow ones "
        "(batch {batches}).",
        "shape_switching": "2. Shape switching inside the dynamic-batching profile",
        "profile_switching": "3. Switching profiles in one context vs a context per profile",
        "runner_activation": "5. TrtRunner activate + deactivate",
        "stats_header": ["model", "variant", "median", "p90", "p99", "vs first"],
        "switch_sentence": "{model}: a {what} switch costs {cost} us.",
        "shape": "shape",
        "profile": "profile",
        "activation_sentence": "{model}: a runner that creates its own context takes {ratio} "
        "the time of one over an owned context.",
        "memory": "4. GPU memory, MiB",
        "memory_header": [
            "model",
            "each context, as TensorRT reports it",
            "each context, as free memory lost",
            "engine, as free memory lost",
            "plan",
        ],
        "convenience": "6. Serving paths and the floors under them, {model}",
        "convenience_note": "Median microseconds per request; in parentheses the ratio to the "
        f"floor for the same memory: `{FLOOR}` for host arrays, `{GPU_FLOOR}` for GPU arrays. "
        "A dash: not measured for that batch (the notes say why).",
        "through_infer": "Through `infer` and `TrtRunner.infer`",
        "capturing": "The request that captures its shape's graphs (`pageable, CUDA graph`, "
        "after free_graphs() and the requests served as before that graphs_after={after} asks "
        "for), against the replays: {batches}.",
        "capturing_batch": "batch {batch}, median {median} us, p99 {p99} us, {ratio} the "
        "replay's median ({captured} of {count} captured)",
        "prepared_and_floors": "Prepared requests and the bare loops",
        "infer_profile": "Where `infer` spends its time at batch 1: each function's own time per "
        "request under cProfile, whose own cost inflates every figure; the functions that take "
        "the most",
        "infer_profile_header": ["path", "function", "us per request", "calls per request"],
        "batch": "batch",
        "contexts": "7. Several contexts per profile: requests/s of {threads} threads "
        "(ratio to 1 context)",
        "model_batch": "model, batch",
        "checked": "{model}: every path's outputs checked against ONNX Runtime, {how}; largest "
        "difference {difference}.",
        "notes": "Notes from the run",
        "stress": "Load and lifecycles (stress.py)",
        "stress_header": [
            "file",
            "processes x threads",
            "memory",
            "MPS",
            "requests/s",
            "images/s",
            "us in infer()",
            "us checking",
            "CPU cores busy",
            "errors",
            "GPU MiB",
            "host MiB",
        ],
        "lifecycle_header": [
            "file",
            "dispatchers: GPU MiB",
            "prepared requests: GPU MiB",
            "TrtRunner activations: GPU MiB",
            "with Polygraphy's deactivate(): GPU MiB",
        ],
        "stress_note": "GPU MiB and host MiB: the change in GPU memory in use and in resident "
        "host memory over the load, after a warm-up.",
        "triton": "Triton (loadgen.py against serve.py)",
        "triton_header": [
            "clients",
            "requests/s",
            "images/s",
            "p50",
            "p90",
            "p99",
            "requests per execution",
            "server",
            "queue",
            "compute input",
            "compute infer",
            "compute output",
            "errors",
            "GPU MiB",
            "server MiB",
        ],
        "triton_note": "Latency and the server's split in microseconds per request; GPU MiB "
        "and server MiB: the change over each level (server MiB with --server-pid).",
        "pairs": "The dynamic batcher on and off",
        "pairs_header": [
            "set-up",
            "clients",
            "on: requests/s",
            "off: requests/s",
            "on / off",
            "on: p99",
            "off: p99",
        ],
        "routing": "The routing rules compared (benchmark.py --shapes)",
        "routing_note": "Each shape served through the dispatcher under each rule (the lean "
        "path, pageable arrays), median microseconds per request; the profile each rule sends "
        "it to (p1+p1: a batch split in two); the last column is the second rule's latency "
        "over the first's (above 1: the first is faster).",
        "routing_profiles_header": ["profile", "min", "opt", "max"],
        "shapes": "shapes",
        "count": "count",
        "median": "median",
        "routing_overall": "Weighted by each shape's count, over {requests} requests: "
        "{baseline} {baseline_us} us, {other} {other_us} us; {faster} is faster, by {ratio}. "
        "{differ} shapes routed differently.",
        "checked_routing": "Every shape's outputs under each rule checked against ONNX Runtime; "
        "largest difference {difference}.",
        "planning": "Profiles planned from a workload (plan_profiles.py)",
        "planning_note": "Each candidate set of profiles built into an engine, the workload "
        "replayed on it through the dispatcher: mean, p50 and p99 latency in microseconds, each "
        "shape weighted by its count; throughput in requests/s; the contexts' memory in MiB and "
        "the engine's build time in seconds; vs wide and vs given: that candidate's mean latency "
        "over this one's (above 1: this one is faster).",
        "plan_workload": "Workload: {workload}. Replayed by {threads} thread(s) after {warmup} "
        "warm-up requests; every distinct shape's outputs checked against ONNX Runtime, "
        "{checked}; largest difference {difference}.",
        "plan_header": [
            "rank",
            "candidate",
            "role",
            "profiles",
            "mean",
            "p50",
            "p99",
            "requests/s",
            "context MiB",
            "build s",
        ],
        "roles": {"planned": "planned", "wide": "wide", "given": "given"},
        "plan_by_profile": "Where each candidate gains or loses against the wide profile: its "
        "requests by the profile the dispatcher routes them to, and their mean latency in "
        "microseconds there and on the wide profile (vs wide above 1: that profile serves them "
        "faster).",
        "plan_by_profile_header": [
            "candidate",
            "profile",
            "requests",
            "% of requests",
            "mean",
            "mean on wide",
            "vs wide",
        ],
        "plan_split": "split over several",
        "plan_profile_gains": "every planned set's profiles, each on the requests it serves: "
        "{low} to {high} the wide profile's speed",
        "plan_best": "The best, {name}, as Polygraphy's options:",
        "backends_title": "Triton's two backends side by side (loadgen.py against serve.py)",
        "backends_note": "The same requests from the same clients, over gRPC, one machine. "
        "Latency and the server's split (queue; compute: input, infer and output) in "
        "microseconds per request.",
        "backends": {"python": "Python", "tensorrt": "TensorRT"},
        "backends_batch_one": "Batch-1 requests. vs serve.py: requests/s over the Python "
        "backend's as `python3 serve.py` starts it, at the same number of clients; vs Python's "
        "best: over the Python backend's set-up with the most requests/s at 64 clients "
        "({best}).",
        "backends_header": [
            "clients",
            "backend",
            "file",
            "server",
            "requests/s",
            "p50",
            "p90",
            "p99",
            "requests per execution",
            "queue",
            "compute",
            "vs serve.py",
            "vs Python's best",
        ],
        "backends_fastest": "The most requests/s at {clients} clients: {file} ({server}), "
        "{requests} requests/s at p99 {p99} us.",
        "backends_mixed": "Mixed batch sizes (1 to 300): images/s counts the images of the "
        "requests served; refused or failed counts loadgen.py's errors, which on the TensorRT "
        "backend are the batches no listed profile takes, refused by the server. The last "
        "column: images/s over the Python backend's.",
        "mixed_header": [
            "backend",
            "file",
            "server",
            "clients",
            "requests/s",
            "images/s",
            "refused or failed",
            "p50",
            "p99",
            "requests per execution",
            "images/s vs Python",
        ],
        "example": "The example's output",
        "inspect": "polygraphy inspect model",
        "suite": "The test suite on this machine",
        "runs_of": "{count} runs, {errors} errors",
        "targets_note": "A ratio to a floor is that of the medians over every round; in "
        "parentheses, where the rounds were recorded, the lowest and the highest round's.",
        "infer_worst": "furthest, {model} at batch {batch}: ",
        "pageable_worst": "{variant}: ",
        "infer_work": "a prepared request (the same copies and inference, without infer()'s "
        "work per request) takes {prepared}{beside}",
        "infer_rest": ", and the rest, infer()'s own work, adds {added} us, where the target "
        "leaves {left} us over the floor",
        "parts_over": ": together {ratio} of the floor, over the target before infer()'s own "
        "work, which adds {added} us",
        "infer_beside": ", {part} {ratio}",
        "stress_apart": "{file} was not measured on the same day: run both again",
        "stress_page_locked": "the same load from page-locked arrays, without staging "
        "copies: {rate} images/s ({ratio} stress.json's)",
        "stress_differ": "{file} is not the same load ({settings} differ): run both again",
        "stress_errors": "{errors} wrong or failed responses",
        "growth": "at most GPU {gpu} MiB, host {host} MiB, over {loads} loads",
    },
    "zh-CN": {
        "title": "实测结果",
        "generated": "<!-- 由 render_results.py 根据 results/ 生成：请修改数据或渲染程序，然后运行 "
        "python3 render_results.py。 -->",
        "intro": "本页的每个数字都由本项目自己的脚本测得，并作为数据提交在 "
        "[results/](../results/) 下，每个环境一个目录；render_results.py 据此生成本页。"
        "一张表格从不混合不同环境。本页可能比代码旧：每次运行都注明了它测量的提交。"
        "如何重新测量：[Measuring](measuring.md)。[English](results.md)",
        "none": "尚无结果：results/ 下没有任何目录包含运行数据。"
        "如何生成见 [Measuring](measuring.md)。",
        "environments": "环境",
        "gpu_line": "{gpu}，驱动 {driver}，TensorRT {tensorrt}，Python {python}。",
        "run_line": "提交 {commit}，{date}",
        "measured_with": "测量命令",
        "level_seconds": "但每一级实际测量 {seconds} 秒（measure.py --seconds）",
        "server": "服务端",
        "under_mps": "在 MPS 下运行（之前 `nvidia-cuda-mps-control -d`，"
        "之后 `echo quit | nvidia-cuda-mps-control`）",
        "targets": "目标",
        "target": "目标",
        "measured": "实测",
        "met": "达成",
        "yes": "是",
        "no": "否",
        "not_measured": "未测量",
        "benchmark": "各项取舍与服务路径（benchmark.py）",
        "settings": "每个变体先预热 {warmup} 次，再计时 {rounds} 轮、每轮 {reps} 次；"
        "延迟单位为微秒。",
        "incomplete": "这次运行提前结束：已测得的部分予以保留。",
        "narrow_vs_wide": "1. 窄配置文件与宽配置文件：中位数（p99），裸循环，页锁定内存",
        "wide_sentence": "{model}：宽配置文件耗时为窄配置文件的 {ratios}（批大小 {batches}）。",
        "shape_switching": "2. 在动态组批配置文件内切换形状",
        "profile_switching": "3. 在一个上下文中切换配置文件，与每个配置文件一个上下文",
        "runner_activation": "5. TrtRunner 激活 + 停用",
        "stats_header": ["模型", "变体", "中位数", "p90", "p99", "相对第一行"],
        "switch_sentence": "{model}：每次切换{what}耗时 {cost} us。",
        "shape": "形状",
        "profile": "配置文件",
        "activation_sentence": "{model}：自行创建上下文的 runner 耗时"
        "为使用已持有上下文的 {ratio}。",
        "memory": "4. GPU 内存，MiB",
        "memory_header": [
            "模型",
            "每个上下文（TensorRT 报告）",
            "每个上下文（空闲内存减少量）",
            "引擎（空闲内存减少量）",
            "plan 文件",
        ],
        "convenience": "6. 服务路径及其下限，{model}",
        "convenience_note": "每个请求的中位数微秒数；括号内为相对同类内存下限的比值："
        f"主机数组对 `{FLOOR}`，GPU 数组对 `{GPU_FLOOR}`。短横线：该批大小未测量（原因见注）。",
        "through_infer": "经由 `infer` 和 `TrtRunner.infer`",
        "capturing": "为其形状捕获图的请求（`pageable, CUDA graph`，在 free_graphs() 及 "
        "graphs_after={after} 随后要求的照旧服务的请求之后），与重放相比：{batches}。",
        "capturing_batch": "批大小 {batch}，中位数 {median} us，p99 {p99} us，为重放中位数的 "
        "{ratio}（{count} 次中 {captured} 次捕获）",
        "prepared_and_floors": "预备请求（prepared request）与裸循环",
        "infer_profile": "批大小 1 时 `infer` 的时间花在哪里：cProfile 下每个函数每个请求的自身"
        "时间（cProfile 本身的开销会抬高每个数字）；耗时最多的函数",
        "infer_profile_header": ["路径", "函数", "每个请求的微秒数", "每个请求的调用次数"],
        "batch": "批大小",
        "contexts": "7. 每个配置文件多个上下文：{threads} 个线程的每秒请求数（相对 1 个上下文）",
        "model_batch": "模型，批大小",
        "checked": "{model}：每条路径的输出都与 ONNX Runtime 对照（{how}）；"
        "最大差异 {difference}。",
        "notes": "运行给出的说明",
        "stress": "负载与生命周期（stress.py）",
        "stress_header": [
            "文件",
            "进程 x 线程",
            "内存",
            "MPS",
            "请求/秒",
            "图像/秒",
            "infer() 内 us",
            "校验 us",
            "占用 CPU 核数",
            "错误",
            "GPU MiB",
            "主机 MiB",
        ],
        "lifecycle_header": [
            "文件",
            "dispatcher：GPU MiB",
            "预备请求：GPU MiB",
            "TrtRunner 激活：GPU MiB",
            "用 Polygraphy 的 deactivate()：GPU MiB",
        ],
        "stress_note": "GPU MiB 与主机 MiB：预热之后，负载期间 GPU 已用内存与进程常驻内存的变化。",
        "triton": "Triton（loadgen.py 对 serve.py）",
        "triton_header": [
            "客户端",
            "请求/秒",
            "图像/秒",
            "p50",
            "p90",
            "p99",
            "每次执行的请求数",
            "服务端",
            "排队",
            "计算：输入",
            "计算：推理",
            "计算：输出",
            "错误",
            "GPU MiB",
            "服务端 MiB",
        ],
        "triton_note": "延迟与服务端的时间划分单位为每个请求的微秒数；GPU MiB 与服务端 MiB："
        "每一级负载期间的变化（服务端 MiB 需 --server-pid）。",
        "pairs": "动态组批器开与关",
        "pairs_header": [
            "配置",
            "客户端",
            "开：请求/秒",
            "关：请求/秒",
            "开 / 关",
            "开：p99",
            "关：p99",
        ],
        "routing": "两种路由规则的比较（benchmark.py --shapes）",
        "routing_note": "每种形状分别按两种规则经 dispatcher 服务（精简路径，可分页数组），"
        "每个请求的中位数微秒数；以及每种规则选中的配置文件（p1+p1：批被拆成两份）；"
        "最后一列为第二种规则的延迟与第一种之比（大于 1：第一种更快）。",
        "routing_profiles_header": ["配置文件", "min", "opt", "max"],
        "shapes": "形状",
        "count": "次数",
        "median": "中位数",
        "routing_overall": "按每种形状的次数加权，共 {requests} 个请求："
        "{baseline} {baseline_us} us，{other} {other_us} us；{faster} 更快，快 {ratio}。"
        "{differ} 种形状两种规则路由不同。",
        "checked_routing": "每种形状在两种规则下的输出都与 ONNX Runtime 对照；"
        "最大差异 {difference}。",
        "planning": "根据工作负载规划的配置文件（plan_profiles.py）",
        "planning_note": "每组候选配置文件构建成一个引擎，工作负载经 dispatcher 在其上重放："
        "平均、p50 与 p99 延迟（微秒），每种形状按其次数加权；吞吐量为每秒请求数；"
        "上下文内存（MiB）与引擎构建时间（秒）；vs wide 与 vs given：该候选的平均延迟"
        "与本行之比（大于 1：本行更快）。",
        "plan_workload": "工作负载：{workload}。由 {threads} 个线程在 {warmup} 个预热请求之后重放；"
        "每种不同形状的输出都与 ONNX Runtime 对照（{checked}）；最大差异 {difference}。",
        "plan_header": [
            "名次",
            "候选",
            "角色",
            "配置文件数",
            "平均",
            "p50",
            "p99",
            "请求/秒",
            "上下文 MiB",
            "构建 s",
        ],
        "roles": {"planned": "规划", "wide": "宽", "given": "给定"},
        "plan_by_profile": "每个候选相对宽配置文件的得失：其请求按 dispatcher 路由到的配置文件"
        "分组，以及它们在该处与在宽配置文件上的平均延迟（微秒）（vs wide 大于 1：该配置文件"
        "服务得更快）。",
        "plan_by_profile_header": [
            "候选",
            "配置文件",
            "请求数",
            "请求占比 %",
            "平均",
            "宽配置文件上的平均",
            "vs wide",
        ],
        "plan_split": "拆分到多个配置文件",
        "plan_profile_gains": "每个规划组合的各配置文件在其所服务的请求上：为宽配置文件速度的 "
        "{low} 至 {high}",
        "plan_best": "最佳的 {name}，以 Polygraphy 选项表示：",
        "backends_title": "Triton 的两种后端并列比较（loadgen.py 对 serve.py）",
        "backends_note": "同一台机器上，相同的客户端经 gRPC 发送相同的请求。"
        "延迟与服务端的时间划分（排队；计算：输入、推理与输出）单位为每个请求的微秒数。",
        "backends": {"python": "Python", "tensorrt": "TensorRT"},
        "backends_batch_one": "批大小为 1 的请求。vs serve.py：每秒请求数与 `python3 serve.py` "
        "默认启动的 Python 后端在相同客户端数下之比；vs Python 最佳：与 64 个客户端时每秒"
        "请求数最多的 Python 后端配置（{best}）之比。",
        "backends_header": [
            "客户端",
            "后端",
            "文件",
            "服务端",
            "请求/秒",
            "p50",
            "p90",
            "p99",
            "每次执行的请求数",
            "排队",
            "计算",
            "vs serve.py",
            "vs Python 最佳",
        ],
        "backends_fastest": "{clients} 个客户端时每秒请求数最多的是 {file}（{server}）："
        "每秒 {requests} 个请求，p99 {p99} us。",
        "backends_mixed": "混合批大小（1 到 300）：图像/秒只计已服务请求的图像；"
        "拒绝或失败为 loadgen.py 的错误数，在 TensorRT 后端上即服务端拒绝的、"
        "没有任何列出的配置文件接受的批。最后一列：图像/秒与 Python 后端之比。",
        "mixed_header": [
            "后端",
            "文件",
            "服务端",
            "客户端",
            "请求/秒",
            "图像/秒",
            "拒绝或失败",
            "p50",
            "p99",
            "每次执行的请求数",
            "图像/秒 vs Python",
        ],
        "example": "示例的输出",
        "inspect": "polygraphy inspect model",
        "suite": "该机器上的测试套件",
        "runs_of": "{count} 次运行，{errors} 个错误",
        "targets_note": "与下限之比为全部轮次中位数之比；括号内（若记录了各轮）为各轮之比的最低"
        "与最高值。",
        "infer_worst": "差距最大的是 {model}、批大小 {batch}：",
        "pageable_worst": "{variant}：",
        "infer_work": "预备请求（同样的拷贝与推理，但没有 infer() 每个请求的工作）为 "
        "{prepared}{beside}",
        "infer_rest": "，其余部分即 infer() 自身的工作再增加 {added} us，而目标只在下限之上留出 "
        "{left} us",
        "parts_over": "：合计为下限的 {ratio}，在 infer() 自身的工作之前已超过目标，后者再增加 "
        "{added} us",
        "infer_beside": "，{part} {ratio}",
        "stress_apart": "{file} 不是在同一天测量的：请两者都重新运行",
        "stress_page_locked": "同样的负载改用页锁定数组、没有暂存拷贝时：每秒 {rate} 张图像"
        "（为 stress.json 的 {ratio}）",
        "stress_differ": "{file} 不是同样的负载（{settings} 不同）：请两者都重新运行",
        "stress_errors": "{errors} 个错误或失败的响应",
        "growth": "{loads} 次负载中最多：GPU {gpu} MiB，主机 {host} MiB",
    },
}

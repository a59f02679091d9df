"""Sections 1 to 5: the walkthrough's trade-offs, each measured on bare loops or runners (narrow
vs wide profiles, shape switching, profile switching, memory, runner activation)."""

from functools import partial

from dynamic_shapes.engines import context_memory_size, create_contexts
from dynamic_shapes.gpu import device_memory
from dynamic_shapes.measure.bare_loop import BareLoop
from dynamic_shapes.measure.engines import Engines, close_all
from dynamic_shapes.measure.timing import interleave
from dynamic_shapes.serving.planning import choose_profile

WIDE_RANGE = (1, 4, 128)  # min, opt, max batch of the single wide profile


def measure_narrow_vs_wide(engines, reference, settings, progress) -> dict:
    accepted = engines.accepted
    narrow = engines.bare_loops(engines.narrow, pinned=True)
    (wide,) = engines.bare_loops(engines.wide, pinned=True)
    by_batch, notes = {}, []
    try:
        for batch in settings.narrow_vs_wide_batches:
            index = choose_profile(batch, engines.ranges)
            if index is None or not WIDE_RANGE[0] <= batch <= WIDE_RANGE[2]:
                notes.append(
                    f"batch {batch} left out: the narrow profiles accept {accepted}, the wide "
                    f"one {WIDE_RANGE[0]}..{WIDE_RANGE[2]}, and both must accept it"
                )
                continue
            variants = {
                "three narrow profiles": partial(narrow[index].run, batch),
                "one wide profile (1..128)": partial(wide.run, batch),
            }
            by_batch[batch] = interleave(variants, settings, progress, f"1. batch {batch}")
            reference.check_loop("three narrow profiles", narrow[index], batch)
            reference.check_loop("one wide profile", wide, batch)
    finally:
        close_all([*narrow, wide])
    return {"by_batch": by_batch, "notes": notes}


def measure_shape_switching(engines, reference, settings, progress) -> dict:
    loops = engines.bare_loops(engines.narrow, pinned=True)
    dynamic = loops[1]  # the dynamic-batching profile
    low, high = engines.ranges[1]
    small, large = f"fixed batch {low}", f"fixed batch {high}"
    variants = {
        small: lambda: dynamic.run(low),
        large: lambda: dynamic.run(high),
        f"alternating {low} and {high} (two requests)": lambda: (
            dynamic.run(low),
            dynamic.run(high),
        ),
    }
    try:
        stats = interleave(variants, settings, progress, "2. shape switching")
        for batch in (low, high):
            reference.check_loop("dynamic-batching profile", dynamic, batch)
    finally:
        close_all(loops)
    alternating = list(stats.values())[2]["median_us"]
    cost = (alternating - stats[small]["median_us"] - stats[large]["median_us"]) / 2
    return {"stats": stats, "baseline": small, "cost_per_switch_us": cost}


def measure_profile_switching(engines, reference, settings, progress) -> dict:
    (low_latency, _), _, (offline, _) = engines.ranges
    dedicated = engines.bare_loops(engines.narrow, pinned=True)
    # One context of another engine copy, switching between the two profiles per request.
    (context,) = create_contexts(Engines.load(engines.narrow), 1)
    switching = BareLoop(context, 2, engines.spec, offline, pinned=True)

    def switch_and_run():
        switching.select_profile(0)
        switching.run(low_latency)
        switching.select_profile(2)
        switching.run(offline)

    variants = {
        "one context per profile": lambda: (
            dedicated[0].run(low_latency),
            dedicated[2].run(offline),
        ),
        "one context, switching profiles": switch_and_run,
    }
    try:
        stats = interleave(variants, settings, progress, "3. profile switching")
        reference.check_loop("low-latency context", dedicated[0], low_latency)
        reference.check_loop("offline context", dedicated[2], offline)
        switching.select_profile(0)
        reference.check_loop("switching context, low latency", switching, low_latency)
        switching.select_profile(2)
        reference.check_loop("switching context, offline", switching, offline)
    finally:
        close_all([*dedicated, switching])
    medians = [s["median_us"] for s in stats.values()]
    return {
        "stats": stats,
        "baseline": "one context per profile",
        "cost_per_switch_us": (medians[1] - medians[0]) / 2,
        "ratio": medians[1] / medians[0],
    }


def measure_memory(engines, reference, settings, progress) -> dict:
    progress("4. memory")
    mib = 1024.0**2
    before, _ = device_memory()
    engine = Engines.load(engines.narrow)
    engine_measured = (before - device_memory()[0]) / mib
    contexts, contexts_measured = [], []
    for _ in range(engine.num_optimization_profiles):
        before, _ = device_memory()
        contexts += create_contexts(engine, 1)
        contexts_measured.append((before - device_memory()[0]) / mib)
    reported = context_memory_size(engine)
    return {
        "engine_measured_mib": engine_measured,
        "plan_mib": len(engines.narrow) / mib,
        "contexts_measured_mib": contexts_measured,
        "context_reported_mib": reported / mib,
        "notes": ["TensorRT reports no memory figure for the engine itself"],
    }


def measure_runner_activation(engines, reference, settings, progress) -> dict:
    from polygraphy.backend.trt import TrtRunner

    (context,) = create_contexts(Engines.load(engines.narrow), 1)
    owned = TrtRunner(context)
    creating = TrtRunner(Engines.load(engines.narrow))

    def cycle(runner):
        runner.activate()
        runner.deactivate()

    variants = {
        "over an owned context": lambda: cycle(owned),
        "creating its own context": lambda: cycle(creating),
    }
    stats = interleave(variants, settings, progress, "5. runner activation")
    return {"stats": stats, "baseline": "over an owned context"}

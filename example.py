#!/usr/bin/env python3
"""
Builds one TensorRT engine with three optimization profiles, one per use case, then serves
each use case through its own execution context and TrtRunner.

The profiles are the scenario table in scenario.py:

    use case            min batch   opt batch   max batch
    low latency                 1           1           1
    dynamic batching            1           4          32
    offline                   128         128         128

Writes dynamic_identity.engine; inspect it with: polygraphy inspect model dynamic_identity.engine
"""

import argparse
import sys

from scenario import (
    ENGINE_PATH,
    INPUT_NAME,
    MODEL_PATH,
    OUTPUT_NAME,
    PROFILES,
    GpuStackMissing,
    build_engine,
    check_batch_fits,
    check_identity,
    create_contexts,
    random_images,
    require_gpu_stack,
    save_engine,
)


def infer_and_check(runner, use_case: str, batch_sizes) -> str:
    """Runs each batch size through the runner, checks the identity exactly, and says so."""
    for batch in batch_sizes:
        # TensorRT refuses a shape outside the context's profile; checking first turns its
        # error into one that names the ranges each profile accepts.
        check_batch_fits(use_case, batch)
        images = random_images(batch, seed=batch)
        outputs = runner.infer({INPUT_NAME: images})
        check_identity(images, outputs[OUTPUT_NAME])
    sizes = ", ".join(str(batch) for batch in batch_sizes)
    return f"batch {sizes}: {OUTPUT_NAME} == {INPUT_NAME} exactly"


def main() -> int:
    argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    ).parse_args()
    try:
        require_gpu_stack()
    except GpuStackMissing as missing:
        for problem in str(missing).splitlines():
            print(f"example.py: {problem}", file=sys.stderr)
        return 1

    # TrtRunner is imported only now: everything above must work without TensorRT.
    from polygraphy.backend.trt import TrtRunner

    if not MODEL_PATH.exists():
        import build_model

        build_model.main(["--output", str(MODEL_PATH)])

    # Step 1: one engine holding all three profiles (PROFILES, the scenario table above).
    # Polygraphy logs the profiles it configures, then how long the build took.
    engine = build_engine(MODEL_PATH, PROFILES)

    # Save it so that `polygraphy inspect model dynamic_identity.engine` can show the profiles.
    # NOTE: save_engine() writes to a temporary file and renames it: an interrupted run never
    # leaves a truncated engine behind.
    save_engine(engine, ENGINE_PATH)
    print(f"Saved {ENGINE_PATH.name} with {engine.num_optimization_profiles} profiles")

    # Step 2: one execution context per profile, owned by this script, each wrapped in a runner.
    #
    # TIP: Handing a runner a context (rather than the engine, or a loader) means the runner does
    # not own it: activating the runner only allocates input and output buffers, and the
    # context, with the profile it was given, outlives each activation.
    low_latency_context, dynamic_batching_context, offline_context = create_contexts(
        engine, len(PROFILES)
    )
    # A fresh context uses profile 0, so the low-latency runner needs no profile set.
    low_latency = TrtRunner(low_latency_context)
    # `optimization_profile` sets the profile at every activation: the simplest choice when the
    # runner always serves one profile, and the only one that also works for a runner that
    # creates (and so re-creates) its own context.
    dynamic_batching = TrtRunner(dynamic_batching_context, optimization_profile=1)
    # Without it, set_profile() picks the profile once the runner is active: use it to switch a
    # context between profiles at run time, or, as here, to set an owned context's profile once.
    offline = TrtRunner(offline_context)

    # Step 3: serve each use case. Random images, and every output compared bit for bit.
    with low_latency:
        print(f"low latency      (profile 0): {infer_and_check(low_latency, 'low latency', [1])}")

        # Dynamic batching can come up just in time while the low-latency runner stays active:
        # activation is cheap because the context already exists.
        with dynamic_batching:
            # Any batch size in the profile's range works: 1 (min), 4 (opt), 13, 32 (max).
            # The runner sets the context's input shape only when it changes.
            result = infer_and_check(dynamic_batching, "dynamic batching", [1, 4, 13, 32])
            print(f"dynamic batching (profile 1): {result}")

    with offline:
        offline.set_profile(2)
        print(f"offline          (profile 2): {infer_and_check(offline, 'offline', [128])}")

    # Activated again, the offline runner needs no set_profile(): its context kept profile 2.
    with offline:
        result = infer_and_check(offline, "offline", [128])
        print(f"offline again    (profile 2, kept by its context): {result}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

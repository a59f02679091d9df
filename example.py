#!/usr/bin/env python3
"""
Builds one TensorRT engine with three optimization profiles, one per use case, then serves
each use case through its own execution context and TrtRunner.

The profiles are the scenario table in scenario.py (batch sizes; each image is 3x28x28):

    use case            min batch   opt batch   max batch
    low latency                 1           1           1
    dynamic batching            1           4          32
    offline                   128         128         128

Writes dynamic_identity.engine; inspect it with: polygraphy inspect model dynamic_identity.engine
"""

import sys

from build_model import ensure_model
from dynamic_shapes import cli, options
from dynamic_shapes.engines import create_contexts, load_or_build_engine
from dynamic_shapes.gpu import installed_polygraphy_problem, require_gpu_stack
from scenario import (
    ENGINE_PATH,
    INPUT_NAME,
    MODEL_INPUT,
    MODEL_PATH,
    OUTPUT_NAME,
    PROFILES,
    check_batch_fits,
    check_identity,
    check_model_fits_profiles,
    random_images,
)


def main(argv=None) -> int:
    return cli.main(parse_args, run, argv)


def run(args) -> None:
    ensure_model(args.model)
    # Checked first: a model that does not fit the profiles fails the same on any machine.
    check_model_fits_profiles(args.model)
    require_gpu_stack()

    # Plain log lines, without Polygraphy's notice about the optional 'colored' package.
    from polygraphy.logger import G_LOGGER

    G_LOGGER.colors = False

    # Step 1: one engine holding all three profiles (PROFILES, the scenario table above).
    # Building takes a while for a real model, so a saved engine is reused when it was
    # built from the same model bytes and profiles, by this TensorRT, for this GPU model.
    # Otherwise Polygraphy builds one, logging the profiles it configures, and it is saved
    # (atomically, with a record of all that beside it) for the next run and for
    # `polygraphy inspect model dynamic_identity.engine`.
    engine, how = load_or_build_engine(args.model, args.engine, PROFILES, args.rebuild)
    print(f"{how}; it has {engine.num_optimization_profiles} profiles")
    # NOTE: `polygraphy inspect model` reads an engine only with a Polygraphy that knows its
    # TensorRT version; a pair known to fail is named now, with the fix.
    problem = installed_polygraphy_problem()
    if problem:
        cli.print_error(args.prog, f"warning: {problem}")

    serve_use_cases(engine)


def serve_use_cases(engine) -> None:
    """One context and one TrtRunner per profile, and each use case served exactly."""
    # TrtRunner is imported only now: everything before it works without TensorRT.
    from polygraphy.backend.trt import TrtRunner

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


def parse_args(argv=None):
    parser = cli.make_parser(__file__, __doc__)
    options.add_model_file(
        parser,
        MODEL_PATH,
        f"an identity model with input {MODEL_INPUT.describe()} (default: %(default)s)",
    )
    options.add_engine(
        parser, ENGINE_PATH, "where to save the engine (default: %(default)s)", built=True
    )
    parser.add_argument(
        "--rebuild", action="store_true", help="build the engine even if the saved one fits"
    )
    args = parser.parse_args(argv)
    options.check_engine(parser, args.engine, args.model)
    return args


if __name__ == "__main__":
    sys.exit(main())

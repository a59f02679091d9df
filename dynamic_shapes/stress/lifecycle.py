"""Lifecycles: dispatchers, prepared requests and TrtRunner activations created, used and freed
many times over, and the GPU memory each leaves behind."""

from dynamic_shapes.engines import create_contexts, deactivate_runner
from dynamic_shapes.serving.engine_io import engine_io
from dynamic_shapes.stress.memory_use import MIB, device_memory_in_use, settled
from dynamic_shapes.tensors import random_batch


def run_lifecycles(engine, args, progress, check) -> dict:
    """Each lifecycle `args` asks for, on the engine's one input and output; `check(inputs,
    outputs)` raises unless the outputs are what the model must return for the inputs."""
    from polygraphy.backend.trt import TrtRunner

    from dynamic_shapes.dispatch import Dispatcher

    inputs, outputs = engine_io(engine)
    spec, (output_name, _) = inputs[0], outputs[0]
    requests = [random_batch(spec, batch, seed=batch) for batch in (1, 77, 128)]

    def dispatcher_lifecycle():
        with Dispatcher(engine) as dispatcher:
            for request in requests:
                check(request, dispatcher.infer(request))

    def device_growth(lifecycle, count, label):
        lifecycle()  # the first one sets up what CUDA and TensorRT keep for the process
        before = settled(device_memory_in_use)
        for done in range(1, count + 1):
            lifecycle()
            if done % max(1, count // 10) == 0:
                progress(f"lifecycle: {label} {done}/{count}")
        return (settled(device_memory_in_use) - before) / MIB

    dispatchers_delta = device_growth(dispatcher_lifecycle, args.dispatchers, "dispatchers")

    with Dispatcher(engine) as dispatcher:

        def prepared_lifecycle():
            for request in requests:
                prepared = dispatcher.prepare(len(request))
                prepared.inputs[spec.name][:] = request
                check(request, prepared.run()[output_name])
                prepared.close()

        prepared_delta = device_growth(prepared_lifecycle, args.prepared, "prepared requests")

    # Only now, with every dispatcher closed: this context takes profile 0.
    (context,) = create_contexts(engine, 1)
    runner, request = TrtRunner(context), requests[0]

    def runner_lifecycle(deactivate):
        runner.activate()
        check(request, runner.infer({spec.name: request})[output_name])
        deactivate(runner)

    return {
        "dispatchers": args.dispatchers,
        "dispatchers_device_mib_delta": dispatchers_delta,
        "prepared": args.prepared,
        "prepared_batches": [len(request) for request in requests],
        "prepared_device_mib_delta": prepared_delta,
        "activations": args.activations,
        "activations_device_mib_delta": device_growth(
            lambda: runner_lifecycle(deactivate_runner), args.activations, "activations"
        ),
        # The same, with Polygraphy's own deactivate(): reported, not checked (see
        # dynamic_shapes.engines.deactivate_runner for why it keeps growing).
        "activations_plain_deactivate_device_mib_delta": device_growth(
            lambda: runner_lifecycle(TrtRunner.deactivate), args.activations, "activations"
        ),
    }

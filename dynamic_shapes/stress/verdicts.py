"""The stress run's verdicts: each check, passed or failed, in a line, and the figures that are
measured and reported but not the project's to pass or fail."""

DEVICE_LEAK_LIMIT_MIB = 1.0
HOST_GROWTH_LIMIT_MIB = 16.0


def verdicts(load, lifecycle) -> list:
    """(passed, line) for each check."""
    device = load["device_mib_after"] - load["device_mib_before"]
    host = load["host_rss_mib_after"] - load["host_rss_mib_before"]
    rate = load["requests_served"] / load["seconds"]
    senders = f"{load['threads']} threads"
    after = load.get("graphs_after")  # absent from runs recorded before the option
    graphs = "" if after is None else f", graphs of a shape after {after} request(s)"
    host_owner = "resident host memory"
    if load["processes"] > 1:
        senders = f"{load['processes']} processes{' under MPS' * load['mps']} x {senders}"
        host_owner = "resident host memory of the process whose memory grew most"
    return [
        (
            load["errors"] == 0,
            f"load: {senders} x {load['requests_per_thread']} requests of batch "
            f"1..{load['max_batch']} ({load['path']} path, {load['memory']} memory, "
            f"{load['contexts_per_profile']} context(s) per profile{graphs}): "
            f"{load['requests_served']} "
            f"served ({load['images_served']} images) in {load['seconds']:.1f} s, {rate:.0f} "
            f"requests/s, {load['images_served'] / load['seconds']:.0f} images/s; per request "
            f"{load['infer_us_per_request']:.0f} us in infer(), "
            f"{load['check_us_per_request']:.0f} us checking; CPU cores busy "
            f"{load['cpu_cores_busy']:.1f} of {load['cpu_cores']}; {load['errors']} errors",
        ),
        (
            abs(device) < DEVICE_LEAK_LIMIT_MIB,
            f"load: GPU memory in use {load['device_mib_before']:.1f} MiB before, "
            f"{load['device_mib_after']:.1f} MiB after ({device:+.1f} MiB)",
        ),
        (
            host <= HOST_GROWTH_LIMIT_MIB,
            f"load: {host_owner} {load['host_rss_mib_before']:.1f} MiB after warm-up, "
            f"{load['host_rss_mib_after']:.1f} MiB after the load ({host:+.1f} MiB)",
        ),
        (
            abs(lifecycle["dispatchers_device_mib_delta"]) < DEVICE_LEAK_LIMIT_MIB,
            f"lifecycle: {lifecycle['dispatchers']} dispatchers created, used and closed: GPU "
            f"memory in use {lifecycle['dispatchers_device_mib_delta']:+.1f} MiB",
        ),
        (
            abs(lifecycle["prepared_device_mib_delta"]) < DEVICE_LEAK_LIMIT_MIB,
            f"lifecycle: {lifecycle['prepared']} prepared requests of each batch size "
            f"{lifecycle['prepared_batches']} prepared, run and closed: GPU memory in use "
            f"{lifecycle['prepared_device_mib_delta']:+.1f} MiB",
        ),
        (
            abs(lifecycle["activations_device_mib_delta"]) < DEVICE_LEAK_LIMIT_MIB,
            f"lifecycle: {lifecycle['activations']} TrtRunner activations with an inference "
            f"each, deactivated with engines.deactivate_runner(): GPU memory in use "
            f"{lifecycle['activations_device_mib_delta']:+.1f} MiB",
        ),
    ]


def notes(lifecycle) -> list:
    """What is measured and reported, but not the project's to pass or fail."""
    return [
        f"lifecycle: the same {lifecycle['activations']} activations, deactivated with "
        f"Polygraphy's own TrtRunner.deactivate(): GPU memory in use "
        f"{lifecycle['activations_plain_deactivate_device_mib_delta']:+.1f} MiB "
        "(its output buffers are never freed)"
    ]

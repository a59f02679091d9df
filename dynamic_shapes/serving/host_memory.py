"""Whether a request's outputs fit in the host memory available now."""


def available_host_memory() -> int | None:
    """Bytes of host memory available to allocate now (Linux's MemAvailable), or None where
    the system does not say."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


# Outputs smaller than this are allocated without asking the system first: asking costs more
# than a small request takes.
CHECKED_OUTPUT_NBYTES = 256 * 2**20


def check_outputs_fit(batch: int, nbytes: int) -> None:
    """Refuses a request of `batch` items whose outputs, `nbytes` in all, would not fit in the
    host memory available now: a clear error beats an allocation the system kills us for."""
    if nbytes < CHECKED_OUTPUT_NBYTES:
        return
    available = available_host_memory()
    if available is not None and nbytes > available:
        raise MemoryError(
            f"the outputs of a batch of {batch} need {nbytes / 2**30:.1f} GiB of host "
            f"memory, and {available / 2**30:.1f} GiB is available; send it in smaller requests"
        )

"""GPU memory in use and the process's resident host memory, measured once the garbage
collector has freed what it can."""

import gc
import os

from dynamic_shapes.gpu import device_memory

MIB = 1024.0**2


def device_memory_in_use() -> int:
    free, total = device_memory()
    return total - free


def resident_host_memory() -> int:
    """The process's resident set size, from /proc (Linux)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def settled(measure):
    """Measures after the garbage collector has freed what it can."""
    gc.collect()
    return measure()

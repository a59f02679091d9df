"""The benchmark's sections: their names in report order, their default batch sizes, and the
function that measures each."""

from dynamic_shapes.measure.contexts import measure_contexts
from dynamic_shapes.measure.convenience import measure_convenience
from dynamic_shapes.measure.trade_offs import (
    measure_memory,
    measure_narrow_vs_wide,
    measure_profile_switching,
    measure_runner_activation,
    measure_shape_switching,
)

SECTIONS = (
    "narrow_vs_wide",
    "shape_switching",
    "profile_switching",
    "memory",
    "runner_activation",
    "convenience",
    "contexts",
)
NARROW_VS_WIDE_BATCHES = (1, 4, 16, 32, 128)
CONVENIENCE_BATCHES = (1, 4, 32, 128)
CONTEXTS_BATCHES = (4, 128)
LATENCY_SECTIONS = tuple(section for section in SECTIONS if section != "memory")

MEASURE = {
    "narrow_vs_wide": measure_narrow_vs_wide,
    "shape_switching": measure_shape_switching,
    "profile_switching": measure_profile_switching,
    "memory": measure_memory,
    "runner_activation": measure_runner_activation,
    "convenience": measure_convenience,
    "contexts": measure_contexts,
}

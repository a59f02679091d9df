"""Which profile serves a batch, how a batch no profile accepts is split into chunks, and what
the profiles accept, in words.

The splitting rule: take the largest batch size that some profile accepts and that is no
larger than what remains of the request, and repeat until nothing remains. Each chunk then goes
to the profile that choose_profile picks among those that accept its size: routing.py's two
rules, for an engine whose batch alone is dynamic.
"""

import functools


def choose_profile(batch: int, ranges, opts=None) -> int | None:
    """The index of the profile that serves a chunk of `batch` among the (min, max) `ranges`
    that accept it; None if none does. With `opts`, each profile's opt batch size of every
    input, the profile whose opts are nearest (routing.py's "nearest-opt", Triton's rule);
    without, the narrowest range ("narrowest"). Ties go to the lower index."""
    fitting = [index for index, (low, high) in enumerate(ranges) if low <= batch <= high]
    if not fitting:
        return None
    if opts is None:
        return min(fitting, key=lambda i: (ranges[i][1] - ranges[i][0], i))
    return min(fitting, key=lambda i: (sum(abs(batch - opt) for opt in opts[i]), i))


def split_sizes(batch: int, ranges) -> tuple[list, int]:
    """The (start, size) of each chunk of `batch` by the splitting rule above, among `ranges`,
    each profile's (min, max) batch size; and what remains of the batch where no profile takes
    it (0 when the split succeeds)."""
    chunks, start = [], 0
    while start < batch:
        remaining = batch - start
        size = max((min(high, remaining) for low, high in ranges if low <= remaining), default=0)
        if size == 0:
            return chunks, remaining
        chunks.append((start, size))
        start += size
    return chunks, 0


@functools.lru_cache(maxsize=1024)
def plan_chunks(batch: int, ranges: tuple, opts: tuple | None = None) -> tuple:
    """Splits a batch into (profile index, start, size) chunks by the splitting rule above.

    `ranges` holds each profile's (min, max) batch size, in profile-index order; `opts`, where
    given, each profile's opt batch sizes (choose_profile).
    """
    if batch < 1:
        raise ValueError(f"a request needs at least one image, got batch {batch}")
    sizes, remaining = split_sizes(batch, ranges)
    if remaining:
        accepted = ", ".join(f"{low}..{high}" for low, high in ranges)
        raise ValueError(
            f"batch {batch} cannot be split into chunks the profiles accept: {remaining} "
            f"images would remain, and the profiles accept batch sizes {accepted}"
        )
    return tuple((choose_profile(size, ranges, opts), start, size) for start, size in sizes)


def describe_batch_ranges(ranges: dict) -> str:
    """'low latency 1, dynamic batching 1..32, offline 128' for {name: (min, max)}."""
    return ", ".join(
        f"{name} {low}" if low == high else f"{name} {low}..{high}"
        for name, (low, high) in ranges.items()
    )

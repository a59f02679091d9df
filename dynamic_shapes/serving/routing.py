"""Which profile serves a request over every dimension of every input, how a batch no profile
holds is split, how a sequence no profile holds is padded, and the refusal that names what the
profiles accept (docs/serving.md, "Every dimension").

A profile holds a request when every dimension of every input lies in the profile's
[min, max]. Among the profiles that hold a request (or a chunk of it), one of two rules picks:

- "nearest-opt", the dispatcher's default: Triton's TensorRT backend's rule
  (GetMostOptimizedProfile in its src/instance_state.cc): the smallest Manhattan distance
  between the request's shapes and the profile's opt shapes, summed over every dimension of
  every input; ties to the lower index. TensorRT tunes a profile's kernels for its opt, so the
  profile tuned nearest the request serves it fastest (docs/serving.md shows the measurement).
- "narrowest": the smallest range box, the product of (max - min + 1) over every dimension of
  every input; ties go to the lower index.

For an engine whose batch alone is dynamic, planning.choose_profile applies the same two rules
to the batch, so both paths of the dispatcher pick the same profile.

A batch no profile holds is split as planning.plan_chunks splits it, among the profiles whose
other dimensions hold the request's: the largest batch one of them accepts that fits in what
remains, again until nothing remains; each chunk then goes to the profile the rule picks.

A request whose other dimensions no profile holds is refused, or, where the model takes an
attention mask and the dispatcher was asked to pad, padded: each dynamic dimension the mask
has is lengthened, in the mask and in every input with the same length there, to the nearest
length a profile holds (the least padding in all; ties to the lower profile index), the mask
marking the padding with zeros.

Nothing here needs TensorRT or a GPU.
"""

import math
from dataclasses import dataclass

from dynamic_shapes.serving.planning import split_sizes

RULES = ("narrowest", "nearest-opt")


@dataclass(frozen=True)
class ProfileRanges:
    """One profile's shapes: each input's (min, opt, max), in the engine's input order."""

    min: tuple
    opt: tuple
    max: tuple

    def holds(self, shapes) -> bool:
        """Whether every dimension of every input in `shapes` lies in this profile's range."""
        return all(
            low <= d <= high
            for lows, shape, highs in zip(self.min, shapes, self.max, strict=True)
            for low, d, high in zip(lows, shape, highs, strict=True)
        )

    def holds_items(self, shapes) -> bool:
        """Whether this profile holds every dimension after the batch (the batch may be split)."""
        return all(
            low <= d <= high
            for lows, shape, highs in zip(self.min, shapes, self.max, strict=True)
            for low, d, high in zip(lows[1:], shape[1:], highs[1:], strict=True)
        )

    @property
    def batch_range(self) -> tuple:
        return self.min[0][0], self.max[0][0]

    @property
    def volume(self) -> int:
        """The number of shapes the profile holds: its range box's size."""
        return math.prod(
            high - low + 1
            for lows, highs in zip(self.min, self.max, strict=True)
            for low, high in zip(lows, highs, strict=True)
        )

    def distance(self, shapes) -> int:
        """The Manhattan distance between `shapes` and this profile's opt shapes."""
        return sum(
            abs(d - o)
            for opts, shape in zip(self.opt, shapes, strict=True)
            for o, d in zip(opts, shape, strict=True)
        )


@dataclass(frozen=True)
class Route:
    """How a request is served: `chunks` of (profile index, start, size) along the batch, and
    `padded`, the shapes it is padded to, or None where it runs as it came."""

    chunks: tuple
    padded: tuple | None = None


def check_rule(rule: str) -> str:
    if rule not in RULES:
        raise ValueError(f"routing must be one of {RULES}, got {rule!r}")
    return rule


def choose(shapes, profiles, rule: str, among=None) -> int | None:
    """The index of the profile `rule` picks among those (of `among`, by default all) that hold
    `shapes`; None where none does."""
    indices = range(len(profiles)) if among is None else among
    holding = [index for index in indices if profiles[index].holds(shapes)]
    if not holding:
        return None
    if rule == "narrowest":
        return min(holding, key=lambda i: (profiles[i].volume, i))
    return min(holding, key=lambda i: (profiles[i].distance(shapes), i))


def with_batch(shapes, batch: int) -> tuple:
    return tuple((batch, *shape[1:]) for shape in shapes)


def plan_route(shapes, profiles, rule: str, names, pad_input=None) -> Route:
    """The Route for a request of `shapes` (each input's shape, in the engine's input order) on
    `profiles` (ProfileRanges, in index order); ValueError naming what the profiles accept
    where none can serve it. `pad_input` names the attention mask where padding is allowed."""
    batch = shapes[0][0]
    if batch < 1:
        raise ValueError(f"a request needs at least one item, got batch {batch}")
    fitting = [i for i, profile in enumerate(profiles) if profile.holds_items(shapes)]
    if fitting:
        return Route(split(shapes, profiles, rule, fitting, names))
    if pad_input is not None:
        for padded in padding_candidates(shapes, profiles, names.index(pad_input)):
            fitting = [i for i, profile in enumerate(profiles) if profile.holds_items(padded)]
            try:
                return Route(split(padded, profiles, rule, fitting, names), padded)
            except ValueError:
                continue  # its batch cannot be split there; try the next padding
    raise ValueError(refusal(shapes, profiles, names, pad_input))


def split(shapes, profiles, rule, fitting, names) -> tuple:
    """The chunks of a request whose dimensions after the batch the profiles `fitting` hold:
    planning.plan_chunks' splitting rule, each chunk on the profile `rule` picks."""
    ranges = [profiles[i].batch_range for i in fitting]
    sizes, remaining = split_sizes(shapes[0][0], ranges)
    if remaining:
        accepted = ", ".join(f"{low}..{high}" for low, high in ranges)
        raise ValueError(
            f"the request {format_shapes(names, shapes)} cannot be split into chunks the "
            f"profiles accept: {remaining} items would remain, and the profiles that hold "
            f"its other dimensions accept batch sizes {accepted}"
        )
    return tuple(
        (choose(with_batch(shapes, size), profiles, rule, fitting), start, size)
        for start, size in sizes
    )


def padding_candidates(shapes, profiles, mask_index) -> list:
    """The shapes `shapes` could be padded to, one per profile that could hold them, least
    padding first: each dynamic dimension of the mask (after the batch), and the same dimension
    of every input of the same length there, lengthened to the profile's min where shorter."""
    mask = shapes[mask_index]
    ranges = {(p.min[mask_index], p.max[mask_index]) for p in profiles}
    dynamic = [  # the mask's dimensions after the batch that some profile lets vary
        axis
        for axis in range(1, len(mask))
        if len({(low[axis], high[axis]) for low, high in ranges}) > 1
        or any(low[axis] != high[axis] for low, high in ranges)
    ]
    candidates = []
    for index, profile in enumerate(profiles):
        padded = [list(shape) for shape in shapes]
        for axis in dynamic:
            together = [
                i
                for i, shape in enumerate(shapes)
                if len(shape) > axis and shape[axis] == mask[axis]
            ]
            length = max(mask[axis], *(profile.min[i][axis] for i in together))
            for i in together:
                padded[i][axis] = length
        padded = tuple(tuple(shape) for shape in padded)
        if padded != tuple(shapes) and profile.holds_items(padded):
            added = sum(math.prod(p) - math.prod(s) for p, s in zip(padded, shapes, strict=True))
            candidates.append((added, index, padded))
    return [padded for _, _, padded in sorted(set(candidates))]


def format_shape(name, shape) -> str:
    """Polygraphy's shape syntax: 'input_ids:[1,16]'."""
    return f"{name}:[{','.join(str(d) for d in shape)}]"


def format_shapes(names, shapes) -> str:
    return " ".join(format_shape(name, shape) for name, shape in zip(names, shapes, strict=True))


def refusal(shapes, profiles, names, pad_input=None) -> str:
    """Why no profile serves `shapes`, and each profile's ranges, per input and dimension, in
    Polygraphy's syntax: what would be accepted."""
    outside = []
    for i, (name, shape) in enumerate(zip(names, shapes, strict=True)):
        for axis in range(1, len(shape)):
            if not any(p.min[i][axis] <= shape[axis] <= p.max[i][axis] for p in profiles):
                outside.append(f"dimension {axis} of {name} ({shape[axis]})")
    where = ", ".join(outside) or "no profile holds every dimension at once"
    accepted = "; ".join(
        f"profile {index}: min {format_shapes(names, p.min)} max {format_shapes(names, p.max)}"
        for index, p in enumerate(profiles)
    )
    padding = (
        f" (padding {pad_input} found no profile either)"
        if pad_input is not None
        else " (or pass pad_with_mask=<the attention mask input> to pad shorter sequences)"
    )
    return (
        f"no profile holds the request {format_shapes(names, shapes)}: {where} lies outside "
        f"every profile's range{padding}. The profiles accept {accepted}"
    )

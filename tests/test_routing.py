"""Routing, splitting, padding and refusal over every dimension (serving/routing.py and
serving/padding.py), the request checks of engines with dynamic dimensions beyond the batch,
and what the dispatcher hands a recorder: none of it needs a GPU.

The edges: every combination of min - 1, min, max and max + 1 of every dimension of every
profile is routed by both rules, and each answer is checked against the rules as the docs
state them, recomputed here by brute force."""

import itertools
import math

import numpy as np
import pytest

from dynamic_shapes.planner.recorder import WorkloadRecorder
from dynamic_shapes.planner.workloads import read_workload
from dynamic_shapes.profiles import profile_shapes, profiles_from_command_line
from dynamic_shapes.serving.padding import cut, output_cuts, pad, padded_lengths
from dynamic_shapes.serving.planning import choose_profile, plan_chunks
from dynamic_shapes.serving.request_checks import check_shaped_request, request_shapes
from dynamic_shapes.serving.routing import RULES, ProfileRanges, plan_route, refusal
from dynamic_shapes.tensors import TensorSpec
from scenario import (
    ATTENTION_MASK_NAME,
    BATCH_SIZES,
    TOKEN_IDS_NAME,
    TRANSFORMER_PROFILE_OPTIONS,
)

NAMES = [TOKEN_IDS_NAME, ATTENTION_MASK_NAME]


def ranges_of(options: str, names) -> tuple:
    """ProfileRanges from Polygraphy's options, as the dispatcher reads them from an engine."""
    profiles = []
    for shapes in profile_shapes(profiles_from_command_line(options)):
        per_input = [shapes[name] for name in names]
        profiles.append(ProfileRanges(*(tuple(kind) for kind in zip(*per_input, strict=True))))
    return tuple(profiles)


TRANSFORMER = ranges_of(TRANSFORMER_PROFILE_OPTIONS, NAMES)
# Two profiles where the rules disagree: a wide one tuned for short single requests, and a
# narrow one tuned for batches of 8 sequences of 256.
OVERLAPPING = ranges_of(
    "--trt-min-shapes input_ids:[1,1] attention_mask:[1,1] "
    "--trt-opt-shapes input_ids:[1,16] attention_mask:[1,16] "
    "--trt-max-shapes input_ids:[16,512] attention_mask:[16,512] "
    "--trt-min-shapes input_ids:[1,1] attention_mask:[1,1] "
    "--trt-opt-shapes input_ids:[8,256] attention_mask:[8,256] "
    "--trt-max-shapes input_ids:[8,256] attention_mask:[8,256]",
    NAMES,
)
# A detector's images, three dynamic dimensions: batch, height and width (one input).
IMAGES = ranges_of(
    "--trt-min-shapes images:[1,3,224,224] --trt-opt-shapes images:[1,3,224,224] "
    "--trt-max-shapes images:[1,3,224,224] "
    "--trt-min-shapes images:[1,3,128,128] --trt-opt-shapes images:[4,3,480,640] "
    "--trt-max-shapes images:[16,3,720,1280] "
    "--trt-min-shapes images:[1,3,480,480] --trt-opt-shapes images:[8,3,640,640] "
    "--trt-max-shapes images:[8,3,640,640]",
    ["images"],
)
CASES = {"transformer": (TRANSFORMER, NAMES), "overlapping": (OVERLAPPING, NAMES)}
CASES["images"] = (IMAGES, ["images"])


def holds(profile, shapes) -> bool:
    return all(
        low <= d <= high
        for lows, shape, highs in zip(profile.min, shapes, profile.max, strict=True)
        for low, d, high in zip(lows, shape, highs, strict=True)
    )


def best(shapes, profiles, rule, among) -> int:
    """The rule as docs/serving.md states it, by brute force."""

    def distance(profile):
        return sum(
            abs(d - o) for opt, shape in zip(profile.opt, shapes, strict=True)
            for d, o in zip(shape, opt, strict=True)
        )  # fmt: skip

    def box(profile):
        sizes = [h - lo + 1 for lows, highs in zip(profile.min, profile.max, strict=True)
                 for lo, h in zip(lows, highs, strict=True)]  # fmt: skip
        return math.prod(sizes)

    holding = [i for i in among if holds(profiles[i], shapes)]
    if rule == "narrowest":
        return min(holding, key=lambda i: (box(profiles[i]), distance(profiles[i]), i))
    return min(holding, key=lambda i: (distance(profiles[i]), i))


def edge_requests(profiles, names) -> list:
    """Every combination of min - 1, min, max and max + 1 of every dimension of every profile
    (inputs that share a dimension, as the transformer's do, given the same size)."""
    values = [
        sorted({v for p in profiles for v in (p.min[0][axis] - 1, p.min[0][axis],
                                              p.max[0][axis], p.max[0][axis] + 1) if v >= 1})
        for axis in range(len(profiles[0].min[0]))
    ]  # fmt: skip
    return [tuple(dims for _ in names) for dims in itertools.product(*values)]


def item_holders(shapes, profiles) -> list:
    return [
        i
        for i, p in enumerate(profiles)
        if all(
            lo <= d <= h
            for lows, shape, highs in zip(p.min, shapes, p.max, strict=True)
            for lo, d, h in zip(lows[1:], shape[1:], highs[1:], strict=True)
        )
    ]


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("rule", RULES)
def test_every_edge_is_routed_split_or_refused_by_the_rules(case, rule):
    profiles, names = CASES[case]
    requests = edge_requests(profiles, names)
    assert len(requests) > 20
    for shapes in requests:
        fitting = item_holders(shapes, profiles)
        if not fitting:
            with pytest.raises(ValueError, match="no profile holds the request"):
                plan_route(shapes, profiles, rule, names)
            continue
        route = plan_route(shapes, profiles, rule, names)
        assert route.padded is None
        start = 0
        for index, chunk_start, size in route.chunks:
            chunk = tuple((size, *shape[1:]) for shape in shapes)
            assert chunk_start == start, shapes
            assert holds(profiles[index], chunk), (shapes, index, size)
            assert index == best(chunk, profiles, rule, fitting), (shapes, size)
            start += size
        assert start == shapes[0][0], shapes  # the batch, exactly once


@pytest.mark.parametrize(
    ("shapes", "rule", "profile"),
    [
        ((1, 16), "narrowest", 0),
        ((1, 64), "narrowest", 0),
        ((1, 65), "narrowest", 1),
        ((2, 1), "narrowest", 1),
        ((32, 512), "narrowest", 2),
        ((32, 512), "nearest-opt", 2),
        ((1, 64), "nearest-opt", 0),
        ((8, 128), "nearest-opt", 1),
    ],
)
def test_transformer_requests_go_to_the_profile_the_rule_picks(shapes, rule, profile):
    route = plan_route((shapes, shapes), TRANSFORMER, rule, NAMES)
    assert route.chunks == ((profile, 0, shapes[0]),)


def test_the_rules_disagree_where_a_narrow_profile_lies_far_from_the_request():
    shapes = ((1, 20), (1, 20))
    assert plan_route(shapes, OVERLAPPING, "narrowest", NAMES).chunks == ((1, 0, 1),)
    assert plan_route(shapes, OVERLAPPING, "nearest-opt", NAMES).chunks == ((0, 0, 1),)


def test_a_batch_no_profile_holds_is_split_along_the_batch():
    shapes = ((70, 300), (70, 300))  # sequence 300: profile 1 alone holds it, batches to 32
    route = plan_route(shapes, TRANSFORMER, "narrowest", NAMES)
    assert route.chunks == ((1, 0, 32), (1, 32, 32), (1, 64, 6))
    # At sequence 512, profile 2 (32 x 512 alone) takes the full chunks, the narrowest.
    route = plan_route(((70, 512), (70, 512)), TRANSFORMER, "narrowest", NAMES)
    assert route.chunks == ((2, 0, 32), (2, 32, 32), (1, 64, 6))


@pytest.mark.parametrize("rule", RULES)
def test_a_batch_only_engine_is_split_and_routed_as_plan_chunks_does(rule):
    # Overlapping ranges with opts inside them, where the two rules part; and the scenario's.
    for table in (((1, 8, 1), (4, 64, 48), (1, 128, 100), (32, 32, 32)),
                  tuple(BATCH_SIZES.values())):  # fmt: skip
        ranges = tuple((low, high) for low, _, high in table)
        profiles = tuple(
            ProfileRanges(((low, 3),), ((opt, 3),), ((high, 3),)) for low, opt, high in table
        )
        opts = tuple((opt,) for _, opt, _ in table) if rule == "nearest-opt" else None
        for batch in range(1, 300):
            route = plan_route(((batch, 3),), profiles, rule, ["X"])
            assert route.chunks == plan_chunks(batch, ranges, opts), (table, batch)
            first = route.chunks[0]
            assert first[0] == choose_profile(first[2], ranges, opts), (table, batch)


def test_on_the_scenarios_profiles_the_rules_choose_alike():
    table = tuple(BATCH_SIZES.values())
    ranges, opts = tuple((low, high) for low, _, high in table), tuple((o,) for _, o, _ in table)
    for batch in range(1, 129):
        assert choose_profile(batch, ranges) == choose_profile(batch, ranges, opts), batch


def test_narrowest_breaks_ties_by_index_as_choose_profile_does_wherever_the_opts_lie():
    # Equal widths: batch 6 lies in both, nearer profile 1's opt; both pickers take profile 0.
    ranges = ((1, 8), (5, 12))
    profiles = tuple(
        ProfileRanges(((low, 3),), ((opt, 3),), ((high, 3),))
        for (low, high), opt in zip(ranges, (1, 6), strict=True)
    )
    for batch in range(1, 13):
        route = plan_route(((batch, 3),), profiles, "narrowest", ["X"])
        assert route.chunks[0][0] == choose_profile(batch, ranges), batch
    assert plan_route(((6, 3),), profiles, "nearest-opt", ["X"]).chunks[0][0] == 1


def test_a_sequence_no_profile_holds_is_refused_with_the_ranges_in_polygraphy_syntax():
    shapes = ((2, 600), (2, 600))
    with pytest.raises(ValueError) as raised:
        plan_route(shapes, TRANSFORMER, "narrowest", NAMES)
    message = str(raised.value)
    assert "input_ids:[2,600] attention_mask:[2,600]" in message
    assert "dimension 1 of input_ids (600)" in message
    for index, kind, shape in [
        (0, "max", "[1,64]"),
        (1, "max", "[32,512]"),
        (2, "min", "[32,512]"),
    ]:
        assert f"input_ids:{shape}" in message and f"profile {index}:" in message, kind
    assert "pad_with_mask" in message  # what else would serve it


def test_dimensions_each_held_but_not_by_one_profile_are_refused():
    small = ProfileRanges(((1, 3, 100, 100),), ((1, 3, 150, 150),), ((4, 3, 200, 200),))
    large = ProfileRanges(((1, 3, 300, 300),), ((1, 3, 350, 350),), ((4, 3, 400, 400),))
    with pytest.raises(ValueError, match="no profile holds every dimension at once"):
        plan_route(((1, 3, 150, 350),), (small, large), "narrowest", ["images"])


@pytest.mark.parametrize("rule", RULES)
def test_padding_never_serves_what_no_profile_reaches(rule):
    shapes = ((2, 600), (2, 600))  # longer than every profile's max sequence, 512
    with pytest.raises(ValueError, match="padding attention_mask found no profile either"):
        plan_route(shapes, TRANSFORMER, rule, NAMES, pad_input=ATTENTION_MASK_NAME)


# Profiles with a gap between their sequence lengths, as people bucket them: 1..64, 128..256
# and 512, each for up to 8 sequences.
BUCKETS = ranges_of(
    " ".join(
        f"--trt-min-shapes input_ids:[1,{low}] attention_mask:[1,{low}] "
        f"--trt-opt-shapes input_ids:[4,{high}] attention_mask:[4,{high}] "
        f"--trt-max-shapes input_ids:[8,{high}] attention_mask:[8,{high}]"
        for low, high in [(1, 64), (128, 256), (512, 512)]
    ),
    NAMES,
)


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize(
    ("sequence", "padded_to", "profile"),
    [(64, None, 0), (65, 128, 1), (127, 128, 1), (128, None, 1), (256, None, 1), (257, 512, 2),
     (511, 512, 2), (512, None, 2)],
)  # fmt: skip
def test_a_sequence_between_buckets_is_padded_to_the_nearest_profile_that_holds_it(
    rule, sequence, padded_to, profile
):
    shapes = ((3, sequence), (3, sequence))
    route = plan_route(shapes, BUCKETS, rule, NAMES, pad_input=ATTENTION_MASK_NAME)
    if padded_to is None:
        assert route.padded is None
    else:
        assert route.padded == ((3, padded_to), (3, padded_to))
        with pytest.raises(ValueError, match=f"dimension 1 of input_ids \\({sequence}\\)"):
            plan_route(shapes, BUCKETS, rule, NAMES)  # refused without padding
    assert route.chunks == ((profile, 0, 3),)


@pytest.mark.parametrize("rule", RULES)
def test_every_edge_of_the_buckets_is_served_padded_or_refused(rule):
    for shapes in edge_requests(BUCKETS, NAMES):
        sequence = shapes[0][1]
        reachable = [p for p in BUCKETS if p.max[0][1] >= sequence]
        if not reachable:
            with pytest.raises(ValueError, match="no profile holds"):
                plan_route(shapes, BUCKETS, rule, NAMES, pad_input=ATTENTION_MASK_NAME)
            continue
        route = plan_route(shapes, BUCKETS, rule, NAMES, pad_input=ATTENTION_MASK_NAME)
        runs_at = route.padded or shapes
        # The least padding: the smallest length some profile holds, no shorter than asked.
        length = min(max(sequence, p.min[0][1]) for p in reachable)
        assert runs_at == ((shapes[0][0], length),) * 2, shapes
        assert sum(size for *_, size in route.chunks) == shapes[0][0]
        for index, _, size in route.chunks:
            assert holds(BUCKETS[index], ((size, length), (size, length))), (shapes, index)


def test_padding_fills_with_zeros_and_the_outputs_are_cut_back():
    tokens = np.arange(1, 7, dtype=np.int32).reshape(2, 3)
    padded = pad(tokens, (2, 5))
    assert padded.tolist() == [[1, 2, 3, 0, 0], [4, 5, 6, 0, 0]]
    assert pad(tokens, (2, 3)) is tokens  # nothing to pad, nothing copied
    lengths = padded_lengths(((2, 3), (2, 3)), ((2, 5), (2, 5)))
    assert lengths == {5: 3}
    # An output [batch, sequence, hidden]: the engine leaves the sequence dynamic, not hidden.
    states = TensorSpec("last_hidden_state", np.dtype(np.float32), (5, 256))
    pooled = TensorSpec("pooled", np.dtype(np.float32), (5,))  # 5 wide whatever the sequence
    engine_shapes = {"last_hidden_state": (-1, -1, 256), "pooled": (-1, 5)}
    assert output_cuts(engine_shapes, [states, pooled], lengths) == [(3, 256), (5,)]
    array = np.arange(2 * 5 * 4).reshape(2, 5, 4)
    assert cut(array, (3, 4)).shape == (2, 3, 4)
    assert np.array_equal(cut(array, (3, 4)), array[:, :3])


SPECS = [
    TensorSpec(TOKEN_IDS_NAME, np.dtype(np.int32), (-1,)),
    TensorSpec(ATTENTION_MASK_NAME, np.dtype(np.int32), (-1,)),
]


def test_a_request_of_any_sequence_length_passes_its_checks():
    request = {name: np.ones((2, 7), np.int32) for name in NAMES}
    tensors = check_shaped_request(request, SPECS)
    assert [t.shape for t in tensors] == [(2, 7), (2, 7)]


def feed(ids_shape, mask_shape, ids_dtype=np.int32) -> dict:
    return {
        TOKEN_IDS_NAME: np.ones(ids_shape, ids_dtype),
        ATTENTION_MASK_NAME: np.ones(mask_shape, np.int32),
    }


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (feed((2, 7), (2, 7), np.int64), r"input_ids int32 \[batch, \?\], got dtype int64"),
        (feed((2, 7, 1), (2, 7)), r"expected input_ids int32 \[batch, \?\], got shape \(2, 7, 1\)"),
        (feed((2, 0), (2, 0)), "every dimension needs at least one item"),
        (feed((2, 7), (3, 7)), "the inputs' batch sizes differ"),
        ({TOKEN_IDS_NAME: np.ones((2, 7), np.int32)}, r"no input \['attention_mask'\]"),
    ],
)  # fmt: skip
def test_a_request_that_does_not_fit_the_inputs_is_refused_in_words(request_, message):
    with pytest.raises(ValueError, match=message):
        check_shaped_request(request_, SPECS)


def test_shapes_are_given_by_name_and_a_batch_alone_only_where_the_rest_is_fixed():
    shapes = {TOKEN_IDS_NAME: [2, 9], ATTENTION_MASK_NAME: (2, 9)}
    assert request_shapes(shapes, SPECS) == ((2, 9), (2, 9))
    with pytest.raises(ValueError, match="a batch size alone does not give the shapes"):
        request_shapes(4, SPECS)
    images = [TensorSpec("X", np.dtype(np.float32), (3, 28, 28))]
    assert request_shapes(4, images) == ((4, 3, 28, 28),)  # today's int form
    for bad, message in [
        (0, "at least one item"),
        ({"X": (4, 3, 28, 29)}, r"expected X float32 \[batch, 3, 28, 28\]"),
        ({"Y": (4, 3, 28, 28)}, r"expected the shapes of inputs \['X'\]"),
        ("4", "expected a batch size or"),
    ]:
        with pytest.raises(ValueError, match=message):
            request_shapes(bad, images)
    with pytest.raises(ValueError, match="the inputs' batch sizes differ"):
        request_shapes({TOKEN_IDS_NAME: (2, 9), ATTENTION_MASK_NAME: (3, 9)}, SPECS)


def test_a_refusal_names_every_profile_in_polygraphy_syntax():
    message = refusal(((1, 600), (1, 600)), TRANSFORMER, NAMES)
    assert (
        "profile 0: min input_ids:[1,1] attention_mask:[1,1] "
        "max input_ids:[1,64] attention_mask:[1,64]"
    ) in message
    assert "profile 2: min input_ids:[32,512] attention_mask:[32,512]" in message


def test_what_the_dispatcher_records_is_what_a_workload_reads_back(tmp_path):
    # The dispatcher hands its recorder each request's {input name: shape}, shapes as the
    # arrays' .shape tuples.
    path = tmp_path / "workload.jsonl"
    with WorkloadRecorder(path, max_bytes=10_000) as recorder:
        for sequence in (16, 16, 300):
            recorder.record({TOKEN_IDS_NAME: (2, sequence), ATTENTION_MASK_NAME: (2, sequence)})
    workload = read_workload(path)
    assert sum(workload.histogram.values()) == 3


def test_on_the_transformers_profiles_the_rules_route_every_shape_alike():
    # Profiles 0 and 1 overlap only at one sequence of up to 64 tokens, where profile 0 is both
    # the narrower and the nearer; profiles 1 and 2 only at 32 x 512, profile 2's one shape.
    # docs/serving.md says so: comparing the rules needs profiles that overlap more.
    for batch in range(1, 33):
        for sequence in range(1, 513):
            shapes = ((batch, sequence), (batch, sequence))
            narrowest = plan_route(shapes, TRANSFORMER, "narrowest", NAMES)
            assert plan_route(shapes, TRANSFORMER, "nearest-opt", NAMES) == narrowest, shapes


def test_two_lengths_padded_to_one_are_refused_as_outputs_could_not_be_cut_back():
    # A [batch, 10, 12] request padded to [batch, 16, 16]: an output of 16 follows either.
    with pytest.raises(ValueError, match="lengths 10 and 12 were both padded to 16"):
        padded_lengths(((2, 10, 12),), ((2, 16, 16),))
    # One length padded in several inputs is one length: served.
    assert padded_lengths(((2, 10), (2, 10)), ((2, 16), (2, 16))) == {16: 10}

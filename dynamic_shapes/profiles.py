"""Optimization profiles over every dimension of every input, in the two forms people write them:
Polygraphy's command-line options and a JSON file. Both read into, and are written from, a list
of Polygraphy `Profile`s, in profile-index order.

Polygraphy's options, as `polygraphy run` and `polygraphy convert` take them: each of
--trt-min-shapes, --trt-opt-shapes and --trt-max-shapes takes `name:[d0,d1,...]` items, and is
given once per profile, the first of each for profile 0, the second for profile 1, and so on:

    --trt-min-shapes input_ids:[1,1] attention_mask:[1,1]
    --trt-opt-shapes input_ids:[8,128] attention_mask:[8,128]
    --trt-max-shapes input_ids:[32,512] attention_mask:[32,512]

They are read by Polygraphy's own functions, so that they mean here what they mean there: an
option a profile leaves out takes the shapes last given (`--trt-min-shapes X:[8]` alone is the
profile min = opt = max = (8,)), and an input a profile leaves out keeps its last shapes.

The file: a list with one object per profile, each input's name to its min, opt and max shapes:

    [
      {"input_ids": {"min": [1, 1], "opt": [8, 128], "max": [32, 512]},
       "attention_mask": {"min": [1, 1], "opt": [8, 128], "max": [32, 512]}}
    ]

Stricter than Polygraphy, whose mistakes surface later, inside TensorRT, or not at all: every
dimension is a positive integer (Polygraphy turns -1 or a name into 1, with a warning), an input
is named once per option, every profile covers the same inputs, and min <= opt <= max in every
dimension. Given a model, every profile covers each of its inputs that has a dynamic dimension,
names no input the model lacks, and keeps the model's rank and fixed sizes.

Nothing here needs TensorRT or a GPU.
"""

import argparse
import json
import re
import shlex
from collections.abc import Mapping
from numbers import Integral
from pathlib import Path

from polygraphy.backend.trt import Profile

from dynamic_shapes.files import write_atomically

MIN_OPTION, OPT_OPTION, MAX_OPTION = "--trt-min-shapes", "--trt-opt-shapes", "--trt-max-shapes"
FILE_OPTION = "--profiles"
KINDS = ("min", "opt", "max")
OPTIONS = dict(zip(KINDS, (MIN_OPTION, OPT_OPTION, MAX_OPTION), strict=True))

# `name:[d0,d1,...]`: the name is everything before the last colon, as Polygraphy reads it.
ITEM = re.compile(r".+:\s*\[[^\[\]]*\]\s*")


def profile_shapes(profiles) -> list:
    """The profiles as plain data, [{input name: (min, opt, max)}] with each shape a tuple of
    ints: what two lists of profiles are compared by (Polygraphy's Profile compares shapes by
    identity). `profiles` is a list of Profiles, or a mapping of names to them."""
    return [
        {
            name: tuple(tuple(int(d) for d in shape) for shape in shapes)
            for name, shapes in p.items()
        }
        for p in as_list(profiles)
    ]


def as_list(profiles) -> list:
    """A list of profiles, from a list or from a mapping of names to profiles (scenario.py's)."""
    return list(profiles.values()) if isinstance(profiles, Mapping) else list(profiles)


def make_profiles(shapes: list) -> list:
    """Polygraphy Profiles for [{input name: (min, opt, max)}]."""
    profiles = []
    for inputs in shapes:
        profile = Profile()
        for name, (low, opt, high) in inputs.items():
            profile.add(name, min=tuple(low), opt=tuple(opt), max=tuple(high))
        profiles.append(profile)
    return profiles


# Polygraphy's options


def profiles_from_options(min_shapes, opt_shapes, max_shapes, model_path=None) -> list:
    """The checked profiles for the values of --trt-min-shapes, --trt-opt-shapes and
    --trt-max-shapes as argparse gathers them (each a list, one item per time the option is
    given, of lists of `name:[d0,d1,...]`); ValueError says what is wrong, and where."""
    from polygraphy.common import TensorMetadata
    from polygraphy.exception import PolygraphyException
    from polygraphy.logger import G_LOGGER
    from polygraphy.tools.args.backend.trt.config import parse_profile_shapes

    given = {"min": min_shapes or [], "opt": opt_shapes or [], "max": max_shapes or []}
    if not any(given.values()):
        raise ValueError(f"no profile given: give {MIN_OPTION}, {OPT_OPTION} and {MAX_OPTION}")
    for kind, occurrences in given.items():
        for index, items in enumerate(occurrences):
            check_option_items(OPTIONS[kind], index, items)

    def parse(count):
        # Polygraphy logs its errors before raising them; the ValueError below says it instead.
        with G_LOGGER.verbosity(G_LOGGER.CRITICAL + 1):
            return parse_profile_shapes(TensorMetadata(), *(v[:count] for v in given.values()))

    try:
        parsed = parse(None)
    except PolygraphyException as error:
        # Polygraphy names no profile: the first that fails is the one.
        count = max(map(len, given.values()))
        index = next(i for i in range(count) if failed(parse, i + 1, PolygraphyException))
        raise ValueError(
            f"profile {index}: {error}; name the same inputs in {MIN_OPTION}, {OPT_OPTION} and "
            f"{MAX_OPTION} (an input first named in a later option has no shapes before it)"
        ) from None
    profiles = make_profiles(
        [{name: tuple(shapes) for name, shapes in profile.items()} for profile in parsed]
    )
    check_profiles(profiles, model_path)
    return profiles


def failed(function, argument, error_type) -> bool:
    try:
        function(argument)
    except error_type:
        return True
    return False


def check_option_items(option, index, items) -> None:
    """Refuses an item that is not `name:[d0,d1,...]` of positive integers, or an input named
    twice in one option, before Polygraphy reads them (it would cast a dimension to a float or a
    string, and turn a non-positive one into 1)."""
    from polygraphy.tools.args.util import parse_meta

    where = f"{option} for profile {index}"
    seen = set()
    for item in items:
        if not ITEM.fullmatch(item):
            raise ValueError(
                f"{where}: {item!r} is not an input's shape; write NAME:[D0,D1,...], "
                f"e.g. input_ids:[8,128]"
            )
        ((name, (_, shape)),) = parse_meta([item], includes_dtype=False).items()
        check_dimensions(shape, f"{where}: {item!r}")
        if name in seen:
            raise ValueError(f"{where}: input {name} is given twice; give each input once")
        seen.add(name)


def check_dimensions(shape, where) -> None:
    for position, size in enumerate(shape):
        if not isinstance(size, Integral) or isinstance(size, bool) or size < 1:
            raise ValueError(
                f"{where}: dimension {position} is {size!r}; every dimension of a profile is "
                "a positive integer"
            )


def profiles_to_options(profiles) -> list:
    """The command-line arguments Polygraphy (and profiles_from_options) read as `profiles`: for
    each profile in order, --trt-min-shapes, --trt-opt-shapes and --trt-max-shapes with every
    input."""
    check_profiles(profiles)
    arguments = []
    for inputs in profile_shapes(profiles):
        for position, kind in enumerate(KINDS):
            items = [f"{name}:[{','.join(map(str, s[position]))}]" for name, s in inputs.items()]
            arguments += [OPTIONS[kind], *items]
    return arguments


def profiles_to_command_line(profiles) -> str:
    """profiles_to_options as one string a shell reads back into the same arguments: the items
    quoted, since an unquoted `[...]` is a pattern some shells expand or refuse."""
    return shlex.join(profiles_to_options(profiles))


def profiles_from_command_line(text: str, model_path=None) -> list:
    """The checked profiles in a string of Polygraphy's options (profiles_to_command_line's, or
    a user's); ValueError for anything else in it, or as profiles_from_options."""
    parser = argparse.ArgumentParser(prog="profiles", add_help=False, allow_abbrev=False)
    add_polygraphy_options(parser)
    arguments, unknown = parser.parse_known_args(shlex.split(text))
    if unknown:
        raise ValueError(
            f"{text!r} holds {shlex.join(unknown)!r}, which is none of {MIN_OPTION}, "
            f"{OPT_OPTION} and {MAX_OPTION} with NAME:[D0,D1,...] items"
        )
    return profiles_from_options(
        arguments.trt_min_shapes, arguments.trt_opt_shapes, arguments.trt_max_shapes, model_path
    )


# The file


def profiles_to_json(profiles) -> str:
    """The profiles as the JSON file holds them: one object per profile, each input on a line."""
    check_profiles(profiles)
    lines = []
    for inputs in profile_shapes(profiles):
        entries = [
            f"    {json.dumps(name)}: "
            + json.dumps({kind: list(shape) for kind, shape in zip(KINDS, shapes, strict=True)})
            for name, shapes in inputs.items()
        ]
        lines.append("  {\n" + ",\n".join(entries) + "\n  }")
    return "[\n" + ",\n".join(lines) + "\n]\n"


def write_profiles_file(path, profiles) -> None:
    write_atomically(path, profiles_to_json(profiles).encode())


def read_profiles_file(path, model_path=None) -> list:
    """The checked profiles in a JSON file; ValueError says what is wrong, and where."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"cannot read the profiles file {path}: {error}") from None
    return profiles_from_json(text, str(path), model_path)


def profiles_from_json(text: str, source: str = "the profiles file", model_path=None) -> list:
    """The checked profiles in JSON text, read from `source` (named in errors)."""

    def refuse_repeats(pairs):
        names = [name for name, _ in pairs]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"{source}: {name!r} is given twice in one object")
        return dict(pairs)

    try:
        data = json.loads(text, object_pairs_hook=refuse_repeats)
    except json.JSONDecodeError as error:
        raise ValueError(f"{source} is not JSON: {error}") from None
    if not isinstance(data, list) or not data:
        raise ValueError(
            f"{source} holds {json_kind(data)}; a list of profiles is needed, one object per "
            'profile: [{"input name": {"min": [...], "opt": [...], "max": [...]}}, ...]'
        )
    shapes = []
    for index, inputs in enumerate(data):
        where = f"{source}, profile {index}"
        if not isinstance(inputs, dict):
            raise ValueError(
                f"{where} is {json_kind(inputs)}; each profile is an object of input names to "
                '{"min": [...], "opt": [...], "max": [...]}'
            )
        shapes.append(
            {name: read_entry(entry, f"{where}, input {name}") for name, entry in inputs.items()}
        )
    profiles = make_profiles(shapes)
    try:
        check_profiles(profiles, model_path)
    except ValueError as error:
        raise ValueError(f"{source}: {error}") from None
    return profiles


def read_entry(entry, where) -> tuple:
    if not isinstance(entry, dict) or set(entry) != set(KINDS):
        found = sorted(entry) if isinstance(entry, dict) else json_kind(entry)
        raise ValueError(
            f'{where}: {found} given; an object of exactly "min", "opt" and "max" is needed, '
            "each a list of dimensions"
        )
    for kind in KINDS:
        if not isinstance(entry[kind], list):
            raise ValueError(
                f"{where}: {kind} is {json_kind(entry[kind])}, not a list of dimensions"
            )
        check_dimensions(entry[kind], f"{where}: {kind} {entry[kind]}")
    return tuple(tuple(entry[kind]) for kind in KINDS)


def json_kind(value) -> str:
    if value == []:
        return "an empty list"
    kinds = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    return "null" if value is None else kinds.get(type(value), "a number")


# The rules


def check_profiles(profiles, model_path=None) -> None:
    """Raises ValueError, naming the profile, input and dimension, unless every profile gives
    every input the same rank in min, opt and max, positive dimensions, min <= opt <= max in each,
    and every profile covers the same inputs; with a model, unless they are the model's inputs
    (every input with a dynamic dimension, perhaps fixed ones too) at its rank and fixed sizes."""
    profiles = as_list(profiles)
    if not profiles:
        raise ValueError("no profile given; an engine needs at least one")
    for index, profile in enumerate(profiles):
        if not profile:
            raise ValueError(f"profile {index} gives no input's shapes")
        if set(profile) != set(profiles[0]):
            raise ValueError(
                f"profile {index} gives shapes for {sorted(profile)} but profile 0 for "
                f"{sorted(profiles[0])}; every profile gives shapes for the same inputs"
            )
        for name, shapes in profile.items():
            check_input_range(index, name, dict(zip(KINDS, shapes, strict=True)))
    if model_path is not None:
        check_profiles_fit_model(profiles, model_path)


def check_input_range(index, name, shapes) -> None:
    where = f"profile {index}, input {name}"
    ranks = {kind: len(shape) for kind, shape in shapes.items()}
    if len(set(ranks.values())) != 1:
        raise ValueError(
            f"{where}: min {list(shapes['min'])} has {ranks['min']} dimensions, opt "
            f"{list(shapes['opt'])} {ranks['opt']}, max {list(shapes['max'])} {ranks['max']}; "
            "min, opt and max have the same rank"
        )
    for kind, shape in shapes.items():
        check_dimensions(shape, f"{where}: {kind} {list(shape)}")
    for position, (low, opt, high) in enumerate(zip(*shapes.values(), strict=True)):
        if not low <= opt <= high:
            raise ValueError(
                f"{where}, dimension {position}: min {low}, opt {opt}, max {high}; a profile "
                f"needs min <= opt <= max in every dimension (min {list(shapes['min'])}, "
                f"opt {list(shapes['opt'])}, max {list(shapes['max'])})"
            )


def check_profiles_fit_model(profiles, model_path) -> None:
    from dynamic_shapes.onnx_inputs import read_input_dimensions

    inputs = read_input_dimensions(model_path)
    dynamic = [name for name, dims in inputs.items() if None in dims]
    for index, profile in enumerate(profiles):
        for name in profile:
            if name not in inputs:
                raise ValueError(
                    f"profile {index} gives shapes for {name}, which {model_path} does not take; "
                    f"its inputs are {list(inputs)}"
                )
        for name in dynamic:
            if name not in profile:
                raise ValueError(
                    f"profile {index} gives no shapes for input {name} of {model_path}, whose "
                    f"dimensions {describe(inputs[name])} are dynamic; every profile gives "
                    "shapes for every input of dynamic dimensions"
                )
        for name, shapes in profile.items():
            for kind, shape in zip(KINDS, shapes, strict=True):
                check_shape_fits(
                    f"profile {index}, input {name}", kind, shape, inputs[name], model_path
                )


def check_shape_fits(where, kind, shape, dims, model_path) -> None:
    if len(shape) != len(dims):
        raise ValueError(
            f"{where}: {kind} {list(shape)} has {len(shape)} dimensions, but {model_path} takes "
            f"{len(dims)}: {describe(dims)}"
        )
    for position, (size, fixed) in enumerate(zip(shape, dims, strict=True)):
        if fixed is not None and size != fixed:
            raise ValueError(
                f"{where}, dimension {position}: {kind} is {size}, but {model_path} fixes it "
                f"at {fixed} ({describe(dims)})"
            )


def describe(dims) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"


# Command-line wiring


def add_polygraphy_options(parser) -> None:
    """Polygraphy's three options, as Polygraphy declares them (each given once per profile)."""
    for kind, words in (
        ("min", "the smallest shapes"),
        ("opt", "the shapes TensorRT tunes its kernels for"),
        ("max", "the largest shapes"),
    ):
        parser.add_argument(
            OPTIONS[kind],
            action="append",
            nargs="+",
            metavar="NAME:[D0,D1,...]",
            help=f"{words} a profile takes, as Polygraphy reads them: once per profile, in order",
        )


def add_profile_options(parser) -> None:
    """Adds --trt-min-shapes, --trt-opt-shapes, --trt-max-shapes and --profiles FILE to a
    script's parser; profiles_from_args reads them."""
    group = parser.add_argument_group(
        "optimization profiles",
        f"give them as Polygraphy does ({MIN_OPTION}, {OPT_OPTION} and {MAX_OPTION}, once per "
        f"profile) or in a JSON file ({FILE_OPTION}), not both",
    )
    add_polygraphy_options(group)
    group.add_argument(
        FILE_OPTION,
        type=Path,
        metavar="FILE",
        help='a JSON list of profiles: [{"input name": {"min": [...], "opt": [...], '
        '"max": [...]}}, ...]',
    )


def profiles_from_args(parser, args, model_path=None) -> list | None:
    """The checked profiles the options of add_profile_options gave, or None where none was
    given. Profiles given both ways, or wrong, end the parse as argparse does (exit code 2),
    with what is wrong."""
    options = [args.trt_min_shapes, args.trt_opt_shapes, args.trt_max_shapes]
    try:
        if args.profiles is not None and any(options):
            raise ValueError(
                f"profiles given both in {FILE_OPTION} and as {MIN_OPTION}, {OPT_OPTION} and "
                f"{MAX_OPTION}; give them one way"
            )
        if args.profiles is not None:
            return read_profiles_file(args.profiles, model_path)
        if any(options):
            return profiles_from_options(*options, model_path=model_path)
        return None
    except ValueError as error:
        parser.error(str(error))

"""Profiles over every dimension, in Polygraphy's options and in a JSON file: reading, writing,
every rule and every error message (CPU only)."""

import argparse
import shlex

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import pytest
from polygraphy.backend.trt import Profile

import build_model
from dynamic_shapes.onnx_inputs import read_input_dimensions
from dynamic_shapes.profiles import (
    add_profile_options,
    check_profiles,
    profile_shapes,
    profiles_from_args,
    profiles_from_command_line,
    profiles_from_json,
    profiles_from_options,
    profiles_to_command_line,
    profiles_to_json,
    profiles_to_options,
    read_profiles_file,
    write_profiles_file,
)
from scenario import MODEL_PATH, PROFILES
from tests.support import TENSORRT_MISSING, run_script, with_imports_failing

# Profiles for the transformer: short sequences one at a time, a range of batches and sequences
# tuned for 8 x 128, and long ones in bulk.
TRANSFORMER_SHAPES = [
    {"input_ids": ((1, 1), (1, 16), (1, 64)), "attention_mask": ((1, 1), (1, 16), (1, 64))},
    {"input_ids": ((1, 1), (8, 128), (32, 256)), "attention_mask": ((1, 1), (8, 128), (32, 256))},
    {"input_ids": ((16, 512),) * 3, "attention_mask": ((16, 512),) * 3},
]
TRANSFORMER_OPTIONS = (
    "--trt-min-shapes input_ids:[1,1] attention_mask:[1,1] "
    "--trt-opt-shapes input_ids:[1,16] attention_mask:[1,16] "
    "--trt-max-shapes input_ids:[1,64] attention_mask:[1,64] "
    "--trt-min-shapes input_ids:[1,1] attention_mask:[1,1] "
    "--trt-opt-shapes input_ids:[8,128] attention_mask:[8,128] "
    "--trt-max-shapes input_ids:[32,256] attention_mask:[32,256] "
    "--trt-min-shapes input_ids:[16,512] attention_mask:[16,512] "
    "--trt-opt-shapes input_ids:[16,512] attention_mask:[16,512] "
    "--trt-max-shapes input_ids:[16,512] attention_mask:[16,512]"
)


def profiles(shapes):
    made = []
    for inputs in shapes:
        profile = Profile()
        for name, (low, opt, high) in inputs.items():
            profile.add(name, min=low, opt=opt, max=high)
        made.append(profile)
    return made


def one_profile(**inputs):
    return profiles([inputs])


@pytest.fixture(scope="module")
def transformer(tmp_path_factory):
    path = tmp_path_factory.mktemp("transformer") / "dynamic_transformer.onnx"
    build_model.write_model("transformer", path)
    return path


def parse_with_polygraphy(text):
    """Polygraphy's own command-line group, as `polygraphy run` and `convert` use it: the
    independent reading of the options."""
    from polygraphy.tools.args import TrtConfigArgs

    group = TrtConfigArgs(allow_custom_input_shapes=False)
    group.register({TrtConfigArgs: group})
    parser = argparse.ArgumentParser()
    group.add_parser_args(parser)
    group.parse(parser.parse_args(shlex.split(text)))
    return [
        {name: tuple(tuple(shape) for shape in shapes) for name, shapes in profile.items()}
        for profile in group.profile_dicts
    ]


# The walkthrough's scenario, one instance


def test_the_scenario_written_as_polygraphy_options_reads_back_as_itself():
    text = profiles_to_command_line(PROFILES)
    assert text == (
        "--trt-min-shapes 'X:[1,3,28,28]' --trt-opt-shapes 'X:[1,3,28,28]' "
        "--trt-max-shapes 'X:[1,3,28,28]' "
        "--trt-min-shapes 'X:[1,3,28,28]' --trt-opt-shapes 'X:[4,3,28,28]' "
        "--trt-max-shapes 'X:[32,3,28,28]' "
        "--trt-min-shapes 'X:[128,3,28,28]' --trt-opt-shapes 'X:[128,3,28,28]' "
        "--trt-max-shapes 'X:[128,3,28,28]'"
    )
    back = profiles_from_command_line(text, model_path=MODEL_PATH)
    assert all(isinstance(profile, Profile) for profile in back)
    assert profile_shapes(back) == profile_shapes(PROFILES)
    assert parse_with_polygraphy(text) == profile_shapes(PROFILES)


def test_the_scenario_written_as_a_file_reads_back_as_itself(tmp_path):
    path = tmp_path / "profiles.json"
    write_profiles_file(path, PROFILES)
    assert path.read_text() == (
        "[\n"
        "  {\n"
        '    "X": {"min": [1, 3, 28, 28], "opt": [1, 3, 28, 28], "max": [1, 3, 28, 28]}\n'
        "  },\n"
        "  {\n"
        '    "X": {"min": [1, 3, 28, 28], "opt": [4, 3, 28, 28], "max": [32, 3, 28, 28]}\n'
        "  },\n"
        "  {\n"
        '    "X": {"min": [128, 3, 28, 28], "opt": [128, 3, 28, 28], "max": [128, 3, 28, 28]}\n'
        "  }\n"
        "]\n"
    )
    assert profile_shapes(read_profiles_file(path, MODEL_PATH)) == profile_shapes(PROFILES)


# Several inputs, several dynamic dimensions


def test_transformer_profiles_round_trip_exactly_both_ways(transformer):
    written = profiles(TRANSFORMER_SHAPES)
    assert shlex.split(profiles_to_command_line(written)) == shlex.split(TRANSFORMER_OPTIONS)
    assert profiles_to_options(written) == shlex.split(TRANSFORMER_OPTIONS)
    for back in (
        profiles_from_command_line(profiles_to_command_line(written), transformer),
        profiles_from_json(profiles_to_json(written), model_path=transformer),
    ):
        assert profile_shapes(back) == TRANSFORMER_SHAPES
        assert [list(profile) for profile in back] == [["input_ids", "attention_mask"]] * 3
    assert parse_with_polygraphy(TRANSFORMER_OPTIONS) == TRANSFORMER_SHAPES


def test_names_with_colons_spaces_and_quotes_round_trip():
    shapes = [{"encoder:input ids": ((1, 2),) * 3, "it's [mask]": ((1, 2), (3, 4), (5, 6))}]
    text = profiles_to_command_line(profiles(shapes))
    assert profile_shapes(profiles_from_command_line(text)) == shapes
    assert parse_with_polygraphy(text) == shapes
    assert profile_shapes(profiles_from_json(profiles_to_json(profiles(shapes)))) == shapes


def test_python_profiles_with_lists_and_numpy_sizes_are_written_as_plain_integers():
    written = one_profile(X=([np.int64(1), 3], (2, 3), [4, np.int32(3)]))
    assert profiles_to_options(written) == [
        "--trt-min-shapes", "X:[1,3]", "--trt-opt-shapes", "X:[2,3]",
        "--trt-max-shapes", "X:[4,3]",
    ]  # fmt: skip
    assert profile_shapes(profiles_from_json(profiles_to_json(written))) == [
        {"X": ((1, 3), (2, 3), (4, 3))}
    ]


# Polygraphy's semantics, kept


def test_each_option_is_taken_in_order_once_per_profile_wherever_it_stands():
    interleaved = "--trt-min-shapes X:[1] --trt-opt-shapes X:[2] --trt-max-shapes X:[3] " * 2
    grouped = (
        "--trt-max-shapes X:[3] --trt-max-shapes X:[30] --trt-min-shapes X:[1] "
        "--trt-min-shapes X:[10] --trt-opt-shapes X:[2] --trt-opt-shapes X:[20]"
    )
    assert (
        profile_shapes(profiles_from_command_line(interleaved)) == [{"X": ((1,), (2,), (3,))}] * 2
    )
    assert profile_shapes(profiles_from_command_line(grouped)) == [
        {"X": ((1,), (2,), (3,))},
        {"X": ((10,), (20,), (30,))},
    ]
    assert parse_with_polygraphy(grouped) == profile_shapes(profiles_from_command_line(grouped))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # A static profile in one option: opt and max take min's shapes.
        ("--trt-min-shapes X:[8,3]", [{"X": ((8, 3),) * 3}]),
        # A second profile of only a min: its opt and max take that min.
        (
            "--trt-min-shapes X:[1] --trt-opt-shapes X:[2] --trt-max-shapes X:[4] "
            "--trt-min-shapes X:[8]",
            [{"X": ((1,), (2,), (4,))}, {"X": ((8,),) * 3}],
        ),
        # An input a later profile leaves out keeps the shapes last given to it.
        (
            "--trt-min-shapes X:[1] M:[5] --trt-opt-shapes X:[2] M:[5] "
            "--trt-max-shapes X:[4] M:[5] --trt-min-shapes X:[8] --trt-opt-shapes X:[8] "
            "--trt-max-shapes X:[8]",
            [{"X": ((1,), (2,), (4,)), "M": ((5,),) * 3}, {"X": ((8,),) * 3, "M": ((5,),) * 3}],
        ),
    ],
)
def test_an_option_or_input_left_out_takes_the_shapes_last_given(text, expected):
    assert profile_shapes(profiles_from_command_line(text)) == expected
    assert parse_with_polygraphy(text) == expected


def test_an_empty_shape_is_a_scalar_input():
    assert profile_shapes(profiles_from_command_line("--trt-min-shapes S:[]")) == [
        {"S": ((), (), ())}
    ]


# The options' errors


@pytest.mark.parametrize("item", ["X:4", "X", "[1,2]", ":[1,2]", "X:[1,2", "X:(1,2)", "X:[[1]]"])
def test_an_item_that_is_not_name_and_bracketed_shape_is_refused(item):
    with pytest.raises(ValueError) as error:
        profiles_from_options([["X:[1]"]], [["X:[1]"], [item]], None)
    assert str(error.value) == (
        f"--trt-opt-shapes for profile 1: {item!r} is not an input's shape; write "
        "NAME:[D0,D1,...], e.g. input_ids:[8,128]"
    )


@pytest.mark.parametrize(
    ("item", "dimension", "value"),
    [
        ("X:[1,-1]", 1, "-1"),
        ("X:[0]", 0, "0"),
        ("X:[2,1.5]", 1, "1.5"),
        ("X:[batch,3]", 0, "'batch'"),
    ],
)
def test_a_dimension_that_is_not_a_positive_integer_is_refused(item, dimension, value):
    with pytest.raises(ValueError) as error:
        profiles_from_options(None, None, [[item]])
    assert str(error.value) == (
        f"--trt-max-shapes for profile 0: {item!r}: dimension {dimension} is {value}; every "
        "dimension of a profile is a positive integer"
    )


def test_an_input_named_twice_in_one_option_is_refused():
    with pytest.raises(ValueError) as error:
        profiles_from_options([["X:[1]", "M:[1]", "X:[2]"]], None, None)
    assert str(error.value) == (
        "--trt-min-shapes for profile 0: input X is given twice; give each input once"
    )


def test_an_input_first_named_in_a_later_option_of_a_profile_is_refused_naming_the_profile():
    text = (
        "--trt-min-shapes X:[1] --trt-opt-shapes X:[1] --trt-max-shapes X:[1] "
        "--trt-min-shapes X:[1] --trt-opt-shapes X:[1] M:[2] --trt-max-shapes X:[1] M:[2]"
    )
    with pytest.raises(ValueError) as error:
        profiles_from_command_line(text)
    assert str(error.value) == (
        "profile 1: Mismatch in input names between minimum shapes (['X']) and optimum shapes "
        "(['X', 'M']); name the same inputs in --trt-min-shapes, --trt-opt-shapes and "
        "--trt-max-shapes (an input first named in a later option has no shapes before it)"
    )


@pytest.mark.parametrize("text", ["", "--fp16", "--trt-min-shapes X:[1] --fp16"])
def test_a_command_line_of_anything_but_the_three_options_is_refused(text):
    with pytest.raises(ValueError, match=r"no profile given|none of --trt-min-shapes"):
        profiles_from_command_line(text)


def test_no_options_is_no_profile():
    with pytest.raises(ValueError) as error:
        profiles_from_options([], None, [])
    assert str(error.value) == (
        "no profile given: give --trt-min-shapes, --trt-opt-shapes and --trt-max-shapes"
    )


# The rules, whichever way the profiles came


@pytest.mark.parametrize(
    ("shapes", "message"),
    [
        (
            ((1, 8), (1, 4), (1, 16)),
            "profile 0, input X, dimension 1: min 8, opt 4, max 16; a profile needs min <= opt "
            "<= max in every dimension (min [1, 8], opt [1, 4], max [1, 16])",
        ),
        (
            ((1, 8), (2, 16), (4, 12)),
            "profile 0, input X, dimension 1: min 8, opt 16, max 12; a profile needs min <= opt "
            "<= max in every dimension (min [1, 8], opt [2, 16], max [4, 12])",
        ),
        (
            ((2, 8), (1, 8), (1, 8)),
            "profile 0, input X, dimension 0: min 2, opt 1, max 1; a profile needs min <= opt "
            "<= max in every dimension (min [2, 8], opt [1, 8], max [1, 8])",
        ),
        (
            ((1, 8), (1, 8, 1), (1, 8)),
            "profile 0, input X: min [1, 8] has 2 dimensions, opt [1, 8, 1] 3, max [1, 8] 2; "
            "min, opt and max have the same rank",
        ),
        (
            ((1, 0), (1, 8), (1, 8)),
            "profile 0, input X: min [1, 0]: dimension 1 is 0; every dimension of a profile is "
            "a positive integer",
        ),
        (
            ((1, 8), (1, 8), (1, True)),
            "profile 0, input X: max [1, True]: dimension 1 is True; every dimension of a "
            "profile is a positive integer",
        ),
    ],
)
def test_each_range_rule_names_the_profile_input_and_dimension(shapes, message):
    for check in (check_profiles, profiles_to_options, profiles_to_json):
        with pytest.raises(ValueError) as error:
            check(one_profile(X=shapes))
        assert str(error.value) == message


def test_every_profile_covers_the_same_inputs():
    shapes = [{"X": ((1,),) * 3, "M": ((1,),) * 3}, {"X": ((2,),) * 3}]
    with pytest.raises(ValueError) as error:
        check_profiles(profiles(shapes))
    assert str(error.value) == (
        "profile 1 gives shapes for ['X'] but profile 0 for ['M', 'X']; every profile gives "
        "shapes for the same inputs"
    )
    assert profile_shapes(profiles(shapes[:1])) == shapes[:1]  # each alone is fine
    check_profiles(profiles(shapes[:1]))


def test_no_profile_or_an_empty_one_is_refused():
    with pytest.raises(ValueError, match=r"^no profile given; an engine needs at least one$"):
        check_profiles([])
    with pytest.raises(ValueError, match=r"^profile 1 gives no input's shapes$"):
        check_profiles([*one_profile(X=((1,),) * 3), Profile()])


def test_profiles_named_by_use_case_are_checked_in_order():
    check_profiles(PROFILES)
    bad = {"fine": one_profile(X=((1,),) * 3)[0], "bad": one_profile(X=((2,), (1,), (2,)))[0]}
    with pytest.raises(ValueError, match=r"^profile 1, input X, dimension 0: min 2, opt 1"):
        check_profiles(bad)


# Against a model


def test_a_models_inputs_are_read_with_their_fixed_and_dynamic_dimensions(transformer):
    assert read_input_dimensions(MODEL_PATH) == {"X": [None, 3, 28, 28]}
    assert read_input_dimensions(transformer) == {
        "input_ids": [None, None],
        "attention_mask": [None, None],
    }


@pytest.fixture(scope="module")
def with_a_static_input(tmp_path_factory):
    """A model of a dynamic input and a fixed one."""
    tokens = gs.Variable("tokens", dtype=np.float32, shape=("batch", "sequence"))
    scale = gs.Variable("scale", dtype=np.float32, shape=(1, 1))
    out = gs.Variable("out", dtype=np.float32, shape=("batch", "sequence"))
    graph = gs.Graph(
        nodes=[gs.Node("Mul", inputs=[tokens, scale], outputs=[out])],
        inputs=[tokens, scale],
        outputs=[out],
        opset=17,
    )
    path = tmp_path_factory.mktemp("static") / "static.onnx"
    onnx.save(gs.export_onnx(graph), path)
    return path


def test_a_fixed_input_may_be_left_out_or_given_at_its_size(with_a_static_input):
    tokens = ((1, 1), (4, 64), (8, 128))
    check_profiles(one_profile(tokens=tokens), with_a_static_input)
    check_profiles(one_profile(tokens=tokens, scale=((1, 1),) * 3), with_a_static_input)
    with pytest.raises(ValueError) as error:
        check_profiles(
            one_profile(tokens=tokens, scale=((1, 1), (1, 2), (1, 2))), with_a_static_input
        )
    assert str(error.value) == (
        f"profile 0, input scale, dimension 1: opt is 2, but {with_a_static_input} fixes it at 1 "
        "([1, 1])"
    )


@pytest.mark.parametrize(
    ("sizes", "kind", "size"),
    [((27, 28, 28), "min", 27), ((28, 28, 29), "max", 29), ((14, 14, 14), "min", 14)],
)
def test_a_dimension_the_model_fixes_must_be_its_size_in_min_opt_and_max(sizes, kind, size):
    shapes = tuple((batch, 3, 28, last) for batch, last in zip((1, 4, 8), sizes, strict=True))
    with pytest.raises(ValueError) as error:
        check_profiles(one_profile(X=shapes), MODEL_PATH)
    assert str(error.value) == (
        f"profile 0, input X, dimension 3: {kind} is {size}, but {MODEL_PATH} fixes it at 28 "
        "([?, 3, 28, 28])"
    )


def test_a_shape_of_another_rank_than_the_models_is_refused(transformer):
    shapes = [dict(TRANSFORMER_SHAPES[0]), dict(TRANSFORMER_SHAPES[1])]
    shapes[1]["input_ids"] = ((1, 1, 1), (8, 128, 1), (32, 256, 1))
    with pytest.raises(ValueError) as error:
        check_profiles(profiles(shapes), transformer)
    assert str(error.value) == (
        f"profile 1, input input_ids: min [1, 1, 1] has 3 dimensions, but {transformer} takes 2: "
        "[?, ?]"
    )


def test_every_dynamic_input_of_the_model_is_covered_by_every_profile(transformer):
    shapes = [{"input_ids": TRANSFORMER_SHAPES[0]["input_ids"]}]
    with pytest.raises(ValueError) as error:
        check_profiles(profiles(shapes), transformer)
    assert str(error.value) == (
        f"profile 0 gives no shapes for input attention_mask of {transformer}, whose dimensions "
        "[?, ?] are dynamic; every profile gives shapes for every input of dynamic dimensions"
    )


def test_an_input_the_model_does_not_take_is_refused(transformer):
    shapes = [{**TRANSFORMER_SHAPES[0], "token_type_ids": ((1, 1),) * 3}]
    with pytest.raises(ValueError) as error:
        check_profiles(profiles(shapes), transformer)
    assert str(error.value) == (
        f"profile 0 gives shapes for token_type_ids, which {transformer} does not take; its "
        "inputs are ['input_ids', 'attention_mask']"
    )


def test_a_file_that_is_no_model_is_refused(tmp_path):
    with pytest.raises(ValueError, match="no model at"):
        check_profiles(PROFILES, tmp_path / "missing.onnx")


# The file's errors


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[{",
            "p.json is not JSON: Expecting property name enclosed in double quotes: line 1 "
            "column 3 (char 2)",
        ),
        ("{}", "p.json holds an object; a list of profiles is needed"),
        ("[]", "p.json holds an empty list; a list of profiles is needed"),
        ('"X"', "p.json holds a string; a list of profiles is needed"),
        ("[[1]]", "p.json, profile 0 is a list; each profile is an object of input names"),
        ('[{"X": [1, 2]}]', "p.json, profile 0, input X: a list given; an object of exactly"),
        (
            '[{"X": {"min": [1], "max": [1]}}]',
            "p.json, profile 0, input X: ['max', 'min'] given; an object of exactly "
            '"min", "opt" and "max" is needed',
        ),
        (
            '[{"X": {"min": [1], "opt": [1], "max": [1], "best": [1]}}]',
            "p.json, profile 0, input X: ['best', 'max', 'min', 'opt'] given",
        ),
        (
            '[{"X": {"min": 1, "opt": [1], "max": [1]}}]',
            "p.json, profile 0, input X: min is a number, not a list",
        ),
        (
            '[{"X": {"min": [1], "opt": [1.0], "max": [1]}}]',
            "p.json, profile 0, input X: opt [1.0]: dimension 0 is 1.0; every dimension",
        ),
        (
            '[{"X": {"min": [1], "opt": [1], "max": [true]}}]',
            "p.json, profile 0, input X: max [True]: dimension 0 is True; every dimension",
        ),
        (
            '[{"X": {"min": [1], "opt": [1], "max": [1]}, '
            '"X": {"min": [2], "opt": [2], "max": [2]}}]',
            "p.json: 'X' is given twice in one object",
        ),
        ("[{}]", "p.json: profile 0 gives no input's shapes"),
        (
            '[{"X": {"min": [2], "opt": [1], "max": [2]}}]',
            "p.json: profile 0, input X, dimension 0: min 2, opt 1, max 2; a profile needs",
        ),
        (
            '[{"X": {"min": [1], "opt": [1], "max": [1]}}, '
            '{"Y": {"min": [1], "opt": [1], "max": [1]}}]',
            "p.json: profile 1 gives shapes for ['Y'] but profile 0 for ['X']",
        ),
    ],
)
def test_a_bad_file_is_refused_saying_where(text, message):
    with pytest.raises(ValueError) as error:
        profiles_from_json(text, "p.json")
    assert str(error.value).startswith(message)


def test_an_unreadable_file_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"^cannot read the profiles file .*missing\.json"):
        read_profiles_file(tmp_path / "missing.json")
    (tmp_path / "binary.json").write_bytes(b"\xff\xfe[")
    with pytest.raises(ValueError, match=r"^cannot read the profiles file .*binary\.json"):
        read_profiles_file(tmp_path / "binary.json")


# The command-line wiring, on a parser of a script's kind


def make_parser():
    parser = argparse.ArgumentParser(prog="serve.py")
    parser.add_argument("--model")
    add_profile_options(parser)
    return parser


def parse(argv, model_path=None):
    parser = make_parser()
    return profiles_from_args(parser, parser.parse_args(argv), model_path)


def test_no_profile_options_give_none_for_the_scripts_own_profiles():
    assert parse(["--model", "m.onnx"]) is None


def test_profiles_from_the_options(transformer):
    argv = shlex.split(TRANSFORMER_OPTIONS)
    assert profile_shapes(parse(argv, transformer)) == TRANSFORMER_SHAPES


def test_profiles_from_a_file(tmp_path, transformer):
    path = tmp_path / "profiles.json"
    write_profiles_file(path, profiles(TRANSFORMER_SHAPES))
    assert profile_shapes(parse(["--profiles", str(path)], transformer)) == TRANSFORMER_SHAPES


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--profiles", "p.json", "--trt-min-shapes", "X:[1]"],
            "profiles given both in --profiles and as --trt-min-shapes, --trt-opt-shapes and "
            "--trt-max-shapes; give them one way",
        ),
        (
            ["--trt-min-shapes", "X:[2]", "--trt-max-shapes", "X:[1]"],
            "profile 0, input X, dimension 0: min 2, opt 2, max 1;",
        ),
        (["--trt-min-shapes", "X:[1,3,28,29]"], "profile 0, input X, dimension 3: min is 29"),
        (["--profiles", "nowhere.json"], "cannot read the profiles file nowhere.json"),
    ],
)
def test_profiles_given_both_ways_or_wrong_end_the_parse_with_exit_code_2(argv, message, capsys):
    with pytest.raises(SystemExit) as stopped:
        parse(argv, MODEL_PATH)
    assert stopped.value.code == 2
    assert f"serve.py: error: {message}" in capsys.readouterr().err


def test_the_help_shows_both_forms(capsys):
    with pytest.raises(SystemExit):
        make_parser().parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for option in ("--trt-min-shapes NAME:[D0,D1,...]", "--trt-opt-shapes", "--trt-max-shapes"):
        assert option in text
    assert "--profiles FILE" in text
    assert "once per profile" in text


def test_a_file_that_does_not_fit_the_model_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "p.json"
    write_profiles_file(path, one_profile(X=((1, 3, 28, 28), (1, 3, 28, 28), (1, 3, 28, 28))))
    read_profiles_file(path, MODEL_PATH)
    write_profiles_file(path, one_profile(images=((1, 3, 28, 28),) * 3))
    with pytest.raises(ValueError) as error:
        read_profiles_file(path, MODEL_PATH)
    assert str(error.value) == (
        f"{path}: profile 0 gives shapes for images, which {MODEL_PATH} does not take; its "
        "inputs are ['X']"
    )


def test_profiles_are_read_and_written_where_tensorrt_cannot_be_imported():
    code = (
        "from dynamic_shapes.profiles import profiles_from_command_line, profiles_to_json\n"
        f"print(profiles_to_json(profiles_from_command_line({TRANSFORMER_OPTIONS!r})), end='')\n"
    )
    result = run_script(*with_imports_failing(TENSORRT_MISSING, code))
    assert result.returncode == 0, result.stderr
    assert result.stdout == profiles_to_json(profiles(TRANSFORMER_SHAPES))

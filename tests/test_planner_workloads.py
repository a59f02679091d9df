"""Workloads: their two files, read back exactly, told apart by content, every error naming the
file and line; lines cut short skipped and counted; histograms and summaries (CPU only)."""

import pytest

from dynamic_shapes.planner.workloads import (
    make_histogram,
    most_frequent,
    read_workload,
    shape_key,
    summarize,
    write_histogram,
    write_requests,
)

REQUESTS = [
    {"input_ids": (4, 128), "attention_mask": (4, 128)},
    {"input_ids": (1, 37), "attention_mask": (1, 37)},
    {"input_ids": (4, 128), "attention_mask": (4, 128)},
    {"input_ids": (2, 512), "attention_mask": (2, 512)},
]


def test_a_shape_key_is_the_same_whatever_the_order_of_the_inputs():
    assert shape_key({"b": [2], "a": (1, 3)}) == shape_key({"a": [1, 3], "b": (2,)})
    assert shape_key({"b": [2], "a": (1, 3)}) == (("a", (1, 3)), ("b", (2,)))


@pytest.mark.parametrize(
    ("shapes", "words"),
    [
        ({}, "is not a request's shapes"),
        ([1, 2], "is not a request's shapes"),
        ({"X": 4}, "is not an input's shape"),
        ({"X": []}, "is not an input's shape"),
        ({"X": [4, 0]}, "input X, dimension 1 is 0"),
        ({"X": [4, 2.0]}, "input X, dimension 1 is 2.0"),
        ({"X": [True, 2]}, "input X, dimension 0 is True"),
    ],
)
def test_a_request_that_is_not_shapes_is_refused(shapes, words):
    with pytest.raises(ValueError, match="request 7") as error:
        shape_key(shapes, "request 7")
    assert words in str(error.value)


def test_json_lines_read_back_in_order(tmp_path):
    path = tmp_path / "workload.jsonl"
    write_requests(path, REQUESTS)
    workload = read_workload(path)
    assert workload.requests == tuple(shape_key(r) for r in REQUESTS)
    assert workload.in_order() == [shape_key(r) for r in REQUESTS]
    assert workload.torn_lines == 0
    assert list(workload.histogram.values()) == [2, 1, 1]
    assert path.read_text().splitlines()[0] == '{"attention_mask": [4, 128], "input_ids": [4, 128]}'


def test_a_histogram_reads_back_without_order(tmp_path):
    path = tmp_path / "histogram.json"
    histogram = make_histogram(REQUESTS)
    write_histogram(path, histogram)
    workload = read_workload(path)
    assert workload.histogram == histogram
    assert list(workload.histogram) == list(histogram)
    assert workload.requests is None
    # A replay of a histogram takes each shape as many times as it counts, in the file's order.
    first, second, third = histogram
    assert workload.in_order() == [first, first, second, third]


def test_a_histogram_counts_each_shape_in_the_order_it_first_came():
    histogram = make_histogram(REQUESTS)
    assert histogram == {
        shape_key(REQUESTS[0]): 2,
        shape_key(REQUESTS[1]): 1,
        shape_key(REQUESTS[3]): 1,
    }
    with pytest.raises(ValueError, match=r"request 1: .* differs in its inputs"):
        make_histogram([{"X": (1, 3)}, {"X": (1, 3, 4)}])
    with pytest.raises(ValueError, match=r"request 1: .* differs in its inputs"):
        make_histogram([{"X": (1, 3)}, {"Y": (1, 3)}])


def test_the_summary_gives_distinct_shapes_ranges_and_the_most_frequent():
    summary = summarize(make_histogram(REQUESTS))
    assert (summary.requests, summary.distinct) == (4, 3)
    assert summary.ranges == {
        "attention_mask": ((1, 37), (4, 512)),
        "input_ids": ((1, 37), (4, 512)),
    }
    assert summary.most_frequent == (shape_key(REQUESTS[0]), 2)
    assert "input_ids [1..4, 37..512]" in summary.describe()
    assert "(2 requests, 50.0%)" in summary.describe()


def test_of_equal_counts_the_shape_that_came_first_is_the_most_frequent():
    assert most_frequent(make_histogram([{"X": [3]}, {"X": [1]}, {"X": [1]}, {"X": [3]}])) == (
        ("X", (3,)),
    )


def test_a_line_cut_short_is_skipped_and_counted_a_complete_last_line_is_kept(tmp_path):
    path = tmp_path / "workload.jsonl"
    path.write_text('{"X": [1, 3]}\n{"X": [2, 3]}\n{"X": [4, 3]}')
    assert read_workload(path).requests == ((("X", (1, 3)),), (("X", (2, 3)),), (("X", (4, 3)),))
    for torn in ('{"X": [4, 3', '{"X": [4, ', '{"X', '{"X": [4, 3]'):
        path.write_text('{"X": [1, 3]}\n' + torn + '\n{"X": [2, 3]}\n' + torn)
        workload = read_workload(path)
        assert workload.requests == ((("X", (1, 3)),), (("X", (2, 3)),)), torn
        assert workload.torn_lines == 2


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('{"X": [1, 3]}\n\n{"X": [1, 3]]\n', "line 3 is not JSON"),
        ('{"X": [1, 3]}\n{"X": [0, 3]}\n', "line 2: input X, dimension 0 is 0"),
        ('{"X": [1, 3]}\n{"X": [1, 3, 1]}\n', "line 2: X [1, 3, 1] differs in its inputs"),
        ('{"X": [1, 3]}\n{"X": "1, 3"}\n', "line 2: 'X': '1, 3' is not an input's shape"),
        ('{"X": [1, 3]}\n[1, 3]\n', "line 2: [1, 3] is not a request's shapes"),
        ('{"X": [1, 3', "holds no complete request (1 lines cut short)"),
        ("", "is empty"),
        ("X: [1, 3]\n", "is neither a workload of JSON lines"),
    ],
)
def test_a_wrong_json_lines_file_is_refused_naming_the_file_and_line(tmp_path, text, words):
    path = tmp_path / "workload.jsonl"
    path.write_text(text)
    with pytest.raises(ValueError, match=str(path)) as error:
        read_workload(path)
    assert words in str(error.value)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('[{"shapes": {"X": [1]}, "count": 2}', "is not JSON"),
        ("[]", "holds no histogram"),
        ('[{"shapes": {"X": [1]}}]', 'entry 0: {\'shapes\': {\'X\': [1]}} is not {"shapes"'),
        ('[{"shapes": {"X": [1]}, "count": 0}]', "entry 0: count 0 is not a positive integer"),
        ('[{"shapes": {"X": [1]}, "count": 1.5}]', "entry 0: count 1.5 is not a positive"),
        ('[{"shapes": {"X": [1]}, "count": 1}, {"shapes": {"X": [-1]}, "count": 1}]',
         "entry 1: input X, dimension 0 is -1"),
        ('[{"shapes": {"X": [1]}, "count": 1}, {"shapes": {"X": [1]}, "count": 3}]',
         "entry 1 repeats the shapes of entry 0"),
    ],
)  # fmt: skip
def test_a_wrong_histogram_is_refused_naming_the_file_and_entry(tmp_path, text, words):
    path = tmp_path / "histogram.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=str(path)) as error:
        read_workload(path)
    assert words in str(error.value)


def test_a_missing_file_is_refused_by_name(tmp_path):
    with pytest.raises(ValueError, match=r"cannot read the workload .*absent\.jsonl"):
        read_workload(tmp_path / "absent.jsonl")


def test_nothing_is_written_for_an_empty_histogram(tmp_path):
    with pytest.raises(ValueError, match="holds no requests"):
        write_histogram(tmp_path / "histogram.json", {})
    assert not (tmp_path / "histogram.json").exists()

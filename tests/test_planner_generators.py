"""The generated workloads: the documented mixes, within tolerances that a few thousand seeded
requests meet, their bounds, and the same requests for the same seed (CPU only)."""

from collections import Counter

import numpy as np
import pytest

from dynamic_shapes.planner.generators import (
    MAX_BATCH,
    peak_batch_weights,
    scenario_requests,
    transformer_batches,
    transformer_requests,
)
from scenario import ATTENTION_MASK_NAME, IMAGE_SHAPE, INPUT_NAME, MAX_SEQUENCE, TOKEN_IDS_NAME

COUNT = 4000
TRANSFORMER_INPUTS = (TOKEN_IDS_NAME, ATTENTION_MASK_NAME)


def batches_of(requests):
    return [dict(key)[INPUT_NAME][0] for key in requests]


def test_the_scenario_is_mostly_one_image_peaks_about_4_and_now_and_then_128():
    requests = scenario_requests(COUNT, INPUT_NAME, IMAGE_SHAPE, seed=0)
    assert len(requests) == COUNT
    assert {tuple(dict(key)) for key in requests} == {(INPUT_NAME,)}
    assert {dict(key)[INPUT_NAME][1:] for key in requests} == {IMAGE_SHAPE}
    batches = Counter(batches_of(requests))
    peak = {b: n for b, n in batches.items() if 2 <= b <= 32}
    assert set(batches) <= {1, 128, *range(2, 33)}
    # Binomial standard deviations at 4000 requests: 0.7% for 70%, 0.35% for 5%; 4 of them.
    assert batches[1] / COUNT == pytest.approx(0.70, abs=0.03)
    assert sum(peak.values()) / COUNT == pytest.approx(0.25, abs=0.03)
    assert batches[128] / COUNT == pytest.approx(0.05, abs=0.015)
    assert max(peak, key=peak.get) == 4
    # The peak's bell: 2 and 8 each about 0.41 times as frequent as 4.
    for batch in (2, 8):
        assert peak[batch] / peak[4] == pytest.approx(0.41, abs=0.15)


def test_the_peak_batches_weights_are_a_bell_over_log2_centred_at_4():
    weights = peak_batch_weights()
    assert weights.sum() == pytest.approx(1)
    assert int(np.argmax(weights)) + 2 == 4
    assert weights[0] == pytest.approx(weights[6])  # batch 2 and 8: one octave either side of 4
    assert weights[-1] < weights[0] / 100  # batch 32


def test_a_transformer_services_requests_share_batch_and_sequence_within_bounds():
    requests = transformer_requests(COUNT, TRANSFORMER_INPUTS, MAX_SEQUENCE, seed=0)
    assert len(requests) == COUNT
    for key in requests:
        shapes = dict(key)
        assert set(shapes) == set(TRANSFORMER_INPUTS)
        assert shapes[TOKEN_IDS_NAME] == shapes[ATTENTION_MASK_NAME]
        batch, sequence = shapes[TOKEN_IDS_NAME]
        assert 1 <= batch <= MAX_BATCH
        assert 1 <= sequence <= MAX_SEQUENCE


def test_the_transformer_mix_is_the_documented_one():
    pairs = transformer_batches(COUNT, MAX_SEQUENCE, seed=0)
    batches = np.array([b for b, _ in pairs])
    # 1 + Poisson(1.5): mean 2.5, a single request in exp(-1.5) = 22% of batches.
    assert batches.mean() == pytest.approx(2.5, abs=0.1)
    assert np.mean(batches == 1) == pytest.approx(np.exp(-1.5), abs=0.03)
    # A batch of one request has that request's length: log-normal, median 48 tokens, one in six
    # above 107 (one standard deviation of the log).
    single = np.array([s for b, s in pairs if b == 1])
    assert np.median(single) == pytest.approx(48, rel=0.1)
    assert np.mean(single > 107) == pytest.approx(0.159, abs=0.04)
    # A batch is padded to its longest member: larger batches have longer sequences.
    by_batch = {b: np.median([s for bb, s in pairs if bb == b]) for b in (1, 2, 4)}
    assert by_batch[1] < by_batch[2] < by_batch[4]


def test_long_texts_are_clipped_to_the_longest_sequence():
    pairs = transformer_batches(COUNT, 64, seed=0)
    sequences = [s for _, s in pairs]
    assert max(sequences) == 64
    assert min(sequences) >= 1
    assert Counter(sequences)[64] > COUNT / 4  # the median member is 48, a batch's longest more


@pytest.mark.parametrize(
    "generate",
    [
        lambda seed: scenario_requests(500, INPUT_NAME, IMAGE_SHAPE, seed=seed),
        lambda seed: transformer_requests(500, TRANSFORMER_INPUTS, MAX_SEQUENCE, seed=seed),
    ],
)
def test_the_same_seed_gives_the_same_requests_another_seed_others(generate):
    assert generate(3) == generate(3)
    assert generate(3) != generate(4)


@pytest.mark.parametrize("count", [0, -3, 2.5])
def test_a_count_of_no_requests_is_refused(count):
    with pytest.raises(ValueError, match="generate at least 1"):
        scenario_requests(count, INPUT_NAME, IMAGE_SHAPE)


def test_a_mix_outside_its_bounds_is_refused():
    with pytest.raises(ValueError, match=r"median_tokens 600 must lie in 1\.\.512"):
        transformer_batches(10, 512, median_tokens=600)

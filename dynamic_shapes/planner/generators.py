"""Generated workloads: seeded streams of requests' shapes for the two services this project
plans profiles for. Each returns a list of shape keys (see workloads.py), the same for the same
arguments and seed on every machine (NumPy's PCG64 generator, drawn in a fixed order).

The walkthrough's scenario (scenario_requests): mostly one image, peaks batched at about 4, now
and then a bulk batch of 128. Each request is, independently:

    70%  batch 1           an online request, one image
    25%  batch 2..32       a batch the server gathered at a peak: batch b with probability
                           proportional to exp(-(log2 b - log2 4)^2 / (2 * 0.75^2)), a bell
                           over log2 b centred at 4 (so 4 is the most frequent; 2 and 8 are
                           each about 0.4 times as frequent as 4, 32 almost never)
     5%  batch 128         a bulk request

over one input (the scenario's X) of per-item shape (3, 28, 28): shape (b, 3, 28, 28).

A transformer service (transformer_requests): requests of text, gathered by a dynamic batcher
that pads. Each request's length in tokens is log-normal, as the lengths of real texts are:
exp(N(ln 48, 0.8)) rounded up (a median of 48 tokens; one in six longer than 107, one in 40
longer than 230), clipped to 1..max_sequence. The batcher forms each batch of 1 + Poisson(1.5)
requests (those that arrived within its window; at most 16), padded to the longest of them, so
a batch's sequence is the longest of its members' lengths. Both inputs (token ids and attention
mask) have the shape [batch, sequence].
"""

import math

import numpy as np

from dynamic_shapes.planner.workloads import shape_key

# The scenario's mix: the share of each kind of request.
ONLINE_SHARE, PEAK_SHARE, BULK_SHARE = 0.70, 0.25, 0.05
ONLINE_BATCH, BULK_BATCH = 1, 128
PEAK_BATCHES = range(2, 33)
PEAK_CENTRE, PEAK_SPREAD = 4, 0.75  # in log2 of the batch size

# The transformer service's mix.
MEDIAN_TOKENS, TOKENS_SIGMA = 48, 0.8  # log-normal lengths: exp(N(ln median, sigma))
MEAN_EXTRA_REQUESTS, MAX_BATCH = 1.5, 16  # a batch is 1 + Poisson(mean) requests, at most this


def peak_batch_weights() -> np.ndarray:
    """The probabilities of PEAK_BATCHES, in order."""
    batches = np.array(PEAK_BATCHES, dtype=np.float64)
    weights = np.exp(-((np.log2(batches) - math.log2(PEAK_CENTRE)) ** 2) / (2 * PEAK_SPREAD**2))
    return weights / weights.sum()


def scenario_batches(count: int, seed: int = 0) -> np.ndarray:
    """`count` batch sizes of the scenario's mix, in request order."""
    check_count(count)
    rng = np.random.default_rng(seed)
    kinds = rng.choice(3, size=count, p=[ONLINE_SHARE, PEAK_SHARE, BULK_SHARE])
    peaks = rng.choice(np.array(PEAK_BATCHES), size=count, p=peak_batch_weights())
    return np.choose(kinds, [np.full(count, ONLINE_BATCH), peaks, np.full(count, BULK_BATCH)])


def scenario_requests(count: int, input_name: str, item_shape: tuple, seed: int = 0) -> list:
    """`count` requests' shape keys of the walkthrough's scenario, for a model whose one input
    `input_name` has a dynamic batch and per-item shape `item_shape` (scenario.py's X and
    (3, 28, 28))."""
    return [
        shape_key({input_name: (int(batch), *item_shape)})
        for batch in scenario_batches(count, seed)
    ]


def transformer_batches(
    count: int,
    max_sequence: int,
    seed: int = 0,
    median_tokens: float = MEDIAN_TOKENS,
    tokens_sigma: float = TOKENS_SIGMA,
    mean_extra_requests: float = MEAN_EXTRA_REQUESTS,
    max_batch: int = MAX_BATCH,
) -> list:
    """`count` (batch, sequence) pairs of the transformer service's mix, in request order."""
    check_count(count)
    if not 1 <= median_tokens <= max_sequence or tokens_sigma < 0 or mean_extra_requests < 0:
        raise ValueError(
            f"median_tokens {median_tokens} must lie in 1..{max_sequence}, tokens_sigma "
            f"{tokens_sigma} and mean_extra_requests {mean_extra_requests} must be 0 or more"
        )
    rng = np.random.default_rng(seed)
    batches = np.minimum(1 + rng.poisson(mean_extra_requests, size=count), max_batch)
    # Each batch draws max_batch lengths and keeps as many as it has members, so that a batch's
    # draws never depend on the size of the batches before it.
    lengths = np.ceil(rng.lognormal(math.log(median_tokens), tokens_sigma, (count, max_batch)))
    lengths = np.clip(lengths, 1, max_sequence).astype(np.int64)
    members = np.arange(max_batch) < batches[:, None]
    sequences = np.where(members, lengths, 0).max(axis=1)
    return [(int(b), int(s)) for b, s in zip(batches, sequences, strict=True)]


def transformer_requests(
    count: int, input_names: tuple, max_sequence: int, seed: int = 0, **mix
) -> list:
    """`count` requests' shape keys of the transformer service, every input in `input_names`
    (scenario.py's TOKEN_IDS_NAME and ATTENTION_MASK_NAME) of shape [batch, sequence], sequences
    at most `max_sequence` (scenario.py's MAX_SEQUENCE); `mix` overrides transformer_batches'
    parameters."""
    return [
        shape_key(dict.fromkeys(input_names, (batch, sequence)))
        for batch, sequence in transformer_batches(count, max_sequence, seed, **mix)
    ]


def check_count(count: int) -> None:
    if not isinstance(count, int) or count < 1:
        raise ValueError(f"the number of requests is {count!r}; generate at least 1")

"""The C++ sampler (awq_edge._awq_edge.Sampler) against transformers' own logits processors.

Sampler.probabilities() must equal, to 1e-6, the softmax of the scores that transformers'
RepetitionPenalty, Temperature, TopK, TopP and MinP processors produce, applied in the order of
GenerationMixin._get_logits_processor. Draws must follow those probabilities (chi-square), repeat
with the seed, and bad inputs must raise ValueError naming the field and the value.
"""
import math
import re
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from transformers.generation.logits_process import (
    MinPLogitsWarper,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from awq_edge._awq_edge import Sampler, SamplingParams

TOLERANCE = 1e-6


# ---------------------------------------------------------------------------------------------
# The reference: transformers' processors
# ---------------------------------------------------------------------------------------------

@contextmanager
def stable_torch_sort():
    """TopPLogitsWarper sorts with torch.sort, whose order among equal values is unspecified
    beyond a few dozen entries; the sampler breaks ties like a stable sort (lower id removed
    first), so the reference is run with a stable sort to have one answer to compare with."""
    unstable_sort = torch.sort

    def sort(input, dim=-1, descending=False, stable=False, **kwargs):
        return unstable_sort(input, dim=dim, descending=descending, stable=True, **kwargs)

    torch.sort = sort
    try:
        yield
    finally:
        torch.sort = unstable_sort


def hf_processors(params: SamplingParams) -> list:
    """The processors _get_logits_processor builds for these settings with do_sample=True, in its order."""
    processors = []
    if params.repetition_penalty != 1.0:
        processors.append(RepetitionPenaltyLogitsProcessor(float(params.repetition_penalty)))
    if params.temperature != 1.0:
        processors.append(TemperatureLogitsWarper(float(params.temperature)))
    if params.top_k != 0:
        processors.append(TopKLogitsWarper(top_k=params.top_k, min_tokens_to_keep=1))
    if params.top_p < 1.0:
        processors.append(TopPLogitsWarper(top_p=float(params.top_p), min_tokens_to_keep=1))
    if params.min_p > 0.0:
        processors.append(MinPLogitsWarper(min_p=float(params.min_p), min_tokens_to_keep=1))
    return processors


def hf_scores(logits: np.ndarray, context, params: SamplingParams, processors) -> torch.Tensor:
    scores = torch.from_numpy(logits.copy())[None]
    input_ids = torch.tensor([list(context)], dtype=torch.long)
    with stable_torch_sort():
        for processor in processors:
            scores = processor(input_ids, scores)
    return scores[0]


def hf_probabilities(logits: np.ndarray, context, params: SamplingParams) -> np.ndarray:
    """The filtering is transformers'; the final softmax is taken in float64, because torch's
    float32 softmax over 128k ids is itself off by up to ~5e-6."""
    if params.temperature == 0.0:  # greedy: only the repetition penalty applies, then argmax
        penalty = hf_processors(SamplingParams(repetition_penalty=params.repetition_penalty))
        one_hot = np.zeros(len(logits), dtype=np.float32)
        one_hot[int(torch.argmax(hf_scores(logits, context, params, penalty)))] = 1.0
        return one_hot
    scores = hf_scores(logits, context, params, hf_processors(params))
    return torch.softmax(scores.double(), dim=-1).numpy()


def assert_matches_transformers(logits, context, params):
    """Same probabilities, and the same ids kept: those transformers' filters keep, less any whose
    probability underflows (below ~1e-38 the sampler's exp() returns 0, torch's a subnormal)."""
    logits = np.asarray(logits, dtype=np.float32)
    expected = hf_probabilities(logits, context, params)
    got = Sampler(params, len(logits)).probabilities(logits, np.asarray(context, dtype=np.int32))
    assert got.dtype == np.float32 and got.shape == logits.shape
    kept_expected, kept_got = np.flatnonzero(expected > 1e-30), np.flatnonzero(got > 1e-30)
    assert np.array_equal(kept_got, kept_expected), f"{params}: kept ids {kept_got[:20]} != {kept_expected[:20]}"
    assert np.all(expected[got > 0] > 0), f"{params}: kept an id transformers removes"
    difference = np.abs(got - expected).max()
    assert difference <= TOLERANCE, f"{params}: max |p - p_hf| = {difference:.3g}"


# ---------------------------------------------------------------------------------------------
# Probabilities equal transformers'
# ---------------------------------------------------------------------------------------------

def random_params(rng) -> SamplingParams:
    return SamplingParams(
        temperature=float(rng.choice([1.0, 0.7, 1.3, 0.05, 2.5])),
        top_k=int(rng.choice([0, 0, 1, 5, 40, 100_000])),
        top_p=float(rng.choice([1.0, 1.0, 0.95, 0.9, 0.5, 0.1, 1e-6])),
        min_p=float(rng.choice([0.0, 0.0, 0.05, 0.2, 0.9])),
        repetition_penalty=float(rng.choice([1.0, 1.0, 1.3, 0.8])),
    )


@pytest.mark.parametrize("vocab", [1, 2, 7, 100, 3000])
def test_random_logits_and_settings_match_transformers(vocab):
    rng = np.random.default_rng(vocab)
    for _ in range(60):
        logits = (rng.standard_normal(vocab) * rng.choice([0.5, 3.0, 10.0]) + rng.normal(0, 5)).astype(np.float32)
        context = rng.integers(0, vocab, size=rng.integers(0, 20))
        assert_matches_transformers(logits, context, random_params(rng))


def test_llm_like_logits_at_full_vocabulary_match_transformers():
    """128256 ids with a long flat tail and a few likely tokens, as a real model's step looks."""
    rng = np.random.default_rng(0)
    logits = (rng.standard_normal(128_256) * 2.0).astype(np.float32)
    logits[rng.choice(128_256, 30, replace=False)] += rng.uniform(6, 14, 30).astype(np.float32)
    context = rng.integers(0, 128_256, 500)
    for params in [SamplingParams(temperature=0.7),
                   SamplingParams(top_k=40),
                   SamplingParams(top_p=0.9),
                   SamplingParams(top_p=0.999),
                   SamplingParams(min_p=0.05),
                   SamplingParams(temperature=0.8, top_k=50, top_p=0.9, min_p=0.05, repetition_penalty=1.2),
                   SamplingParams(temperature=1.5, top_p=0.95, repetition_penalty=1.1)]:
        assert_matches_transformers(logits, context, params)


def test_flat_logits_at_full_vocabulary_match_transformers():
    """Top-p keeps most of a flat distribution: the radix select works through many candidates."""
    logits = np.random.default_rng(1).standard_normal(49_152).astype(np.float32) * 0.3
    for top_p in [0.5, 0.9, 0.99]:
        assert_matches_transformers(logits, [], SamplingParams(top_p=top_p))


@pytest.mark.parametrize("top_p", [0.3, 0.5, 0.75, 0.9])
def test_ties_match_transformers_with_a_stable_sort(top_p):
    rng = np.random.default_rng(int(top_p * 100))
    for vocab in [4, 8, 50, 2000]:
        for _ in range(10):
            logits = rng.integers(-3, 3, vocab).astype(np.float32)
            for top_k in [0, 1, 3, 10]:
                params = SamplingParams(top_k=top_k, top_p=top_p, min_p=float(rng.choice([0.0, 0.3])))
                assert_matches_transformers(logits, rng.integers(0, vocab, 3), params)


def test_all_equal_logits_keep_the_highest_ids_under_top_p():
    logits = np.zeros(8, dtype=np.float32)
    probabilities = Sampler(SamplingParams(top_p=0.3), 8).probabilities(logits)
    assert np.array_equal(np.flatnonzero(probabilities), [5, 6, 7])
    assert_matches_transformers(logits, [], SamplingParams(top_p=0.3))


def test_top_k_ties_at_the_kth_value_all_stay():
    logits = np.array([3, 1, 2, 2, 2, 0], dtype=np.float32)
    probabilities = Sampler(SamplingParams(top_k=2), 6).probabilities(logits)
    assert np.array_equal(np.flatnonzero(probabilities), [0, 2, 3, 4])
    assert_matches_transformers(logits, [], SamplingParams(top_k=2))


def test_top_k_compares_after_dividing_by_the_temperature():
    """0.9999998 and 0.9999999 are different floats, but equal once divided by 3 in float32:
    transformers' top-k (after the temperature) keeps both."""
    below = np.float32(0.9999998)
    logits = np.array([0.5, np.nextafter(below, np.float32(2)), below, 0.2], dtype=np.float32)
    assert logits[2] / np.float32(3) == logits[1] / np.float32(3)
    params = SamplingParams(temperature=3.0, top_k=1)
    assert np.array_equal(np.flatnonzero(Sampler(params, 4).probabilities(logits)), [1, 2])
    assert_matches_transformers(logits, [], params)


def test_top_k_larger_than_the_vocabulary_keeps_everything():
    logits = np.random.default_rng(2).standard_normal(30).astype(np.float32)
    assert np.all(Sampler(SamplingParams(top_k=1000), 30).probabilities(logits) > 0)
    assert_matches_transformers(logits, [], SamplingParams(top_k=1000))


@pytest.mark.parametrize("top_p", [1e-9, 1e-6, 0.01])
def test_tiny_top_p_keeps_only_the_top_token(top_p):
    logits = np.random.default_rng(3).standard_normal(500).astype(np.float32)
    probabilities = Sampler(SamplingParams(top_p=top_p), 500).probabilities(logits)
    assert np.array_equal(np.flatnonzero(probabilities), [np.argmax(logits)])
    assert_matches_transformers(logits, [], SamplingParams(top_p=top_p))


def test_min_p_after_the_repetition_penalty():
    logits = np.array([5.0, 4.9, 4.0, 1.0, -2.0, 3.0], dtype=np.float32)
    params = SamplingParams(min_p=0.25, repetition_penalty=1.5)
    assert_matches_transformers(logits, [0, 0, 4], params)
    # 5.0 / 1.5 = 3.33 loses the lead to 4.9; 4.0 (e^-0.9 = 0.41 of the top) stays, 3.33 (e^-1.57 = 0.21) goes.
    probabilities = Sampler(params, 6).probabilities(logits, [0, 0, 4])
    assert np.array_equal(np.flatnonzero(probabilities), [1, 2])


def test_negative_logits_are_multiplied_by_the_penalty():
    logits = np.array([-1.0, -2.0, -0.5, 0.0, 2.0], dtype=np.float32)
    for penalty in [0.5, 1.7]:
        assert_matches_transformers(logits, [0, 2, 3, 4, 2], SamplingParams(repetition_penalty=penalty))
    assert_matches_transformers(-np.abs(np.random.default_rng(4).standard_normal(100)).astype(np.float32) * 5,
                                list(range(0, 100, 3)), SamplingParams(repetition_penalty=2.0, top_p=0.8))


def test_minus_infinity_logits_get_no_probability():
    logits = np.array([1.0, -np.inf, 0.5, -np.inf], dtype=np.float32)
    for params in [SamplingParams(), SamplingParams(top_p=0.9), SamplingParams(top_k=3, min_p=0.1)]:
        assert_matches_transformers(logits, [1], params)


# ---------------------------------------------------------------------------------------------
# Greedy
# ---------------------------------------------------------------------------------------------

def test_greedy_is_argmax_of_the_penalised_logits():
    rng = np.random.default_rng(5)
    for vocab in [1, 3, 1000, 49_152]:
        logits = rng.standard_normal(vocab).astype(np.float32)
        context = rng.integers(0, vocab, 10)
        for penalty in [1.0, 1.5]:
            params = SamplingParams(temperature=0.0, top_k=5, top_p=0.5, repetition_penalty=penalty)
            expected = int(np.argmax(hf_probabilities(logits, context, params)))
            sampler = Sampler(params, vocab)
            assert sampler.sample(logits.copy(), context.astype(np.int32)) == expected
            assert_matches_transformers(logits, context, params)


def test_greedy_ties_go_to_the_lowest_id_like_torch_argmax():
    logits = np.array([0.0, 2.0, 1.0, 2.0, 2.0], dtype=np.float32)
    assert int(torch.argmax(torch.from_numpy(logits))) == 1
    assert Sampler(SamplingParams(temperature=0.0), 5).sample(logits.copy()) == 1


# ---------------------------------------------------------------------------------------------
# Draws
# ---------------------------------------------------------------------------------------------

def draw(sampler: Sampler, logits: np.ndarray, count: int, context=()) -> np.ndarray:
    context = np.asarray(context, dtype=np.int32)
    return np.array([sampler.sample(logits.copy(), context) for _ in range(count)])


def test_same_seed_same_tokens_different_seed_different_tokens():
    logits = np.random.default_rng(6).standard_normal(32_000).astype(np.float32)
    params = SamplingParams(temperature=1.2, top_p=0.95, seed=1234)
    first = draw(Sampler(params, 32_000), logits, 50)
    assert np.array_equal(first, draw(Sampler(params, 32_000), logits, 50))
    params.seed = 1235
    assert not np.array_equal(first, draw(Sampler(params, 32_000), logits, 50))
    sampler = Sampler(params, 32_000)
    draw(sampler, logits, 7)
    sampler.reset(1234)
    assert np.array_equal(first, draw(sampler, logits, 50))


def test_seed_42_gives_the_recorded_tokens():
    """Pinned draws (every id kept, and a filtered list): the arithmetic is our own (xoshiro256**,
    exp, summation order), so these tokens must come out on every platform; a change here
    changes what users' seeds produce."""
    logits = np.linspace(-3.0, 3.0, 64, dtype=np.float32)
    assert draw(Sampler(SamplingParams(seed=42), 64), logits, 12).tolist() == [
        38, 53, 59, 63, 63, 61, 60, 62, 61, 58, 59, 51]
    params = SamplingParams(temperature=0.9, top_k=30, top_p=0.8, min_p=0.01, seed=42)
    assert draw(Sampler(params, 64), logits, 12).tolist() == [52, 57, 61, 63, 63, 62, 61, 62, 62, 60, 61, 56]


def chi_square_critical_value(degrees: int, z: float = 4.75) -> float:
    """The chi-square quantile at a one-sided normal z (4.75: p = 1e-6), Wilson-Hilferty approximation."""
    a = 2.0 / (9.0 * degrees)
    return degrees * (1.0 - a + z * math.sqrt(a)) ** 3


def chi_square(counts: np.ndarray, probabilities: np.ndarray, draws: int) -> tuple:
    """Pearson's statistic over the kept ids, the rare ones (expected < 5) pooled into one cell."""
    expected = probabilities * draws
    frequent = expected >= 5
    observed_cells = np.append(counts[frequent], counts[~frequent].sum())
    expected_cells = np.append(expected[frequent], expected[~frequent].sum())
    used = expected_cells > 0
    statistic = float(((observed_cells[used] - expected_cells[used]) ** 2 / expected_cells[used]).sum())
    return statistic, int(used.sum()) - 1


@pytest.mark.parametrize("settings", [
    dict(temperature=0.8, seed=7),                               # every id survives
    dict(top_k=20, seed=8),                                      # a short list of candidates
    dict(top_p=0.9, min_p=0.01, repetition_penalty=1.3, seed=9),
], ids=["temperature", "top_k", "top_p_min_p_penalty"])
def test_draw_frequencies_follow_the_probabilities(settings):
    params = SamplingParams(**settings)
    vocab, draws = 3000, 20_000
    rng = np.random.default_rng(10)
    logits = (rng.standard_normal(vocab) * 1.5).astype(np.float32)
    logits[:12] += np.linspace(6, 2, 12, dtype=np.float32)
    context = [0, 3, 5]
    sampler = Sampler(params, vocab)
    probabilities = sampler.probabilities(logits, context).astype(np.float64)
    tokens = draw(sampler, logits, draws, context)
    assert np.all(probabilities[tokens] > 0), "drew a token the filters removed"
    counts = np.bincount(tokens, minlength=vocab)
    statistic, degrees = chi_square(counts, probabilities, draws)
    assert statistic < chi_square_critical_value(degrees), f"chi-square {statistic:.1f} with {degrees} degrees"


def test_the_frequency_check_rejects_a_wrong_distribution():
    """The chi-square bound above is tight enough to catch a sampler that ignores the temperature."""
    vocab, draws = 3000, 20_000
    rng = np.random.default_rng(10)
    logits = (rng.standard_normal(vocab) * 1.5).astype(np.float32)
    logits[:12] += np.linspace(6, 2, 12, dtype=np.float32)
    tokens = draw(Sampler(SamplingParams(temperature=1.0, seed=7), vocab), logits, draws)
    wrong = Sampler(SamplingParams(temperature=0.9), vocab).probabilities(logits).astype(np.float64)
    statistic, degrees = chi_square(np.bincount(tokens, minlength=vocab), wrong, draws)
    assert statistic > chi_square_critical_value(degrees)


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("field, value, message", [
    ("temperature", -0.5, "temperature must be a finite number >= 0 (0 = greedy), got -0.5"),
    ("temperature", float("nan"), "temperature must be a finite number >= 0 (0 = greedy), got nan"),
    ("temperature", float("inf"), "temperature must be a finite number >= 0 (0 = greedy), got inf"),
    ("top_k", -1, "top_k must be >= 0 (0 = off), got -1"),
    ("top_p", 0.0, "top_p must be in (0, 1] (1 = off), got 0"),
    ("top_p", -0.1, "top_p must be in (0, 1] (1 = off), got -0.1"),
    ("top_p", 1.5, "top_p must be in (0, 1] (1 = off), got 1.5"),
    ("top_p", float("nan"), "top_p must be in (0, 1] (1 = off), got nan"),
    ("min_p", -0.1, "min_p must be in [0, 1) (0 = off), got -0.1"),
    ("min_p", 1.0, "min_p must be in [0, 1) (0 = off), got 1"),
    ("repetition_penalty", 0.0, "repetition_penalty must be a finite number > 0 (1 = off), got 0"),
    ("repetition_penalty", -1.0, "repetition_penalty must be a finite number > 0 (1 = off), got -1"),
])
def test_invalid_settings_raise_value_error_naming_field_and_value(field, value, message):
    with pytest.raises(ValueError, match=re.escape(f"[Sampler] {message}")):
        SamplingParams(**{field: value})
    params = SamplingParams()
    setattr(params, field, value)  # past the constructor: the Sampler checks again
    with pytest.raises(ValueError, match=re.escape(f"[Sampler] {message}")):
        Sampler(params, 10)


def test_invalid_vocab_size_raises():
    with pytest.raises(ValueError, match=re.escape("[Sampler] vocab_size must be >= 1, got 0")):
        Sampler(SamplingParams(), 0)


@pytest.mark.parametrize("temperature", [0.0, 1.0])
@pytest.mark.parametrize("bad, message", [
    (float("nan"), "logits[3] is NaN"),
    (float("inf"), "logits[3] is +inf"),
])
def test_invalid_logits_raise(temperature, bad, message):
    logits = np.zeros(10, dtype=np.float32)
    logits[3] = bad
    sampler = Sampler(SamplingParams(temperature=temperature), 10)
    with pytest.raises(ValueError, match=re.escape(message)):
        sampler.sample(logits.copy())
    with pytest.raises(ValueError, match=re.escape(message)):
        sampler.probabilities(logits)


def test_all_minus_infinity_logits_raise():
    with pytest.raises(ValueError, match=re.escape("every logit is -inf")):
        Sampler(SamplingParams(), 4).sample(np.full(4, -np.inf, dtype=np.float32))


def test_wrong_number_of_logits_raises():
    with pytest.raises(ValueError, match=re.escape("[Sampler] logits has 9 entries, expected vocab_size 10")):
        Sampler(SamplingParams(), 10).sample(np.zeros(9, dtype=np.float32))


@pytest.mark.parametrize("penalty", [1.0, 1.3])
@pytest.mark.parametrize("context, message", [
    ([1, 2, 10], "context[2] = 10 is not a token id: the vocabulary has 10 ids"),
    ([-1], "context[0] = -1 is not a token id: the vocabulary has 10 ids"),
])
def test_context_ids_out_of_range_raise(penalty, context, message):
    sampler = Sampler(SamplingParams(repetition_penalty=penalty), 10)
    logits = np.zeros(10, dtype=np.float32)
    with pytest.raises(ValueError, match=re.escape(f"[Sampler] {message}")):
        sampler.sample(logits.copy(), np.array(context, dtype=np.int32))
    with pytest.raises(ValueError, match=re.escape(f"[Sampler] {message}")):
        sampler.probabilities(logits, context)
    # A rejected context leaves no trace: the next step penalises only what it is given.
    np.testing.assert_allclose(sampler.probabilities(logits, [1]),
                               hf_probabilities(logits, [1], sampler.params), atol=TOLERANCE)

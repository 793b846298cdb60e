"""The realism screen: density ratios from a cross-fitted classifier, exact-size sampling with
inclusion probabilities min(1, r / M), and the generator's screened pool."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import polars as pl
import pytest
from synth_fakes import FakeTwin

from organsim.data import Cohort
from organsim.synth import CohortSynthesizer, SynthesisConfig
from organsim.synth.screening import (
    CLOSENESS_QUANTILE,
    RealismScreen,
    allocate,
    inclusion_probabilities,
    realism_ratios,
    systematic_sample,
)


@pytest.fixture(scope="module")
def synthesizer(untreated_cohort) -> CohortSynthesizer:
    """Fitted on the PhysioNet-like engine cohort's train split; its ``screen`` is the realism screen."""
    return CohortSynthesizer.fit(untreated_cohort.subset(split="train"), initial_hours=2)


def _pool(synthesizer: CohortSynthesizer, catalog, **settings):
    """A generated pool of stays (fake twin, 8-hour segments)."""
    return synthesizer.generate(FakeTwin(catalog), SynthesisConfig(segment_hours=8, context_hours=12, **settings)).cohort


def test_inclusion_probabilities_are_proportional_to_the_ratio_capped_at_one_and_sum_to_n() -> None:
    ratio = np.array([10.0, 1.0, 1.0, 2.0, 0.0])
    probability = inclusion_probabilities(ratio, 2)
    # 10 alone would take 2 * 10 / 14 > 1: capped at 1, the other 1 shared as 1 : 1 : 2 : 0
    np.testing.assert_allclose(probability, [1.0, 0.25, 0.25, 0.5, 0.0])
    np.testing.assert_allclose(inclusion_probabilities(ratio, 5), np.ones(5))
    np.testing.assert_allclose(inclusion_probabilities(ratio, 0), np.zeros(5))


def test_systematic_sampling_draws_exactly_n_with_the_inclusion_probabilities() -> None:
    probability = np.array([1.0, 0.25, 0.25, 0.5, 0.0, 0.5, 0.5])  # sums to 3
    rng = np.random.default_rng(0)
    counts = np.zeros(len(probability))
    for _ in range(4000):
        picked = systematic_sample(probability, rng)
        assert len(picked) == 3 and len(set(picked.tolist())) == 3
        counts[picked] += 1
    np.testing.assert_allclose(counts / 4000, probability, atol=0.03)


def test_the_ratio_is_high_where_the_pool_looks_real_and_low_where_it_does_not() -> None:
    rng = np.random.default_rng(1)
    real = pl.DataFrame({"x": rng.normal(0.0, 1.0, 1500)})
    # half the pool looks real, half lies far off
    pool = pl.DataFrame({"x": np.concatenate([rng.normal(0.0, 1.0, 750), rng.normal(6.0, 1.0, 750)])})
    ratios = realism_ratios(real, pool, seed=0)
    assert ratios.auroc > 0.7
    assert np.median(ratios.ratio[:750]) > 1.0 > 0.05 > np.median(ratios.ratio[750:])
    # the real distribution is half the pool's density where they overlap: the ratio there is near 2
    assert 1.4 < np.median(ratios.ratio[:750]) < 2.8


def test_the_screen_keeps_what_is_asked_of_each_status_and_mostly_the_real_looking_stays(synthesizer, catalog) -> None:
    pool = _pool(synthesizer, catalog, patients=24, max_hours=24, seed=3, septic_fraction=0.25)
    screen = synthesizer.screen
    assert isinstance(screen, RealismScreen)
    kept, record = screen.select(pool, {True: 3, False: 9}, seed=0)
    septic = dict(zip(pool.stays["stay_id"].to_list(), pool.stays["sepsis"].to_list(), strict=True))
    assert len(kept) == 12 and sum(septic[i] for i in kept) == 3
    assert record["pool_stays"] == 24 and record["kept"] == 12 and 0 < record["effective_share"] <= 1
    assert kept == screen.select(pool, {True: 3, False: 9}, seed=0)[0]  # deterministic for a seed


def test_the_generator_screens_a_pool_of_the_asked_factor(synthesizer, catalog) -> None:
    base = SynthesisConfig(patients=12, max_hours=24, seed=5, septic_fraction=0.25, segment_hours=8, context_hours=12)
    plain = synthesizer.generate(FakeTwin(catalog), base)
    screened = synthesizer.generate(FakeTwin(catalog), replace(base, screen_pool=2.0))
    assert plain.screen is None and "screen" not in plain.cohort.meta["provenance"]
    assert screened.cohort.stays.height == 12 and int(screened.cohort.stays["sepsis"].sum()) == 3
    assert screened.cohort.stays["stay_id"].to_list() == list(range(1, 13))
    assert screened.screen["pool_stays"] == 24 and screened.screen["kept"] == 12
    assert sum(screened.candidates.values()) >= 24
    assert screened.cohort.meta["provenance"]["screen"] == screened.screen
    # the kept stays are stays of the pool, whole: their hours are the pool's hours of that stay
    assert screened.cohort.hourly.group_by("stay_id").len().height == 12


@pytest.mark.parametrize("pool", [0.5, float("inf"), float("nan")])
def test_a_pool_factor_below_one_or_not_finite_is_refused(pool: float) -> None:
    with pytest.raises(ValueError, match="screen_pool"):
        SynthesisConfig(patients=4, max_hours=12, screen_pool=pool)


def test_allocation_follows_the_shares_and_gives_what_a_group_lacks_to_the_others() -> None:
    np.testing.assert_array_equal(allocate(10, np.array([0.5, 0.3, 0.2, 0.0]), np.array([9, 9, 9, 9])), [5, 3, 2, 0])
    # the first group holds only 2: its other 3 go to the rest in proportion 3 : 2
    np.testing.assert_array_equal(allocate(10, np.array([0.5, 0.3, 0.2, 0.0]), np.array([2, 9, 9, 9])), [2, 5, 3, 0])
    # only groups without a share have room left: they take the rest alike
    np.testing.assert_array_equal(allocate(6, np.array([1.0, 0.0, 0.0]), np.array([2, 2, 9])), [2, 2, 2])
    assert allocate(50, np.array([0.5, 0.5]), np.array([3, 4])).sum() == 7  # never more than the pool holds


def test_the_kept_lengths_follow_the_training_stays_length_bands(synthesizer, catalog) -> None:
    pool = _pool(synthesizer, catalog, patients=40, max_hours=36, seed=4, septic_fraction=0.0)
    screen = synthesizer.screen
    kept, _ = screen.select(pool, {True: 0, False: 12}, seed=1)
    bands = np.searchsorted(screen.length_edges, pool.subset(kept).stays["n_hours"].to_numpy(), side="right")
    available = np.bincount(np.searchsorted(screen.length_edges, pool.stays["n_hours"].to_numpy(), side="right"), minlength=4)
    expected = allocate(12, screen.shares[0], available)
    np.testing.assert_array_equal(np.bincount(bands, minlength=4), expected)


def test_the_closeness_floor_is_a_low_quantile_of_the_training_stays_leave_one_out_distances(synthesizer, untreated_cohort) -> None:
    screen = synthesizer.screen
    train = untreated_cohort.subset(split="train")
    vectors = screen.embedding.transform(train)
    assert vectors.shape == screen.train_vectors.shape == (train.stays.height, len(screen.embedding.columns))
    # the floor sits at CLOSENESS_QUANTILE of the distances from each training stay to its nearest other one
    others = np.linalg.norm(vectors[:, None, :] - vectors[None, :, :], axis=2) + np.diag(np.full(len(vectors), np.inf))
    assert screen.closeness_floor == pytest.approx(float(np.quantile(others.min(axis=1), CLOSENESS_QUANTILE)))
    assert 0 < screen.closeness_floor < float(np.median(others.min(axis=1)))


def test_the_screen_never_keeps_a_stay_nearer_a_training_stay_than_the_floor(synthesizer, untreated_cohort, catalog) -> None:
    generated = _pool(synthesizer, catalog, patients=24, max_hours=24, seed=6, septic_fraction=0.0)
    # six training stays without sepsis copied into the pool under new ids: as real as can be, at distance 0
    train = untreated_cohort.subset(split="train")
    copied = train.stays.filter(~pl.col("sepsis"))["stay_id"].to_list()[:6]
    offset = int(generated.stays["stay_id"].max())
    copies = train.subset(copied)
    stays = copies.stays.with_columns(pl.col("stay_id") + offset, pl.col("subject_id") + offset)
    hourly = copies.hourly.with_columns(pl.col("stay_id") + offset)
    pool = Cohort.from_frames(pl.concat([generated.stays, stays.select(generated.stays.columns)], how="vertical_relaxed"),
                              pl.concat([generated.hourly, hourly.select(generated.hourly.columns)], how="vertical_relaxed"),
                              source="synthetic")
    copy_ids = {i + offset for i in copied}
    kept, record = synthesizer.screen.select(pool, {True: 0, False: 12}, seed=0)
    assert len(kept) == 12 and not copy_ids & set(kept)
    assert record["too_close"] >= 6 and record["closeness_floor"] == round(synthesizer.screen.closeness_floor, 4)
    # asked for more than lie beyond the floor, the screen keeps the farthest: every stay when all are asked for
    everything, _ = synthesizer.screen.select(pool, {True: 0, False: pool.stays.height}, seed=0)
    assert set(everything) == set(pool.stays["stay_id"].to_list())

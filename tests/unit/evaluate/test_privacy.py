"""Privacy: distances to the closest record and the membership attack, on copies and fresh samples."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from synthetic_cohorts import random_cohort

from organsim.data import Cohort
from organsim.data.summaries import StayEmbedding, nearest_distances
from organsim.evaluate.privacy import DistanceToClosestRecord, MembershipInference, privacy_metrics

VARIABLES = ["hr", "map", "lactate"]


def test_nearest_distances_by_hand() -> None:
    records = np.array([[0.0, 0.0], [3.0, 4.0]])
    queries = np.array([[0.0, 1.0], [3.0, 4.0], [6.0, 8.0]])
    assert nearest_distances(queries, records).tolist() == [1.0, 0.0, 5.0]
    with pytest.raises(ValueError, match="no records"):
        nearest_distances(queries, np.zeros((0, 2)))
    # leave one out: each record's distance to its nearest other record
    points = np.array([[0.0, 0.0], [0.0, 2.0], [10.0, 0.0]])
    assert nearest_distances(points, points, leave_one_out=True).tolist() == [2.0, 2.0, 10.0]
    with pytest.raises(ValueError, match="two records"):
        nearest_distances(points[:1], points[:1], leave_one_out=True)


def test_dcr_summary_by_hand() -> None:
    summary = DistanceToClosestRecord(np.array([0.0, 1.0, 2.0, 3.0, 4.0]), np.array([2.0, 4.0, 6.0])).summary()
    assert summary["synthetic_to_train"]["median"] == 2.0 and summary["holdout_to_train"]["median"] == 4.0
    assert summary["median_ratio"] == 0.5 and summary["synthetic_not_closer_at_median"] is False
    assert summary["holdout_to_train"]["p05"] == pytest.approx(2.2)
    assert summary["share_closer_than_holdout_p05"] == 0.6  # 0, 1 and 2 are below 2.2
    assert summary["exact_copies"] == 1
    low, high = summary["median_ratio_interval_95"]
    assert 0 <= low <= 0.5 <= high and summary == DistanceToClosestRecord(
        np.array([0.0, 1.0, 2.0, 3.0, 4.0]), np.array([2.0, 4.0, 6.0])).summary()  # seeded


def test_median_ratio_interval_covers_one_for_two_samples_of_one_population() -> None:
    rng = np.random.default_rng(0)
    dcr = DistanceToClosestRecord(rng.gamma(9, 1, 2000), rng.gamma(9, 1, 1000))
    low, high = dcr.median_ratio_interval(seed=1)
    assert low < 1 < high and high - low < 0.1
    shifted = DistanceToClosestRecord(rng.gamma(9, 1, 2000) * 0.8, rng.gamma(9, 1, 1000))
    assert shifted.median_ratio_interval(seed=1)[1] < 1


def test_attack_auroc_by_hand() -> None:
    attack = MembershipInference(members=np.array([-0.1, -0.2, -3.0]), non_members=np.array([-1.0, -2.0]))
    assert attack.auroc == pytest.approx(4 / 6)  # pairs (member closer than non-member): 2 + 2 + 0 of 6
    assert attack.summary() == {"auroc": pytest.approx(4 / 6), "members": 3, "non_members": 2}


def test_embedding_uses_real_train_statistics_and_drops_constant_columns() -> None:
    real = random_cohort(30, seed=0)
    embedding = StayEmbedding.fit(real, [*VARIABLES, "creatinine"])
    assert "n_hours" not in embedding.columns  # every stay has 12 hours: constant
    assert not any(c.startswith("creatinine") for c in embedding.columns)  # never measured
    vectors = embedding.transform(real)
    assert vectors.shape == (30, len(embedding.columns))
    np.testing.assert_allclose(vectors.mean(axis=0), 0, atol=1e-9)
    np.testing.assert_allclose(vectors.std(axis=0), 1, atol=1e-9)


def test_a_copy_of_real_train_is_caught() -> None:
    real_train, real_test = random_cohort(80, seed=0), random_cohort(40, seed=1, first_id=500)
    copy = Cohort.from_frames(real_train.stays.with_columns(pl.col("stay_id") + 10_000),
                              real_train.hourly.with_columns(pl.col("stay_id") + 10_000), source="synthetic")
    summary, dcr, attack = privacy_metrics(real_train, copy, real_test, VARIABLES)
    assert summary["distance_to_closest_record"]["exact_copies"] == 80
    assert summary["distance_to_closest_record"]["synthetic_not_closer_at_median"] is False
    assert summary["membership_inference"]["auroc"] == 1.0  # every member has a synthetic twin at distance 0
    assert np.all(dcr.synthetic < 1e-6) and np.all(dcr.holdout > 0.1)  # 1e-6: float rounding in the distance


def test_a_fresh_sample_leaks_nothing() -> None:
    real_train, real_test = random_cohort(200, seed=0), random_cohort(200, seed=1, first_id=500)
    fresh = random_cohort(200, seed=2, first_id=1000)
    summary, _, _ = privacy_metrics(real_train, fresh, real_test, VARIABLES)
    assert 0.8 < summary["distance_to_closest_record"]["median_ratio"] < 1.25
    assert summary["distance_to_closest_record"]["exact_copies"] == 0
    assert abs(summary["membership_inference"]["auroc"] - 0.5) < 0.08
    assert summary == privacy_metrics(real_train, fresh, real_test, VARIABLES)[0]  # deterministic

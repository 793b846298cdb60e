"""Fidelity measures: hand-computed distances, correlations, sequence statistics, detection."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from synthetic_cohorts import random_cohort

from organsim.data import Cohort
from organsim.evaluate.fidelity import (
    CorrelationComparison,
    compare_correlations,
    correlation_matrix,
    detection_auroc,
    distribution_distances,
    hourly_changes,
    measured_variables,
    missingness_rates,
    sequence_distances,
    stay_summaries,
    subsample_stays,
)


def cohort_of(hourly: dict, stays: dict | None = None) -> Cohort:
    hourly_frame = pl.DataFrame(hourly).with_columns(pl.selectors.float().fill_nan(None))  # null = not measured
    ids = hourly_frame["stay_id"].unique().sort()
    return Cohort.from_frames(pl.DataFrame(stays or {"stay_id": ids, "sepsis": [False] * len(ids)}), hourly_frame,
                              source="test")


def test_distribution_distances_of_a_shift() -> None:
    real = random_cohort(40, seed=0)
    shifted = Cohort.from_frames(real.stays, real.hourly.with_columns(pl.col("hr") + 10), source="test")
    same = distribution_distances(real, real, ["hr", "lactate"])
    assert same["per_variable"]["hr"]["ks"] == 0 and same["per_variable"]["hr"]["wasserstein"] == 0
    moved = distribution_distances(real, shifted, ["hr", "map"])["per_variable"]
    assert moved["hr"]["wasserstein"] == pytest.approx(10, abs=1e-4)  # a shift moves every unit of mass by 10
    assert moved["hr"]["wasserstein_normalised"] == pytest.approx(10 / moved["hr"]["std_reference"], rel=1e-6)
    assert moved["hr"]["mean_candidate"] - moved["hr"]["mean_reference"] == pytest.approx(10, abs=1e-4)
    assert moved["map"]["ks"] == 0
    assert 0.2 < moved["hr"]["ks"] < 1


def test_too_few_values_give_no_distance() -> None:
    real = random_cohort(4, seed=0)  # 12 lactate values: below MIN_VALUES
    result = distribution_distances(real, real, ["lactate", "creatinine"])
    assert result["per_variable"]["lactate"]["ks"] is None and result["per_variable"]["lactate"]["n_reference"] == 12
    assert result["per_variable"]["creatinine"]["n_candidate"] == 0
    assert result["mean_ks"] is None
    assert measured_variables(real) == ["hr", "map", "lactate"]
    assert measured_variables(real, min_values=13) == ["hr", "map"]


def test_pairwise_complete_correlation_equals_numpy_on_the_shared_rows() -> None:
    rng = np.random.default_rng(1)
    hr = rng.normal(80, 10, 300)
    map_ = np.where(np.arange(300) % 3 == 0, np.nan, 100 - 0.5 * hr + rng.normal(0, 4, 300))
    lactate = np.where(np.arange(300) % 10 == 0, rng.normal(2, 0.5, 300), np.nan)  # 30 values
    cohort = cohort_of({"stay_id": np.repeat(np.arange(10), 30), "hour": np.tile(np.arange(1, 31), 10), "hr": hr,
                        "map": map_, "lactate": lactate})
    corr = correlation_matrix(cohort, ["hr", "map", "lactate"], min_pairs=100)
    stored = cohort.hourly.select(pl.col("hr", "map").cast(pl.Float64)).drop_nulls().to_numpy()  # the float32 values
    assert len(stored) == 200
    assert corr[0, 1] == pytest.approx(np.corrcoef(stored[:, 0], stored[:, 1])[0, 1], abs=1e-9)
    assert corr[1, 0] == corr[0, 1] and corr[0, 0] == pytest.approx(1.0)
    assert np.isnan(corr[0, 2]) and np.isnan(corr[2, 2])  # 30 pairs < 100
    assert not np.isnan(correlation_matrix(cohort, ["hr", "lactate"], min_pairs=30)[0, 1])


def test_correlation_comparison_summary_by_hand() -> None:
    nan = np.nan
    reference = np.array([[1, 0.5, 0.2], [0.5, 1, nan], [0.2, nan, 1]])
    candidate = np.array([[1, 0.1, 0.2], [0.1, 1, 0.3], [0.2, 0.3, 1]])
    summary = CorrelationComparison(["a", "b", "c"], reference, candidate).summary()
    assert summary["pairs"] == 2  # (a, b) and (a, c); (b, c) is not estimable in the reference
    assert summary["mean_abs_difference"] == pytest.approx(0.2)
    assert summary["max_abs_difference"] == pytest.approx(0.4)
    assert summary["frobenius"] == pytest.approx(np.sqrt(2 * 0.16))
    assert compare_correlations(random_cohort(20, 0), random_cohort(20, 0), ["hr", "map"]).summary()["mean_abs_difference"] == 0


def test_sequence_statistics_by_hand() -> None:
    cohort = cohort_of({"stay_id": [1, 1, 1, 1, 2, 2], "hour": [1, 2, 4, 5, 1, 2],
                        "hr": [80.0, 90.0, 70.0, None, 60.0, 66.0]})
    assert hourly_changes(cohort, "hr").tolist() == [10.0, 6.0]  # 2-1 and stay 2; 4-2 is not consecutive
    summary = stay_summaries(cohort, ["hr"]).row(0, named=True)
    assert (summary["hr_mean"], summary["hr_min"], summary["hr_max"], summary["hr_first"], summary["hr_last"]) == (80, 70, 90, 80, 70)
    assert summary["hr_std"] == pytest.approx(10.0)  # sample standard deviation
    assert summary["hr_measured_fraction"] == 0.75 and summary["hr_mean_abs_change"] == 10 and summary["n_hours"] == 4
    assert stay_summaries(cohort, ["map"]).row(1, named=True)["map_mean"] is None
    result = sequence_distances(cohort, cohort, ["hr"])
    assert result["stay_length"]["n_reference"] == 2 and result["per_variable"]["hr"]["hourly_change"]["ks"] is None


def test_sequence_distances_see_longer_stays() -> None:
    short, long = random_cohort(30, seed=0, hours=12), random_cohort(30, seed=0, hours=24)
    result = sequence_distances(short, long, ["hr"])
    assert result["stay_length"]["ks"] == 1.0 and result["stay_length"]["wasserstein"] == 12
    assert result["per_variable"]["hr"]["stay_mean"]["ks"] < 0.3  # same stay levels


def test_missingness_rates_by_hand() -> None:
    a = cohort_of({"stay_id": [1, 1, 1, 1], "hour": [1, 2, 3, 4], "hr": [80.0, None, None, 81.0]})
    b = cohort_of({"stay_id": [1, 1], "hour": [1, 2], "hr": [80.0, 80.0]})
    rates = missingness_rates(a, b, ["hr", "map"])
    assert rates["per_variable"]["hr"] == {"reference": 0.5, "candidate": 0.0, "abs_difference": 0.5}
    assert rates["per_variable"]["map"]["abs_difference"] == 0
    assert rates["mean_abs_difference"] == 0.25


def test_detection_separates_a_shifted_cohort_and_not_a_fresh_sample() -> None:
    real = random_cohort(150, seed=0)
    fresh = random_cohort(150, seed=1, first_id=1000)
    shifted = random_cohort(150, seed=2, hr_shift=40, first_id=1000)
    variables = ["hr", "map", "lactate"]
    same = detection_auroc(real, fresh, variables, folds=3, seed=0)
    different = detection_auroc(real, shifted, variables, folds=3, seed=0)
    assert abs(same["auroc"] - 0.5) < 0.12
    assert different["auroc"] > 0.95
    assert different["top_features"][0][0].startswith(("hr_", "map_"))
    assert same["stays_per_cohort"] == 150 and len(same["fold_aurocs"]) == 3
    assert detection_auroc(real, fresh, variables, folds=3, seed=0) == same  # seeded
    assert detection_auroc(real, fresh, variables, folds=3, max_stays=40, seed=0)["stays_per_cohort"] == 40
    with pytest.raises(ValueError, match="folds must be at least 2"):
        detection_auroc(real, fresh, variables, folds=1)


def test_subsample_stays() -> None:
    cohort = random_cohort(30, seed=0)
    assert subsample_stays(cohort, None, 0) is cohort and subsample_stays(cohort, 30, 0) is cohort
    part = subsample_stays(cohort, 10, seed=4)
    assert part.stays.height == 10 and part.hourly.height == 120
    assert part.stay_ids == subsample_stays(cohort, 10, seed=4).stay_ids != subsample_stays(cohort, 10, seed=5).stay_ids

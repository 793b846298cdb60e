"""The calibration report's statistics and tolerances, on small hand-made cohorts."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from organsim.data import Cohort
from organsim.physiology.calibration import (
    MEDIAN_TOLERANCE,
    MIN_STAYS,
    TAIL_TOLERANCE,
    compare_to_reference,
    marginal_statistics,
)


def _cohort(n_stays: int, *, map_shift: float = 0.0, map_every: int = 1, seed: int = 0) -> Cohort:
    """``n_stays`` stays of 10 hours, every other one septic; MAP measured every ``map_every`` hours."""
    rng = np.random.default_rng(seed)
    ids = np.repeat(np.arange(1, n_stays + 1), 10)
    hours = np.tile(np.arange(1, 11), n_stays)
    mean_ap = 80.0 + 10.0 * rng.standard_normal(ids.size) + map_shift
    mean_ap[(hours - 1) % map_every != 0] = np.nan
    hourly = pl.DataFrame({"stay_id": ids, "hour": hours, "map": mean_ap, "hr": 90.0 + 0.0 * ids}).with_columns(
        pl.col("map").fill_nan(None)
    )
    stays = pl.DataFrame({"stay_id": np.arange(1, n_stays + 1), "sepsis": np.arange(n_stays) % 2 == 1})
    return Cohort.from_frames(stays, hourly, source="table")


def test_marginal_statistics_by_group() -> None:
    stats = marginal_statistics(_cohort(60, map_every=2), ["map", "hr"])
    row = stats.filter((pl.col("variable") == "map") & (pl.col("group") == "septic")).row(0, named=True)
    assert row["n_values"] == 30 * 5 and row["n_stays"] == 30
    assert row["measured_fraction"] == pytest.approx(0.5)
    hr = stats.filter((pl.col("variable") == "hr") & (pl.col("group") == "all")).row(0, named=True)
    assert hr["q05"] == hr["q50"] == hr["q95"] == 90.0


def test_a_cohort_matches_itself_and_a_shifted_one_fails() -> None:
    reference = _cohort(200)
    same = compare_to_reference(reference, reference)
    assert same.passed and all(row.difference == 0 for row in same.rows if row.tested and row.variable in ("map", "hr"))
    stats = marginal_statistics(reference, ["map"]).filter(pl.col("group") != "all")
    spreads = (stats["q95"] - stats["q05"]).to_list()  # the reference 5-95 % range of each group
    inside = compare_to_reference(_cohort(200, map_shift=0.9 * MEDIAN_TOLERANCE * min(spreads)), reference)
    assert all(r.passed for r in inside.rows if r.variable == "map" and r.statistic == "q50")
    outside = compare_to_reference(_cohort(200, map_shift=1.2 * TAIL_TOLERANCE * max(spreads)), reference)
    assert {("map", "q05"), ("map", "q50"), ("map", "q95")} <= {(r.variable, r.statistic) for r in outside.failures()}
    assert not outside.passed


def test_measured_fraction_is_compared_on_the_log_odds_scale() -> None:
    reference = _cohort(200, map_every=2)
    sparser = compare_to_reference(_cohort(200, map_every=5), reference)  # 0.5 -> 0.2: log-odds -1.39
    assert ("map", "measured_fraction") in {(r.variable, r.statistic) for r in sparser.failures()}


def test_quantiles_resting_on_few_stays_are_reported_not_tested() -> None:
    few = _cohort(2 * (MIN_STAYS - 1))
    report = compare_to_reference(_cohort(400, map_shift=40.0), few)
    quantiles = [r for r in report.rows if r.variable == "map" and r.statistic != "measured_fraction" and r.group != "all"]
    assert quantiles and not any(r.tested for r in quantiles) and not any(r.passed for r in quantiles)
    assert report.to_dict()["n_failed"] == len(report.failures())

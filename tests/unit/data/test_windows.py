"""Forecast windows: what a forecaster sees (context, planned treatments, statics) and the truth it is scored on."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from organsim.data import Cohort
from organsim.data.windows import (
    STARTS_SCHEMA,
    ForecastBatch,
    Forecaster,
    HourlyArrays,
    choose_starts,
    forecast_batch,
    forecast_targets,
)


def starts_of(pairs: list[tuple[int, int]]) -> pl.DataFrame:
    return pl.DataFrame({"stay_id": [s for s, _ in pairs], "hour": [h for _, h in pairs]}, schema=STARTS_SCHEMA)


def long_cohort(n_stays: int = 30, n_hours: int = 20) -> Cohort:
    """``n_stays`` stays of ``n_hours`` hours (stay i starts at hour i % 3), HR measured every hour."""
    rows = [(s, (s % 3) + h, 60.0 + s + h) for s in range(1, n_stays + 1) for h in range(n_hours)]
    hourly = pl.DataFrame({"stay_id": [r[0] for r in rows], "hour": [r[1] for r in rows], "hr": [r[2] for r in rows]})
    stays = pl.DataFrame({"stay_id": list(range(1, n_stays + 1)), "sepsis": [s % 4 == 0 for s in range(1, n_stays + 1)]})
    return Cohort.from_frames(stays, hourly, source="test")


def test_context_is_nan_before_the_stay_and_treatments_are_given_then_planned(small_cohort, catalog):
    batch = forecast_batch(small_cohort, starts_of([(12, 3)]), context_hours=4, horizon=2)
    hr, lactate = catalog.variable_codes.index("hr"), catalog.variable_codes.index("lactate")
    # stay 12 starts at hour 1: the context hours are 0, 1, 2, 3 and hour 0 is before the stay
    np.testing.assert_array_equal(batch.values[0, :, hr], [np.nan, 100, 105, 110])
    np.testing.assert_array_equal(batch.values[0, :, lactate], [np.nan, np.nan, 2.5, np.nan])
    assert batch.values.shape == (1, 4, len(catalog.variable_codes))
    # treatments of hours 0..5: nothing recorded before hour 4 (defaults), then the planned hours 4 and 5
    fluids = batch.treatment_codes.index("iv_fluid_ml")
    noradrenaline = batch.treatment_codes.index("norepinephrine")
    np.testing.assert_array_equal(batch.treatments[0, :, fluids], [0, 0, 0, 0, 500, 250])
    np.testing.assert_allclose(batch.treatments[0, :, noradrenaline], [0, 0, 0, 0, 0, 0.1])
    assert batch.treatments.shape == (1, 6, len(catalog.treatment_codes))
    assert batch.horizon == 2 and batch.context_hours == 4
    static = dict(zip(batch.static_codes, batch.static[0], strict=True))
    assert static["age"] == 71.0 and static["sex"] == 0 and static["hosp_adm_hours"] == 0.0
    assert np.isnan(static["weight"])


def test_a_batch_never_holds_future_values(small_cohort):
    batch = forecast_batch(small_cohort, starts_of([(12, 3)]), context_hours=3, horizon=3)
    hr = batch.variables.index("hr")
    assert 115.0 not in batch.values[..., hr]  # hour 4, the first future hour
    assert not hasattr(batch, "targets")


def test_targets_are_the_observed_future_values(small_cohort, catalog):
    truth = forecast_targets(small_cohort, starts_of([(12, 3), (11, 1)]), horizon=2)
    hr, lactate = catalog.variable_codes.index("hr"), catalog.variable_codes.index("lactate")
    np.testing.assert_array_equal(truth[0, :, hr], [115, 120])
    np.testing.assert_array_equal(truth[0, :, lactate], np.array([np.nan, 4.1], dtype=np.float32))
    np.testing.assert_array_equal(truth[1, :, hr], [np.nan, 82.5])  # stay 11, hour 2 has no HR


def test_hours_past_the_stay_end_are_nan_and_default(small_cohort):
    arrays = HourlyArrays.from_cohort(small_cohort)
    batch = arrays.batch(starts_of([(14, 4)]), context_hours=2, horizon=2)
    hr = batch.variables.index("hr")
    np.testing.assert_array_equal(batch.values[0, :, hr], [70, 71])
    assert np.isnan(arrays.targets(starts_of([(14, 4)]), horizon=2)).all()
    assert (batch.treatments[0, 2:] == 0).all()


def test_choose_starts_keeps_the_horizon_inside_the_stay_and_enough_context(small_cohort):
    starts = choose_starts(small_cohort, horizon=2, per_stay=None, min_context=2, seed=0)
    # only stay 12 (hours 1..6) has t >= 1 + 2 - 1 and t + 2 <= 6
    assert starts.rows() == [(12, 2), (12, 3), (12, 4)]
    assert starts.schema == pl.Schema(STARTS_SCHEMA)


def test_choose_starts_is_seeded_capped_and_stable_under_subsetting():
    cohort = long_cohort()
    a = choose_starts(cohort, horizon=6, per_stay=3, min_context=4, seed=7)
    b = choose_starts(cohort, horizon=6, per_stay=3, min_context=4, seed=7)
    c = choose_starts(cohort, horizon=6, per_stay=3, min_context=4, seed=8)
    assert a.equals(b)
    assert not a.equals(c)
    assert a.group_by("stay_id").len()["len"].to_list() == [3] * 30
    spans = cohort.hourly.group_by("stay_id").agg(pl.col("hour").min().alias("first"), pl.col("hour").max().alias("last"))
    checked = a.join(spans, on="stay_id")
    assert (checked["hour"] >= checked["first"] + 3).all() and (checked["hour"] + 6 <= checked["last"]).all()
    sub = choose_starts(cohort.subset([4, 9, 17]), horizon=6, per_stay=3, min_context=4, seed=7)
    assert sub.equals(a.filter(pl.col("stay_id").is_in([4, 9, 17])))


def test_bad_starts_and_shapes_are_refused(small_cohort):
    with pytest.raises(KeyError, match="999"):
        forecast_batch(small_cohort, starts_of([(999, 1)]), context_hours=2, horizon=1)
    with pytest.raises(ValueError, match="columns"):
        forecast_batch(small_cohort, pl.DataFrame({"stay_id": [12]}), context_hours=2, horizon=1)
    with pytest.raises(ValueError, match="values must be"):
        ForecastBatch(
            stay_ids=np.array([1]), start_hours=np.array([0], np.int32), values=np.zeros((1, 2, 3), np.float32),
            treatments=np.zeros((1, 3, 1), np.float32), static=np.zeros((1, 1), np.float32),
            variables=("a", "b"), treatment_codes=("x",), static_codes=("s",),
        )


def test_select_and_the_protocol(small_cohort):
    batch = forecast_batch(small_cohort, starts_of([(12, 3), (15, 2)]), context_hours=2, horizon=1)
    second = batch.select(np.array([1]))
    assert second.stay_ids.tolist() == [15] and second.values.shape[0] == 1

    class Persistence:
        name = "persistence"

        def predict(self, batch: ForecastBatch, horizon: int) -> np.ndarray:
            return np.repeat(batch.values[:, -1:], horizon, axis=1)

    assert isinstance(Persistence(), Forecaster)

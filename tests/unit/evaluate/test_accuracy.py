"""The accuracy harness: nMSE by hand, step h of an h-step forecast, metrics.json layout."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from organsim.catalog import SYSTEMS
from organsim.data import Cohort
from organsim.data.normalize import Normaliser
from organsim.data.windows import ForecastBatch, choose_starts, forecast_targets
from organsim.evaluate.accuracy import (
    aggregate,
    evaluate_forecasters,
    metrics_document,
    squared_error_sums,
    write_metrics,
)

VARIABLES = ("hr", "map", "spo2", "creatinine")


def hand_normaliser() -> Normaliser:
    return Normaliser(
        codes=VARIABLES,
        mean=np.array([80.0, 80.0, 95.0, 1.0]),
        std=np.array([10.0, 20.0, 5.0, 1.0]),
        p01=np.array([40.0, 50.0, 80.0, 0.0]),
        p99=np.array([140.0, 130.0, 100.0, 5.0]),
        n_observed=np.array([10, 10, 10, 10]),
    )


def test_nmse_and_minmax_by_hand(catalog):
    truth = np.array([[90.0, 80.0, np.nan, 2.0], [np.nan, 100.0, np.nan, np.nan], [70.0, np.nan, np.nan, np.nan]])
    prediction = np.array([[80.0, 60.0, 95.0, 1.0], [50.0, 100.0, 95.0, np.nan], [90.0, 0.0, 95.0, 1.0]])
    sums = squared_error_sums(prediction, truth, hand_normaliser(), VARIABLES)
    np.testing.assert_allclose(sums[0], [1 + 4, 1 + 0, 0, 1])
    np.testing.assert_array_equal(sums[2], [2, 2, 0, 1])
    result = aggregate(*sums, VARIABLES, catalog)
    assert result["variables"]["hr"]["nmse"] == pytest.approx(2.5)
    assert result["variables"]["map"]["nmse"] == pytest.approx(0.5)
    assert result["variables"]["spo2"] == {"nmse": None, "mse_minmax": None, "n_targets": 0}
    assert result["systems"]["cardiovascular"]["nmse"] == pytest.approx(1.5)  # mean of hr and map
    assert result["systems"]["renal"]["nmse"] == pytest.approx(1.0)
    assert result["systems"]["respiratory"]["nmse"] is None  # no observed SpO2 target
    assert result["mean_nmse"] == pytest.approx(1.25)  # systems with targets only
    # min-max: errors / (p99 - p01): hr (-0.1, 0.2), map (-0.25, 0), creatinine -0.2
    assert result["systems"]["cardiovascular"]["mse_minmax"] == pytest.approx(((0.01 + 0.04) / 2 + 0.0625 / 2) / 2)
    assert result["mean_mse_minmax"] == pytest.approx((0.028125 + 0.04) / 2)
    assert result["n_targets"] == 5 and result["systems"]["cardiovascular"]["n_targets"] == 4


def test_a_missing_forecast_where_the_truth_is_observed_is_an_error():
    truth = np.array([[90.0, np.nan, np.nan, np.nan]])
    with pytest.raises(ValueError, match="'hr'"):
        squared_error_sums(np.full((1, 4), np.nan), truth, hand_normaliser(), VARIABLES)


def tiny_cohort(n_stays: int = 12, n_hours: int = 30) -> Cohort:
    rng = np.random.default_rng(0)
    rows = [
        (s, h, float(80 + rng.normal(0, 10)), float(75 + rng.normal(0, 8)) if h % 3 else None)
        for s in range(1, n_stays + 1) for h in range(n_hours)
    ]
    hourly = pl.DataFrame(rows, schema=["stay_id", "hour", "hr", "map"], orient="row")
    stays = pl.DataFrame({"stay_id": list(range(1, n_stays + 1)), "sepsis": [s % 3 == 0 for s in range(1, n_stays + 1)]})
    return Cohort.from_frames(stays, hourly, source="test").split((0.5, 0.0, 0.5), seed=1)


class StepForecaster:
    """Forecasts the training mean plus ``step`` standard deviations at step ``step`` (1-based)."""

    name = "steps"

    def __init__(self, normaliser: Normaliser) -> None:
        self.normaliser = normaliser

    def predict(self, batch: ForecastBatch, horizon: int) -> np.ndarray:
        steps = np.arange(1, horizon + 1, dtype=np.float32)[None, :, None]
        z = np.broadcast_to(steps, (batch.size, horizon, len(batch.variables)))
        return self.normaliser.unzscore(z, batch.variables)


def test_the_harness_scores_step_h_of_each_forecast_on_observed_targets(catalog):
    cohort = tiny_cohort()
    normaliser = Normaliser.fit(cohort)
    test = cohort.subset(split="test")
    results = evaluate_forecasters({"steps": StepForecaster(normaliser)}, test, normaliser, horizons=(1, 4), per_stay=5, seed=3)
    figures = results["forecasters"]["steps"]
    for h in (1, 4):
        starts = choose_starts(test, horizon=h, per_stay=5, min_context=3, seed=3)
        truth = forecast_targets(test, starts, horizon=h)[:, h - 1]
        z = normaliser.zscore(truth, catalog.variable_codes)
        expected = {code: np.nanmean((h - z[:, i]) ** 2) for i, code in enumerate(catalog.variable_codes) if code in ("hr", "map")}
        assert figures["variables"]["hr"]["nmse"][str(h)] == pytest.approx(expected["hr"], rel=1e-5)
        assert figures["variables"]["map"]["nmse"][str(h)] == pytest.approx(expected["map"], rel=1e-5)
        assert figures["systems"]["cardiovascular"]["nmse"][str(h)] == pytest.approx((expected["hr"] + expected["map"]) / 2, rel=1e-5)
        assert figures["mean_nmse"][str(h)] == figures["systems"]["cardiovascular"]["nmse"][str(h)]
        assert figures["n_targets"][str(h)] == int((~np.isnan(truth)).sum())
        assert results["settings"]["n_problems"][str(h)] == starts.height
    assert set(figures["systems"]) == set(SYSTEMS)


def test_metrics_json_puts_the_primary_on_top_and_the_rest_under_baselines(tmp_path):
    cohort = tiny_cohort()
    normaliser = Normaliser.fit(cohort)
    forecasters = {"agents": StepForecaster(normaliser), "steps": StepForecaster(normaliser)}
    results = evaluate_forecasters(forecasters, cohort.subset(split="test"), normaliser, horizons=(1, 6, 24), per_stay=2)
    path = write_metrics(tmp_path / "report" / "metrics.json", "agents", results)
    metrics = json.loads(path.read_text())
    assert metrics["primary"] == "agents"
    for h in ("1", "6", "24"):
        assert metrics["systems"]["cardiovascular"]["nmse"][h] is not None
        assert metrics["systems"]["cardiovascular"]["mse_minmax"][h] is not None
        assert metrics["systems"]["nervous"]["nmse"][h] is None
        assert metrics["mean_nmse"][h] == metrics["baselines"]["steps"]["mean_nmse"][h]
        assert metrics["baselines"]["steps"]["systems"]["cardiovascular"]["nmse"][h] is not None
    assert "agents" not in metrics["baselines"]
    assert [p.name for p in path.parent.iterdir()] == ["metrics.json"]  # no temporary file left
    with pytest.raises(KeyError, match="unknown"):
        metrics_document("unknown", results)


def test_a_forecast_of_the_wrong_shape_is_refused():
    cohort = tiny_cohort()
    normaliser = Normaliser.fit(cohort)

    class Short:
        name = "short"

        def predict(self, batch: ForecastBatch, horizon: int) -> np.ndarray:
            return np.zeros((batch.size, horizon - 1, len(batch.variables)), np.float32)

    with pytest.raises(ValueError, match="'short' returned shape"):
        evaluate_forecasters({"short": Short()}, cohort.subset(split="test"), normaliser, horizons=(2,))


def test_figures_by_sofa_stratum_split_the_problems_by_the_start_hour_sofa():
    # stays 1-4 have platelets 15, bilirubin 13 and creatinine 6 (4 + 4 + 4 SOFA points: "11+"),
    # stays 5-8 normal labs ("0-5"); HR is the forecast variable
    rows = []
    for s in range(1, 9):
        sick = s <= 4
        for h in range(12):
            rows.append((s, h, 80.0 + h, 15.0 if sick else 250.0, 13.0 if sick else 0.5, 6.0 if sick else 0.8))
    hourly = pl.DataFrame(rows, schema=["stay_id", "hour", "hr", "platelets", "bilirubin_total", "creatinine"], orient="row")
    stays = pl.DataFrame({"stay_id": list(range(1, 9)), "sepsis": [False] * 8})
    cohort = Cohort.from_frames(stays, hourly, source="test")
    normaliser = Normaliser.fit(cohort)
    results = evaluate_forecasters({"steps": StepForecaster(normaliser)}, cohort, normaliser, horizons=(1, 3), per_stay=4)
    strata = results["forecasters"]["steps"]["by_sofa_stratum"]
    assert list(strata) == ["0-5", "11+"]
    for h in ("1", "3"):
        assert strata["0-5"]["n_problems"][h] == strata["11+"]["n_problems"][h] == 16
        total = results["forecasters"]["steps"]["n_targets"][h]
        assert strata["0-5"]["n_targets"][h] + strata["11+"]["n_targets"][h] == total
        assert strata["11+"]["systems"]["cardiovascular"]["nmse"][h] is not None

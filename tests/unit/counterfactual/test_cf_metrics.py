"""Benchmark metrics, trial effects, quantiles, action classes and features against hand-computed numbers."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from organsim.catalog import Catalog
from organsim.counterfactual import (
    OutcomeSummary,
    band_coverage,
    effect_metrics,
    normalised_rmse,
    state_features,
    stay_means,
    treatment_courses,
    trial_effect,
)
from organsim.counterfactual.benchmark import by_system
from organsim.counterfactual.outcomes import nan_quantiles
from organsim.twin.behaviour import action_class, action_label


def test_normalised_rmse_by_horizon() -> None:
    truth = np.zeros((2, 3, 2))
    predicted = np.zeros((2, 3, 2))
    predicted[:, 0, 0] = [3.0, 4.0]       # horizon 1, variable 0: RMSE sqrt((9 + 16) / 2)
    predicted[0, 2, 1] = 2.0              # horizon 3, variable 1: one error of 2 and one missing pair
    truth[1, 2, 1] = np.nan
    out = normalised_rmse(predicted, truth, np.array([2.0, 4.0]), horizons=(1, 3))
    np.testing.assert_allclose(out, [[np.sqrt(12.5) / 2.0, 0.0], [0.0, 2.0 / 4.0]])
    assert np.isnan(normalised_rmse(predicted, truth, np.array([0.0, 4.0]), horizons=(1,))[0, 0])  # a constant truth: no scale
    with pytest.raises(ValueError, match="horizon 4 is outside 1..3"):
        normalised_rmse(predicted, truth, np.ones(2), horizons=(4,))


def test_system_means_skip_unmeasured_variables(catalog: Catalog) -> None:
    variables = catalog.variable_codes
    values = np.full((1, len(variables)), np.nan)
    values[0, variables.index("map")] = 0.2
    values[0, variables.index("hr")] = 0.4
    out = by_system(values, variables, catalog, horizons=(6,))
    assert out["cardiovascular"]["6"] == pytest.approx(0.3) and out["renal"]["6"] is None


def test_band_coverage_and_effect_metrics() -> None:
    truth = np.array([1.0, 5.0, np.nan, 3.0])
    assert band_coverage(np.array([0.0, 0.0, 0.0, 3.0]), np.array([2.0, 4.0, 9.0, 3.0]), truth) == pytest.approx(2 / 3)
    assert band_coverage(np.zeros(1), np.ones(1), np.array([np.nan])) is None
    estimated = np.array([1.0, -0.2, 2.0, np.nan, -1.0])
    true = np.array([2.0, 0.3, -1.0, 5.0, -0.4])
    metrics = effect_metrics(estimated, true, tolerance=0.5)
    # errors -1, -0.5, 3, -0.6
    assert metrics["n"] == 4
    assert metrics["mae"] == pytest.approx((1 + 0.5 + 3 + 0.6) / 4)
    assert metrics["bias"] == pytest.approx((-1 - 0.5 + 3 - 0.6) / 4)
    assert metrics["rmse"] == pytest.approx(np.sqrt((1 + 0.25 + 9 + 0.36) / 4))
    # real effects (|true| > 0.5): 2.0 (estimated +1: right way) and -1.0 (estimated +2: wrong way)
    assert (metrics["n_effect"], metrics["sign_accuracy"]) == (2, pytest.approx(0.5))
    # negligible ones: 0.3 (estimated -0.2: also negligible) and -0.4 (estimated -1: an effect)
    assert (metrics["n_null"], metrics["null_agreement"]) == (2, pytest.approx(0.5))
    # classes (tolerance 0.5): est +,0,+,- vs true +,0,-,0 -> 2 of 4 agree
    assert metrics["three_way_agreement"] == pytest.approx(0.5)
    assert effect_metrics(np.array([np.nan]), np.array([1.0]), tolerance=0)["n"] == 0


def test_a_treatment_blind_simulator_gets_no_sign_right() -> None:
    """Every effect 0: right about the negligible effects, wrong about the direction of every real one,
    although the three-way agreement rewards it where most effects are small."""
    true = np.array([0.0, 0.2, -0.3, 0.1, 2.0])
    metrics = effect_metrics(np.zeros(5), true, tolerance=0.5)
    assert metrics["sign_accuracy"] == 0.0 and metrics["null_agreement"] == 1.0
    assert metrics["three_way_agreement"] == pytest.approx(0.8)
    assert effect_metrics(np.ones(3), np.zeros(3), tolerance=0.5)["sign_accuracy"] is None  # no real effect to point at


def test_nan_quantiles_equal_numpys() -> None:
    rng = np.random.default_rng(3)
    values = rng.normal(size=(23, 4, 3))
    values[rng.random(values.shape) < 0.3] = np.nan
    values[:, 0, 0] = np.nan
    values[1:, 1, 1] = np.nan
    with np.errstate(all="ignore"), pytest.warns(RuntimeWarning):
        expected = np.nanquantile(values, (0.05, 0.5, 0.95), axis=0)
    np.testing.assert_allclose(nan_quantiles(values, (0.05, 0.5, 0.95)), expected, equal_nan=True)


def _summary(stay_id: int, strategy: str, sofa: list[float | None], died: list[bool], hypotension: list[float | None]) -> OutcomeSummary:
    outcomes = pl.DataFrame({"sample": list(range(len(sofa))), "died": died, "death_hour": [None] * len(sofa),
                             "sofa_at_24h": sofa, "hypotension_onset_h": hypotension},
                            schema={"sample": pl.Int32, "died": pl.Boolean, "death_hour": pl.Float64, "sofa_at_24h": pl.Float64,
                                    "hypotension_onset_h": pl.Float64})
    empty = pl.DataFrame()
    return OutcomeSummary(stay_id=stay_id, decision_hour=6, horizon=24, strategy=strategy, simulator="hand", n_samples=len(sofa),
                          bands=empty, sample_outcomes=outcomes, scores=empty, events=empty, consulted=None)


def test_stay_means_and_the_paired_trial_effect() -> None:
    arm_a = [_summary(1, "a", [4.0, 6.0], [False, True], [0.0, None]), _summary(2, "a", [2.0, None], [False, False], [None, None]),
             _summary(3, "a", [None, None], [True, True], [None, None])]
    arm_b = [_summary(1, "b", [3.0, 3.0], [False, False], [1.0, 2.0]), _summary(2, "b", [2.0, 4.0], [False, False], [None, 5.0]),
             _summary(3, "b", [8.0, 8.0], [False, False], [None, None])]
    means = stay_means(arm_a)
    assert means["sofa_at_24h"].to_list() == [5.0, 2.0, None]
    assert means["died"].to_list() == [0.5, 0.0, 1.0] and means["hypotension"].to_list() == [0.5, 0.0, 0.0]
    effects = {row["outcome"]: row for row in trial_effect(arm_a, arm_b, n_bootstrap=500, seed=1).iter_rows(named=True)}
    sofa = effects["sofa_at_24h"]  # stays 1 and 2: differences 5 - 3 = 2 and 2 - 3 = -1
    assert sofa["n_stays"] == 2 and sofa["effect"] == pytest.approx(0.5) and sofa["mean_a"] == pytest.approx(3.5)
    assert -1.0 <= sofa["ci_low"] <= 0.5 <= sofa["ci_high"] <= 2.0
    died = effects["died"]  # 0.5 - 0, 0 - 0, 1 - 0
    assert died["n_stays"] == 3 and died["effect"] == pytest.approx(0.5)
    assert effects["hypotension"]["effect"] == pytest.approx(((0.5 - 1.0) + (0.0 - 0.5) + 0.0) / 3)
    assert trial_effect(arm_a, arm_b, n_bootstrap=500, seed=1).equals(trial_effect(arm_a, arm_b, n_bootstrap=500, seed=1))
    with pytest.raises(ValueError, match="same \\(stay_id, decision_hour\\) cases"):
        trial_effect(arm_a, arm_b[:2])


def test_action_classes_and_labels() -> None:
    np.testing.assert_array_equal(action_class("iv_fluid_ml", np.array([0.0, 80.0, 200.0, 599.0, 1000.0, 3000.0])), [0, 1, 2, 2, 3, 4])
    np.testing.assert_array_equal(action_class("norepinephrine", np.array([0.0, 0.05, 0.1, 0.5])), [0, 1, 2, 3])
    np.testing.assert_array_equal(action_class("antibiotic", np.array([0.0, 1.0])), [0, 1])
    assert [action_label("iv_fluid_ml", a, "mL/h") for a in range(5)] == [
        "none", "< 200 mL/h", "200-600 mL/h", "600-1500 mL/h", ">= 1500 mL/h"]
    assert action_label("antibiotic", 1, "0/1") == "given"


def test_state_features_and_treatment_courses_by_hand(catalog: Catalog) -> None:
    hourly = pl.DataFrame({"stay_id": [1] * 6, "hour": list(range(1, 7)),
                           "map": [60.0, None, None, None, None, 70.0], "lactate": [4.0] + [None] * 5})
    hourly = hourly.with_columns([pl.lit(None, dtype=pl.Float64).alias(c) for c in catalog.variable_codes if c not in hourly.columns])
    treatments = pl.DataFrame({"stay_id": [1] * 6, "hour": list(range(1, 7)), "iv_fluid_ml": [500.0, 0.0, 250.0, 0.0, 0.0, 0.0],
                               "norepinephrine": [0.0, 0.1, 0.2, 0.0, 0.0, 0.0], "antibiotic": [0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
                               "mechanical_ventilation": [0.0, 1.0, 1.0, 1.0, 0.0, 0.0]})
    stays = pl.DataFrame({"stay_id": [1], "age": [70.0], "weight": [50.0]})
    features = state_features(hourly, treatments, stays, catalog=catalog)
    assert features["map"].to_list() == [None, 60.0, 60.0, 60.0, 60.0, None]  # vital: carried 4 h
    assert features["map_before"].to_list() == [None, None, 60.0, 60.0, 60.0, 60.0]
    assert features["lactate"].to_list() == [None, 4.0, 4.0, 4.0, 4.0, 4.0]  # lab: carried 24 h
    assert features["norepinephrine_previous"].to_list() == [0.0, 0.0, 0.1, 0.2, 0.0, 0.0]
    assert features["fluid_ml_per_kg_total"].to_list() == [0.0, 10.0, 10.0, 15.0, 15.0, 15.0]
    assert features["hours_since_antibiotic"].to_list() == [None, None, 1.0, 2.0, 3.0, 4.0]
    assert features["ventilated_hours"].to_list() == [0.0, 0.0, 1.0, 2.0, 3.0, 3.0]
    courses = treatment_courses(treatments, stays, window_hours=3, catalog=catalog)
    assert courses["fluid_ml_per_kg"].to_list() == [15.0, 5.0, 5.0, 0.0, 0.0, 0.0]
    assert courses["norepinephrine_max"].to_list() == [0.2, 0.2, 0.2, 0.0, 0.0, 0.0]
    assert courses["norepinephrine_hours"].to_list() == [2.0, 2.0, 1.0, 0.0, 0.0, 0.0]
    assert courses["first_antibiotic_hour"].to_list() == [1.0, 0.0, 3.0, 2.0, 1.0, 0.0]
    assert courses["complete"].to_list() == [True, True, True, True, False, False]

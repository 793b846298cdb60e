"""TSTR utility: the PhysioNet 2019 utility on hand examples, task labels, features without look-ahead."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from synthetic_cohorts import random_cohort

from organsim.data import Cohort
from organsim.evaluate.utility import (
    TaskData,
    best_utility_threshold,
    hourly_features,
    normalised_utility,
    task_labels,
    train_on_synthetic_test_on_real,
)


def challenge_utility(labels: list[int], predictions: list[int]) -> float:
    """The challenge's compute_prediction_utility, row by row, with its default parameters."""
    dt_early, dt_optimal, dt_late, max_u_tp, min_u_fn, u_fp, u_tn = -12, -6, 3, 1, -2, -0.05, 0
    septic = any(labels)
    t_sepsis = labels.index(1) - dt_optimal if septic else float("inf")
    m_1, m_2, m_3 = max_u_tp / (dt_optimal - dt_early), -max_u_tp / (dt_late - dt_optimal), min_u_fn / (dt_late - dt_optimal)
    b_1, b_2, b_3 = -m_1 * dt_early, -m_2 * dt_late, -m_3 * dt_optimal
    total = 0.0
    for t, predicted in enumerate(predictions):
        if t > t_sepsis + dt_late:
            continue
        if septic and predicted:
            total += max(m_1 * (t - t_sepsis) + b_1, u_fp) if t <= t_sepsis + dt_optimal else m_2 * (t - t_sepsis) + b_2
        elif not septic and predicted:
            total += u_fp
        elif septic and not predicted:
            total += 0 if t <= t_sepsis + dt_optimal else m_3 * (t - t_sepsis) + b_3
        else:
            total += u_tn
    return total


def test_utility_of_the_challenge_docstring_example() -> None:
    # evaluate_sepsis_score.py: labels [0,0,0,0,1,1], predictions [0,0,1,1,1,1] -> 3.388888888888889
    result = normalised_utility(np.zeros(6), np.array([0, 0, 0, 0, 1, 1]), np.array([0, 0, 1, 1, 1, 1]))
    assert result["observed"] == pytest.approx(3.388888888888889, abs=1e-12)
    # best: alarm at every row (t_sepsis = 10, window [-2, 13]): 1/3 + 1/2 + 2/3 + 5/6 + 1 + 8/9
    assert result["best"] == pytest.approx(38 / 9, abs=1e-12)
    # inaction: only row 5 (one hour past the optimal time) is a costly miss: -2/9
    assert result["inaction"] == pytest.approx(-2 / 9, abs=1e-12)
    assert result["normalised"] == pytest.approx(0.8125, abs=1e-12)  # (61/18 + 4/18) / (76/18 + 4/18)


def test_utility_over_stays_and_false_alarms() -> None:
    stay_ids = np.array([7] * 6 + [3] * 3)
    labels = np.array([0, 0, 0, 0, 1, 1, 0, 0, 0])
    predictions = np.array([0, 0, 1, 1, 1, 1, 1, 0, 1])  # two false alarms on the non-septic stay: -0.1
    result = normalised_utility(stay_ids, labels, predictions)
    assert result["observed"] == pytest.approx(3.388888888888889 - 0.1)
    assert result["normalised"] == pytest.approx(0.79)  # (3.2889 + 0.2222) / 4.4444
    assert normalised_utility(stay_ids, labels, labels)["normalised"] < 1  # labels are not the best predictions


def test_vectorised_utility_equals_the_challenge_loop_on_random_stays() -> None:
    rng = np.random.default_rng(0)
    stays, labels, predictions, expected = [], [], [], 0.0
    for stay in range(40):
        n = int(rng.integers(1, 60))
        onset_row = int(rng.integers(0, n + 10))  # beyond n: not septic
        stay_labels = [int(t >= onset_row) for t in range(n)]
        stay_predictions = rng.integers(0, 2, n).tolist()
        expected += challenge_utility(stay_labels, stay_predictions)
        stays += [stay] * n
        labels += stay_labels
        predictions += stay_predictions
    result = normalised_utility(np.array(stays), np.array(labels), np.array(predictions))
    assert result["observed"] == pytest.approx(expected, abs=1e-9)


def test_utility_input_errors() -> None:
    with pytest.raises(ValueError, match="contiguous"):
        normalised_utility(np.array([1, 2, 1]), np.zeros(3), np.zeros(3))
    with pytest.raises(ValueError, match="labels must be 0 or 1"):
        normalised_utility(np.array([1, 1]), np.array([0, 2]), np.zeros(2))
    with pytest.raises(ValueError, match="differ in length"):
        normalised_utility(np.array([1, 1]), np.zeros(3), np.zeros(2))
    assert normalised_utility(np.array([1, 1]), np.zeros(2), np.zeros(2))["normalised"] is None  # nobody septic


def test_best_threshold_alarms_in_the_rewarded_window() -> None:
    stay_ids = np.repeat([1, 2], 20)
    labels = np.r_[np.zeros(8), np.ones(12), np.zeros(20)].astype(int)  # onset at row 14 of stay 1
    scores = np.r_[np.linspace(0, 0.3, 8), np.full(12, 0.9), np.full(20, 0.2)]
    threshold = best_utility_threshold(stay_ids, labels, scores)
    # alarms from row 2 (12 h before onset) on earn utility, but rows 3 and 4 (+0.5 together) are not
    # worth 20 false alarms on stay 2 (-1): the best threshold alarms from row 5 (score 0.214) on
    assert scores[4] < 0.2 < threshold <= scores[5]
    best = np.r_[np.zeros(5), np.ones(15), np.zeros(20)].astype(int)
    assert normalised_utility(stay_ids, labels, (scores >= threshold).astype(int)) == normalised_utility(stay_ids, labels, best)


def one_stay_cohort(map_values: list[float | None], death: bool | None = None, onset: int | None = None) -> Cohort:
    hours = list(range(1, len(map_values) + 1))
    hourly = pl.DataFrame({"stay_id": [1] * len(hours), "hour": hours, "map": map_values},
                          schema={"stay_id": pl.Int64, "hour": pl.Int32, "map": pl.Float32})
    stays = pl.DataFrame({"stay_id": [1], "death": [death], "sepsis_onset_hour": [onset], "age": [70.0], "unit": ["SICU"]},
                         schema={"stay_id": pl.Int64, "death": pl.Boolean, "sepsis_onset_hour": pl.Int32,
                                 "age": pl.Float32, "unit": pl.Utf8})
    return Cohort.from_frames(stays, hourly, source="test")


def test_task_labels_by_hand() -> None:
    cohort = one_stay_cohort([80, 70, None, None, None, None, 60, 75, 90, None], death=True, onset=8)
    hypotension = task_labels(cohort, "hypotension_4h")
    # MAP < 65 only at hour 7: hours 3..6 see it in (t, t+4]; hour 1 sees 70; hours 7 and 8 see 75
    # and 90; hours 2, 9 and 10 have no MAP measured in their window and no label
    assert hypotension.rows() == [(1, 1, 0), (1, 3, 1), (1, 4, 1), (1, 5, 1), (1, 6, 1), (1, 7, 0), (1, 8, 0)]
    assert task_labels(cohort, "sepsis_6h")["label"].to_list() == [0, 1, 1, 1, 1, 1, 1, 1, 1, 1]  # from 8 - 6 = 2
    assert task_labels(cohort, "mortality_24h")["label"].to_list() == [1] * 10  # death at hour 10, within 24 h
    assert task_labels(one_stay_cohort([80.0] * 30, death=True), "mortality_24h")["label"].to_list() == [0] * 6 + [1] * 24
    assert task_labels(one_stay_cohort([80.0] * 3, death=None), "mortality_24h").height == 0
    with pytest.raises(ValueError, match="unknown task"):
        task_labels(cohort, "delirium")


def test_hourly_features_by_hand_and_without_look_ahead() -> None:
    cohort = one_stay_cohort([80, None, 74, 70, None, None, None, None, 60, None])
    features = hourly_features(cohort, ["map"], window_hours=3)
    row = features.filter(pl.col("hour") == 4).row(0, named=True)
    assert row["map_last"] == 70 and row["map_mean"] == 72 and row["map_min"] == 70 and row["map_max"] == 74
    assert row["map_slope"] == pytest.approx(-4.0)  # (74 at hour 3, 70 at hour 4)
    assert row["map_hours_since"] == 0
    quiet = features.filter(pl.col("hour") == 8).row(0, named=True)  # window (5, 8] has no value
    assert quiet["map_last"] == 70 and quiet["map_mean"] is None and quiet["map_slope"] is None
    assert quiet["map_hours_since"] == 4
    assert features.filter(pl.col("hour") == 1)["map_slope"].to_list() == [None]
    assert (row["hour_of_stay"], row["age"], row["unit_sicu"], row["unit_micu"], row["sex"]) == (4, 70, 1, 0, None)
    changed = one_stay_cohort([80, None, 74, 70, None, None, None, None, 10, None])  # the future differs
    assert hourly_features(changed, ["map"], window_hours=3).head(8).equals(features.head(8))


def test_split_is_stratified_by_stay() -> None:
    stay_ids = np.repeat(np.arange(10), 3)
    labels = np.isin(stay_ids, [2, 5]).astype(np.int8)
    data = TaskData(np.zeros((30, 1), dtype=np.float32), labels, stay_ids)
    fit, validation = data.split(0.2, seed=0)
    assert len(fit.positive_stays()) == 1 and len(validation.positive_stays()) == 1
    assert len(np.unique(validation.stay_ids)) == 3  # one of 2 positive + round(0.2 * 8) = 2 negative stays
    assert set(fit.stay_ids) | set(validation.stay_ids) == set(range(10))


def test_tasks_without_both_labels_are_skipped_with_a_reason() -> None:
    cohort = one_stay_cohort([80.0] * 12, death=False)
    results = train_on_synthetic_test_on_real(cohort, cohort, cohort, ["map"])
    assert results["sepsis_6h"]["status"] == "skipped"
    assert results["sepsis_6h"]["reason"].startswith("real-train has 0 stays with a positive row and 1 without")
    assert results["mortality_24h"]["reason"].endswith("real-test has only label 0")


def test_training_cohorts_are_matched_in_size() -> None:
    real_train, synthetic, real_test = random_cohort(30, seed=0), random_cohort(10, seed=1), random_cohort(8, seed=2)
    matched = train_on_synthetic_test_on_real(real_train, synthetic, real_test, ["hr"], tasks=["sepsis_6h"])
    assert {k: v["stays"] for k, v in matched["sepsis_6h"]["rows"].items()} == {"real": 10, "synthetic": 10, "test": 8}
    whole = train_on_synthetic_test_on_real(real_train, synthetic, real_test, ["hr"], tasks=["sepsis_6h"],
                                            match_training_stays=False)
    assert whole["sepsis_6h"]["rows"]["real"]["stays"] == 30

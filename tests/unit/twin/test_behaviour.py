"""The behaviour policy: fitted on an engine cohort, saved and loaded, sampled as a treatment policy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from organsim.counterfactual import RecordedStates
from organsim.data import Cohort
from organsim.physiology import EngineConfig, PhysiologyEngine
from organsim.twin.behaviour import (
    ACTION_BINS,
    BehaviourPolicy,
    BehaviourPolicyConfig,
    BehaviourTreatments,
    action_class,
    observed_state_features,
    state_features,
)
from organsim.utils.errors import DataError


@pytest.fixture(scope="module")
def cohort() -> Cohort:
    return PhysiologyEngine(EngineConfig(seed=3, n_patients=40, hours=24, septic_fraction=0.5)).generate()


@pytest.fixture(scope="module")
def behaviour(cohort: Cohort) -> BehaviourPolicy:
    return BehaviourPolicy(BehaviourPolicyConfig(max_iter=20)).fit(cohort)


def test_class_doses_are_medians_of_each_class(behaviour: BehaviourPolicy, cohort: Cohort) -> None:
    for code in ACTION_BINS:
        doses = cohort.treatments[code].fill_null(0.0).to_numpy().astype(np.float64)
        classes = action_class(code, doses)
        expected = [0.0] + [float(np.median(doses[classes == c])) if (classes == c).any() else np.nan
                            for c in range(1, len(behaviour.class_doses_[code]))]
        np.testing.assert_allclose(behaviour.class_doses_[code], expected)
        seen = np.flatnonzero(np.isfinite(expected))
        np.testing.assert_array_equal(action_class(code, behaviour.class_doses_[code][seen]), seen)  # each dose lies in its class


def test_save_and_load_give_the_same_policy(tmp_path: Path, behaviour: BehaviourPolicy, cohort: Cohort) -> None:
    features = state_features(cohort.hourly, cohort.treatments, cohort.stays)
    loaded = BehaviourPolicy.load(behaviour.save(tmp_path / "behaviour"))
    for code, p in behaviour.probabilities(features).items():
        np.testing.assert_array_equal(loaded.probabilities(features)[code], p)
        np.testing.assert_array_equal(loaded.class_doses_[code], behaviour.class_doses_[code])
    assert (loaded.n_rows_, loaded.n_stays_, loaded.action_shares_) == (behaviour.n_rows_, behaviour.n_stays_, behaviour.action_shares_)


def test_load_names_what_is_wrong(tmp_path: Path, behaviour: BehaviourPolicy) -> None:
    with pytest.raises(DataError, match="no saved behaviour policy"):
        BehaviourPolicy.load(tmp_path / "nowhere")
    saved = behaviour.save(tmp_path / "behaviour")
    meta = json.loads((saved / "behaviour.json").read_text())
    (saved / "behaviour.json").write_text(json.dumps({**meta, "action_bins": {"iv_fluid_ml": [100.0]}}))
    with pytest.raises(DataError, match="action classes") as error:
        BehaviourPolicy.load(saved)
    assert error.value.column == "action_bins"
    (saved / "behaviour.json").write_text(json.dumps(meta))
    (saved / "norepinephrine.skops").unlink()
    with pytest.raises(DataError, match="classifier file"):
        BehaviourPolicy.load(saved)


def test_sampled_actions_follow_the_probabilities_and_the_seed(behaviour: BehaviourPolicy, cohort: Cohort) -> None:
    features = state_features(cohort.hourly, cohort.treatments, cohort.stays)
    first = behaviour.sample_actions(features, np.random.default_rng(5))
    again = behaviour.sample_actions(features, np.random.default_rng(5))
    other = behaviour.sample_actions(features, np.random.default_rng(6))
    assert all(np.array_equal(first[c], again[c]) for c in ACTION_BINS)
    assert any(not np.array_equal(first[c], other[c]) for c in ACTION_BINS)
    probabilities = behaviour.probabilities(features)
    for code in ACTION_BINS:
        assert set(np.unique(first[code])) <= set(np.nan_to_num(behaviour.class_doses_[code]))
        drawn = np.bincount(action_class(code, first[code]), minlength=probabilities[code].shape[1]) / features.height
        np.testing.assert_allclose(drawn, probabilities[code].mean(axis=0), atol=0.05)  # 959 draws


def test_features_of_an_observed_state_match_the_recorded_ones(behaviour: BehaviourPolicy, cohort: Cohort) -> None:
    ids = cohort.stays["stay_id"].to_list()[:6]
    record = cohort.subset(ids)
    states = RecordedStates(record.hourly, record.treatments, record.stays)
    features = state_features(record.hourly, record.treatments, record.stays)
    for hour in (1, 2, 9, 24):
        recorded = features.filter(pl.col("hour") == hour).sort("stay_id")
        from_state = observed_state_features(states.at(hour))
        assert from_state["row"].to_list() == list(range(len(ids)))
        assert from_state.select(behaviour.features).equals(recorded.select(behaviour.features)), hour


def test_the_policy_treats_simulated_states_reproducibly(behaviour: BehaviourPolicy, cohort: Cohort) -> None:
    record = cohort.subset(cohort.stays["stay_id"].to_list()[:8])
    states = RecordedStates(record.hourly, record.treatments, record.stays)
    first, second = behaviour.treatment_policy(seed=2), BehaviourTreatments(behaviour, seed=2)
    for hour in (1, 5, 12):
        a, b = first(states.at(hour), hour), second(states.at(hour), hour)
        assert list(a) == list(cohort.catalog.treatment_codes)
        assert all(np.array_equal(a[c], b[c]) and a[c].shape == (8,) for c in a)
    with pytest.raises(RuntimeError, match="not fitted"):
        BehaviourTreatments(BehaviourPolicy())

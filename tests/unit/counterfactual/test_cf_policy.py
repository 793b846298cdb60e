"""Strategy policies decide exactly what their rules say, on hand-made states."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from organsim.catalog import Catalog
from organsim.counterfactual import (
    RecordedStates,
    RecordedTreatments,
    StrategyPolicy,
    StrategyState,
    parse_strategy,
)
from organsim.physiology import ConstantPolicy


def _states(catalog: Catalog, hourly_rows: dict[int, list[dict]], treatment_rows: dict[int, list[dict]],
            weights: dict[int, float]) -> RecordedStates:
    """Stays with the given hourly values and treatments (hours 1..n; other variables unmeasured)."""
    hourly = pl.DataFrame([{"stay_id": s, "hour": h + 1, **row} for s, rows in hourly_rows.items() for h, row in enumerate(rows)])
    hourly = hourly.with_columns([pl.lit(None, dtype=pl.Float64).alias(c) for c in catalog.variable_codes if c not in hourly.columns])
    treatments = pl.DataFrame([{"stay_id": s, "hour": h + 1, **row} for s, rows in treatment_rows.items() for h, row in enumerate(rows)])
    treatments = treatments.with_columns([pl.lit(0.0).alias(c) for c in catalog.treatment_codes if c not in treatments.columns])
    stays = pl.DataFrame({"stay_id": list(weights), "age": [60.0] * len(weights), "sex": [1] * len(weights), "weight": list(weights.values())})
    return RecordedStates(hourly, treatments, stays, catalog=catalog)


def test_recorded_states_satisfy_the_strategy_state_interface(catalog: Catalog) -> None:
    states = _states(catalog, {1: [{"map": 60.0}, {"map": None}, {"map": None}], 2: [{"map": 80.0}, {"map": 70.0}, {"map": None}]},
                     {1: [{"norepinephrine": 0.1}, {"norepinephrine": 0.2}, {}], 2: [{}, {}, {}]}, {1: 80.0, 2: 50.0})
    state = states.at(4)
    assert isinstance(state, StrategyState)
    np.testing.assert_array_equal(state.latest("map"), [60.0, 70.0])
    np.testing.assert_array_equal(state.latest("map", max_age_hours=2), [np.nan, 70.0])  # measured in hour 1: 3 h old
    np.testing.assert_array_equal(state.previous_treatment("norepinephrine"), [0.0, 0.0])
    np.testing.assert_array_equal(states.at(3).previous_treatment("norepinephrine"), [0.2, 0.0])
    np.testing.assert_array_equal(states.at(1).latest("map"), [np.nan, np.nan])
    with pytest.raises(ValueError, match=r"hour must lie in 1..4"):
        states.at(5)


def test_threshold_rules_fire_on_fresh_values_only_and_respect_the_cap(catalog: Catalog) -> None:
    strategy = parse_strategy({
        "name": "fluids", "description": "d", "others": "none", "max_age_hours": {"map": 2},
        "treatments": {"iv_fluid_ml": {"otherwise": 100, "rules": [
            {"kind": "threshold", "when_any": ["map < 65", "lactate >= 4"], "dose": 500,
             "cap": {"total": 20, "per_kg": True, "window_hours": 3}},
        ]}},
    })
    # stay 1: MAP 60 two hours ago (fresh), 1000 mL already given in the window, 60 kg -> cap 1200 leaves 200
    # stay 2: MAP 60 three hours ago (stale) and no lactate -> maintenance
    # stay 3: lactate 5 (lab, fresh for 24 h) and MAP normal -> full bolus
    states = _states(
        catalog,
        {1: [{"map": 70.0}, {"map": 60.0}, {"map": None}], 2: [{"map": 60.0}, {"map": None}, {"map": None}],
         3: [{"map": 80.0, "lactate": 5.0}, {"map": 80.0}, {"map": 80.0}]},
        {1: [{}, {"iv_fluid_ml": 600.0}, {"iv_fluid_ml": 400.0}], 2: [{}, {}, {}], 3: [{}, {}, {}]},
        {1: 60.0, 2: 70.0, 3: 70.0},
    )
    decided = StrategyPolicy(strategy, 4, catalog=catalog)(states.at(4), 4)
    np.testing.assert_allclose(decided["iv_fluid_ml"], [200.0, 100.0, 500.0])
    assert set(decided) == {"iv_fluid_ml"}


def test_titration_starts_raises_weans_caps_and_stops(catalog: Catalog) -> None:
    strategy = parse_strategy({
        "name": "ne", "description": "d", "others": "none",
        "treatments": {"norepinephrine": {"rules": [
            {"kind": "titrate", "when": ["map < 65"], "wean_when": ["map > 75"], "start_dose": 0.05, "step": 0.05, "maximum": 0.3}]}},
    })
    maps = [50.0, 60.0, 60.0, 80.0, 80.0, 70.0]
    previous = [0.0, 0.1, 0.3, 0.2, 0.05, 0.1]
    states = _states(catalog, {i + 1: [{"map": m}] for i, m in enumerate(maps)},
                     {i + 1: [{"norepinephrine": p}] for i, p in enumerate(previous)}, {i + 1: 70.0 for i in range(6)})
    decided = StrategyPolicy(strategy, 2, catalog=catalog)(states.at(2), 2)
    # start; raise; held at the maximum; wean; wean to zero = stop; in range = keep
    np.testing.assert_allclose(decided["norepinephrine"], [0.05, 0.15, 0.3, 0.15, 0.0, 0.1])


def test_binary_titration_switches_ventilation_on_and_off(catalog: Catalog) -> None:
    strategy = parse_strategy({
        "name": "vent", "description": "d", "others": "none",
        "treatments": {"mechanical_ventilation": {"rules": [
            {"kind": "titrate", "when": ["spo2 < 88"], "wean_when": ["spo2 >= 94", "norepinephrine.previous <= 0.1"], "start_dose": 1}]}},
    })
    states = _states(catalog, {1: [{"spo2": 85.0}], 2: [{"spo2": 96.0}], 3: [{"spo2": 96.0}], 4: [{"spo2": 91.0}]},
                     {1: [{}], 2: [{"mechanical_ventilation": 1.0}], 3: [{"mechanical_ventilation": 1.0, "norepinephrine": 0.2}],
                      4: [{"mechanical_ventilation": 1.0}]}, {s: 70.0 for s in range(1, 5)})
    decided = StrategyPolicy(strategy, 2, catalog=catalog)(states.at(2), 2)
    np.testing.assert_array_equal(decided["mechanical_ventilation"], [1.0, 0.0, 1.0, 1.0])


def test_schedules_windows_and_the_other_treatments(catalog: Catalog) -> None:
    strategy = parse_strategy({
        "name": "abx", "description": "d", "others": "usual_care",
        "treatments": {"antibiotic": {"rules": [{"kind": "schedule", "at_hours": [5], "every_hours": 8, "until_hour": 20, "dose": 1}]}},
    })
    states = _states(catalog, {1: [{"map": 70.0}] * 30}, {1: [{}] * 30}, {1: 70.0})
    usual = ConstantPolicy({"iv_fluid_ml": 80.0, "antibiotic": 1.0})
    policy = StrategyPolicy(strategy, 3, usual_care=usual, catalog=catalog)
    given = [float(policy(states.at(h), h)["antibiotic"][0]) for h in range(3, 31)]
    assert [h for h, g in zip(range(3, 31), given, strict=True) if g] == [8, 16]  # decision 3: offsets 5, 13 (21 is past until_hour)
    decided = policy(states.at(3), 3)
    assert decided["iv_fluid_ml"][0] == 80.0 and decided["antibiotic"][0] == 0.0  # usual care decides fluids, not antibiotics
    with pytest.raises(ValueError, match="decides from ICU hour 3; asked for hour 2"):
        policy(states.at(2), 2)
    with pytest.raises(ValueError, match="pass usual_care=<a treatment policy>"):
        StrategyPolicy(strategy, 3, catalog=catalog)


def test_observed_care_replays_the_record(catalog: Catalog) -> None:
    treatments = pl.DataFrame({"stay_id": [7, 7, 9], "hour": [1, 2, 1], "iv_fluid_ml": [250.0, None, 0.0],
                               "norepinephrine": [0.0, 0.08, 0.0], "antibiotic": [1.0, 0.0, 0.0], "mechanical_ventilation": [0.0, 1.0, 0.0]})
    states = _states(catalog, {7: [{"map": 60.0}] * 2, 9: [{"map": 80.0}] * 2}, {7: [{}] * 2, 9: [{}] * 2}, {7: 70.0, 9: 80.0})
    observed = parse_strategy({"name": "observed_care", "description": "d", "others": "observed"})
    policy = StrategyPolicy(observed, 2, observed=RecordedTreatments(treatments, catalog=catalog), catalog=catalog)
    decided = policy(states.at(2), 2)
    np.testing.assert_array_equal(decided["iv_fluid_ml"], [0.0, 0.0])  # null and absent rows are "not given"
    np.testing.assert_array_equal(decided["norepinephrine"], [0.08, 0.0])
    np.testing.assert_array_equal(decided["mechanical_ventilation"], [1.0, 0.0])

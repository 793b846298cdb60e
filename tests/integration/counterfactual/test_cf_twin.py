"""TwinSimulator on a micro twin: futures of the right shape, reproducible, obeying the strategy; the
treatment-blind baseline ignores treatments; the overlap adjustment moves only out-of-support doses."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from organsim.counterfactual import (
    Simulator,
    TwinSimulator,
    load_strategy,
    parse_strategy,
    summarise_futures,
)
from organsim.data import Cohort
from organsim.twin.behaviour import action_class

NE_ALWAYS = parse_strategy({"name": "ne_0_1", "description": "norepinephrine 0.1 every hour", "others": "usual_care",
                            "treatments": {"norepinephrine": {"rules": [{"kind": "schedule", "at_hours": [0], "every_hours": 1,
                                                                          "dose": 0.1}]}}})
FLOOD = parse_strategy({"name": "flood", "description": "3 L of fluid every hour", "others": "usual_care",
                        "treatments": {"iv_fluid_ml": {"rules": [{"kind": "schedule", "at_hours": [0], "every_hours": 1,
                                                                  "dose": 3000}]}}})


@pytest.fixture(scope="module")
def twin(twin_simulator: tuple[TwinSimulator, Cohort]) -> TwinSimulator:
    return twin_simulator[0]


@pytest.fixture(scope="module")
def cohort(twin_simulator: tuple[TwinSimulator, Cohort]) -> Cohort:
    return twin_simulator[1]


@pytest.fixture(scope="module")
def stays(cohort: Cohort) -> list[int]:
    return sorted(cohort.subset(split="test").stays["stay_id"].to_list())[:3]


def test_futures_have_the_requested_shape_and_the_agents_records(twin: TwinSimulator, cohort: Cohort, stays: list[int]) -> None:
    assert isinstance(twin, Simulator) and twin.name == "twin"
    futures = twin.simulate(cohort, stays, 8, NE_ALWAYS, horizon=6, n_samples=3, seed=0)
    assert [f.stay_id for f in futures] == stays
    for future in futures:
        assert (future.decision_hour, future.horizon, future.n_samples, future.simulator) == (8, 6, 3, "twin")
        assert future.samples.height == 3 * 6 and future.samples["hour"].unique().sort().to_list() == list(range(8, 14))
        assert future.history["hour"].max() == 7
        assert future.values(["map", "hr"]).shape == (3, 6, 2) and np.isfinite(future.values(["map", "hr"])).all()
        assert np.isnan(future.death_hour).all()
        # no reference policy saved: "policy" consults every other system, 8 per agent-hour
        assert future.consulted.height == 3 * 6 * 9 * 8
        assert set(future.corrections.columns) == {"sample", "hour", "variable", "rule", "before", "after"}
        assert future.corrections["hour"].is_between(8, 13).all()
    summary, *_ = summarise_futures(futures, catalog=cohort.catalog)
    assert summary.consulted["share"].to_list() == [1.0] * 72


def test_same_seed_same_futures_and_the_strategy_is_obeyed(twin: TwinSimulator, cohort: Cohort, stays: list[int]) -> None:
    first = twin.simulate(cohort, stays, 8, NE_ALWAYS, horizon=6, n_samples=3, seed=4)
    again = twin.simulate(cohort, stays, 8, NE_ALWAYS, horizon=6, n_samples=3, seed=4)
    other = twin.simulate(cohort, stays, 8, NE_ALWAYS, horizon=6, n_samples=3, seed=5)
    assert all(a.samples.equals(b.samples) and a.corrections.equals(b.corrections) for a, b in zip(first, again, strict=True))
    assert not all(a.samples.equals(b.samples) for a, b in zip(first, other, strict=True))
    for future in first:
        assert (future.values(["norepinephrine"]) == 0.1).all()  # the strategy's dose, whatever the agents were shown
    early = twin.simulate(cohort, stays, 8, load_strategy("early_norepinephrine"), horizon=6, n_samples=3, seed=4)
    decided = pl.concat([f.samples.with_columns(pl.col("map").shift(1).over("sample").alias("map_before")) for f in early])
    low = decided.filter(pl.col("map_before") < 65)  # MAP of the simulated hour before, as the strategy reads it
    assert low.height > 0 and (low["norepinephrine"] > 0).all()


def test_the_treatment_blind_twin_gives_every_strategy_the_same_futures(twin: TwinSimulator, cohort: Cohort, stays: list[int]) -> None:
    blind = next(v for v in twin.variants() if v.hide_treatments)
    assert blind.name == "twin_treatment_blind"
    variables = list(cohort.catalog.variable_codes)
    ne = blind.simulate(cohort, stays, 8, NE_ALWAYS, horizon=6, n_samples=2, seed=1)
    flood = blind.simulate(cohort, stays, 8, FLOOD, horizon=6, n_samples=2, seed=1)
    for a, b in zip(ne, flood, strict=True):
        np.testing.assert_array_equal(a.values(variables), b.values(variables))
        assert (a.values(["norepinephrine"]) == 0.1).all() and (b.values(["iv_fluid_ml"]) == 3000).all()
    seen = twin.simulate(cohort, stays, 8, FLOOD, horizon=6, n_samples=2, seed=1)
    assert any(not np.array_equal(a.values(variables), b.values(variables)) for a, b in zip(ne, seen, strict=True))


def test_the_overlap_adjustment_moves_only_doses_outside_support(twin: TwinSimulator, cohort: Cohort, stays: list[int]) -> None:
    class_doses = twin.behaviour.class_doses_["iv_fluid_ml"]
    flood_class = int(action_class("iv_fluid_ml", np.array([3000.0]))[0])
    assert np.isnan(class_doses[flood_class])  # the fitting cohort never gave 3 L in an hour
    largest_given = class_doses[np.isfinite(class_doses)].max()
    futures = twin.simulate(cohort, stays, 8, FLOOD, horizon=4, n_samples=2, seed=0)
    adjusted = pl.concat([f.adjustments for f in futures])
    assert adjusted.height == len(stays) * 2 * 4  # every hour of every sample: the flood is never in support
    assert adjusted["treatment"].unique().to_list() == ["iv_fluid_ml"]
    assert (adjusted["strategy_dose"] == 3000).all() and (adjusted["simulated_dose"] == largest_given).all()
    usual = twin.simulate(cohort, stays, 8, NE_ALWAYS, horizon=4, n_samples=2, seed=0)  # 0.1 ug/kg/min: a dose the cohort gave
    assert all(f.adjustments.is_empty() for f in usual)
    assert all((f.values(["iv_fluid_ml"]) == 3000).all() for f in futures)  # the futures report the strategy's doses
    plain = next(v for v in twin.variants() if v.name == "twin_no_overlap_adjustment")
    assert all(f.adjustments is None for f in plain.simulate(cohort, stays, 8, FLOOD, horizon=4, n_samples=2, seed=0))


def test_bad_requests_name_what_is_wrong(twin: TwinSimulator, cohort: Cohort, stays: list[int]) -> None:
    with pytest.raises(ValueError, match="decision hour must be 2 or later"):
        twin.simulate(cohort, stays, 1, NE_ALWAYS, horizon=4, n_samples=1)
    with pytest.raises(KeyError, match="not in the cohort"):
        twin.simulate(cohort, [10_000], 8, NE_ALWAYS, horizon=4, n_samples=1)
    with pytest.raises(ValueError, match="ends in hour 30: a decision at hour 40"):
        twin.simulate(cohort, stays[:1], 40, NE_ALWAYS, horizon=4, n_samples=1)
    with pytest.raises(ValueError, match="leaves its other treatments to usual care"):
        TwinSimulator(twin.twin, None, overlap_adjustment=False).simulate(cohort, stays, 8, NE_ALWAYS, horizon=4, n_samples=1)
    with pytest.raises(ValueError, match="needs a behaviour policy"):
        TwinSimulator(twin.twin, None)

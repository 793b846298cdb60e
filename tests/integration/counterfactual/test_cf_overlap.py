"""The overlap guardrail on engine cohorts: the clinician's own care is in support, a fluid flood is not."""

from __future__ import annotations

import polars as pl
import pytest

from organsim.counterfactual import (
    DEFAULT_SUPPORT_THRESHOLD,
    BehaviourPolicy,
    EngineOracle,
    assess_overlap,
    load_strategy,
    overlap_on_record,
    parse_strategy,
)
from organsim.data import Cohort
from organsim.utils.errors import DataError

FLOOD = {"name": "flood", "description": "3 L/h of fluid to normotensive patients",
         "treatments": {"iv_fluid_ml": {"rules": [{"kind": "threshold", "when": ["map >= 65"], "dose": 3000}]}}}
NORMOTENSIVE_BOLUS = {"name": "normotensive_bolus", "description": "1 L/h of fluid whenever MAP >= 80",
                      "treatments": {"iv_fluid_ml": {"rules": [{"kind": "threshold", "when": ["map >= 80"], "dose": 1000}]}}}


def test_the_clinicians_own_actions_are_in_support(behaviour: BehaviourPolicy, held_out_cohort: Cohort) -> None:
    scored = behaviour.action_probabilities(held_out_cohort.hourly, held_out_cohort.treatments, held_out_cohort.stays)
    assert scored.height == 4 * held_out_cohort.hourly.height
    by_treatment = scored.group_by("treatment").agg(
        (pl.col("probability") < DEFAULT_SUPPORT_THRESHOLD).mean().alias("outside"), pl.col("probability").median().alias("median"))
    for treatment, outside, median in by_treatment.iter_rows():
        assert outside < 0.02, f"{treatment}: {outside:.1%} of the clinician's own actions fall outside support"
        assert median > 0.9, treatment


def test_a_fluid_flood_for_normotensive_patients_is_flagged(behaviour: BehaviourPolicy, held_out_cohort: Cohort) -> None:
    stays = held_out_cohort.hourly.group_by("stay_id").agg(pl.col("hour").max().alias("last")).filter(pl.col("last") >= 30)
    ids = sorted(stays["stay_id"].to_list())[:10]
    for spec in (FLOOD, NORMOTENSIVE_BOLUS):
        report = overlap_on_record(behaviour, parse_strategy(spec), held_out_cohort, ids, decision_hour=8, horizon=12)
        assert not report.in_support
        assert report.actions.height == 12 * len(ids)
        first = report.flags.row(0, named=True)
        assert first["treatment"] == "iv_fluid_ml" and first["median_probability"] < DEFAULT_SUPPORT_THRESHOLD
        explanation = report.explanations[0]
        assert explanation.startswith(f"hour {first['hour']} ({first['hours_after_decision']} h after the decision): {spec['name']} gives iv_fluid_ml")
        assert f"fitted on {behaviour.n_stays_} stays" in explanation and "they received: none" in explanation
    restrictive = overlap_on_record(behaviour, load_strategy("restrictive_fluids"), held_out_cohort, ids, decision_hour=8, horizon=12)
    assert restrictive.in_support and restrictive.explanations == ()
    assert overlap_on_record(behaviour, load_strategy("observed_care"), held_out_cohort, ids, 8, 12).actions.height == 0


def test_sampled_futures_are_checked_hour_by_hour(behaviour: BehaviourPolicy, engine_cohort: Cohort, oracle: EngineOracle) -> None:
    stay = engine_cohort.stays.filter(~pl.col("sepsis") & ~pl.col("death"))["stay_id"][0]
    flood = parse_strategy(FLOOD)
    futures, = oracle.simulate(engine_cohort, [stay], 6, flood, horizon=10)
    report = assess_overlap(behaviour, futures, treatments=flood.governed)
    assert not report.in_support and report.to_dict()["in_support"] is False
    assert report.actions["treatment"].unique().to_list() == ["iv_fluid_ml"]
    assert report.actions["hour"].to_list() == list(range(6, 16))
    given = report.actions.filter(pl.col("value") == 3000.0)
    assert given.height > 0 and (given["probability"] < DEFAULT_SUPPORT_THRESHOLD).all()


def test_the_behaviour_policy_needs_recorded_treatments(engine_cohort: Cohort) -> None:
    with pytest.raises(RuntimeError, match="not fitted"):
        BehaviourPolicy().probabilities(pl.DataFrame())
    blind = Cohort(stays=engine_cohort.stays, hourly=engine_cohort.hourly, treatments=engine_cohort.treatments.clear(),
                   meta={**engine_cohort.meta, "treatments_recorded": False}, catalog=engine_cohort.catalog)
    with pytest.raises(DataError, match="no recorded treatments"):
        BehaviourPolicy().fit(blind)

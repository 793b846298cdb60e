"""The twin report: reference-choice frequencies, carried context values, violation rates, and event
chains (simulating the truth must compare perfectly), then a micro twin end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from organsim.agents.training import TrainConfig, train_agents
from organsim.catalog import SYSTEMS, Catalog
from organsim.data import Cohort
from organsim.data.windows import HourlyArrays
from organsim.evaluate.twin_report import (
    EVENT_CHAINS,
    REFERENCE_HEATMAP,
    TWIN_REPORT,
    HeldOutSimulations,
    TwinForecaster,
    constraint_violations,
    event_chain_comparison,
    last_observed,
    plot_reference_choices,
    realism,
    reference_frequencies,
    simulate_held_out,
    write_twin_report,
)
from organsim.physiology import EngineConfig, PhysiologyEngine
from organsim.twin import CORRECTION_COLUMNS, PatientTwin, Rollout
from organsim.twin.constraints import HARD_RULES, RULES, ConstraintSet
from organsim.twin.realism import REALISM_HOURS, RealismCritic, RealismCriticConfig


@pytest.fixture(scope="module")
def engine_cohort() -> Cohort:
    return PhysiologyEngine(EngineConfig(n_patients=16, hours=30, seed=4)).generate().split((0.5, 0.25, 0.25), seed=0)


def test_last_observed_carries_each_variable_from_its_last_measurement() -> None:
    nan = np.nan
    values = np.array([[[1.0, nan, nan], [2.0, 5.0, nan], [nan, nan, nan]]])  # (1, C=3, V=3)
    np.testing.assert_array_equal(last_observed(values), [[2.0, 5.0, nan]])


def test_reference_frequencies_are_shares_of_simulated_hours() -> None:
    counts = np.zeros((9, 9), dtype=np.int64)
    counts[0, 1] = 30  # the cardiovascular agent consulted the respiratory system in 30 of 40 hours
    counts[8, :8] = 40  # the metabolic agent consulted every other system every hour
    document = reference_frequencies(counts, 40, SYSTEMS)
    assert document["share"][0][1] == 0.75 and document["share"][1][0] == 0.0
    assert document["mean_consulted"]["cardiovascular"] == 0.75
    assert document["mean_consulted"]["metabolic"] == 8.0
    figure = plot_reference_choices(document, title="test")
    ax = figure.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == list(SYSTEMS)
    assert np.asarray(ax.images[0].get_array())[0, 1] == 0.75


def _truth_rollout(test: Cohort, horizon: int) -> HeldOutSimulations:
    """'Simulations' that are the real future hours: the comparison must find them identical."""
    arrays = HourlyArrays.from_cohort(test)
    starts = arrays.starts(horizon=horizon, per_stay=1, min_context=3, seed=0)
    batch = arrays.batch(starts, context_hours=6, horizon=horizon)
    truth = arrays.targets(starts, horizon=horizon)[None]  # (1, B, H, V)
    n_systems = len(SYSTEMS)
    rollout = Rollout(
        values=truth, treatments=np.zeros((1, batch.size, horizon, len(batch.treatment_codes)), dtype=np.float32),
        consulted=np.zeros((1, batch.size, horizon, n_systems, n_systems), dtype=bool),
        corrections=pl.DataFrame(schema=CORRECTION_COLUMNS), violations_before={}, violations_after={},
        variables=batch.variables, treatment_codes=batch.treatment_codes, systems=SYSTEMS,
        stay_ids=batch.stay_ids, start_hours=batch.start_hours,
    )
    return HeldOutSimulations(batch=batch, corrected=rollout, uncorrected=rollout, previous=last_observed(batch.values),
                              truth=truth[0])


def test_simulating_the_truth_gives_a_perfect_event_chain_comparison(engine_cohort: Cohort) -> None:
    test = engine_cohort.subset(split="test")
    simulations = _truth_rollout(test, horizon=12)
    summary, stays = event_chain_comparison(simulations, test)
    assert summary["n_stays"] == simulations.batch.size == stays.height
    assert summary["occurrence"]["true_positive"] > 0  # engine stays have events within 12 hours
    assert summary["occurrence"]["false_positive"] == summary["occurrence"]["false_negative"] == 0
    assert summary["onset_difference_hours"]["mean_absolute"] == 0.0
    assert (stays["chain_real"] == stays["chain_simulated"]).all()


def test_a_shifted_simulation_is_seen_as_late(engine_cohort: Cohort) -> None:
    test = engine_cohort.subset(split="test")
    exact = _truth_rollout(test, horizon=12)
    # the simulated hours repeat the last context hour twice before the real course: events come late
    values = exact.corrected.values.copy()
    values[0, :, 2:] = exact.corrected.values[0, :, :-2]
    values[0, :, :2] = exact.batch.values[:, -1:, :]
    late = HeldOutSimulations(batch=exact.batch, corrected=_replace(exact.corrected, values), uncorrected=exact.uncorrected,
                              previous=exact.previous, truth=exact.truth)
    summary, _ = event_chain_comparison(late, test)
    onset = summary["onset_difference_hours"]
    assert onset["n"] > 0 and onset["mean"] > 0


def _replace(rollout: Rollout, values: np.ndarray) -> Rollout:
    return Rollout(**{**rollout.__dict__, "values": values})


def test_constraint_violations_count_per_simulated_hour(engine_cohort: Cohort, catalog: Catalog) -> None:
    test = engine_cohort.subset(split="test")
    exact = _truth_rollout(test, horizon=4)
    variables = exact.batch.variables
    broken = exact.corrected.values.copy()
    broken[0, 0, 0, variables.index("hr")] = 400.0  # out of range, and a jump from the context
    simulations = HeldOutSimulations(batch=exact.batch, corrected=exact.corrected, uncorrected=_replace(exact.corrected, broken),
                                     previous=exact.previous, truth=exact.truth)
    report = constraint_violations(simulations, ConstraintSet.from_catalog(catalog, variables))
    hours = exact.batch.size * 4
    assert report["simulated_hours"] == hours
    assert report["uncorrected"]["range"] - report["corrected"]["range"] == pytest.approx(1 / hours)
    assert set(report["corrected"]) == set(RULES)
    assert report["hard_per_hour"]["uncorrected"] > report["hard_per_hour"]["corrected"]


@pytest.fixture(scope="module")
def micro_twin(engine_cohort: Cohort, tmp_path_factory: pytest.TempPathFactory) -> PatientTwin:
    import torch

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("twin_report") / "model"
    config = TrainConfig(max_epochs=1, batch_size=8, n_bins=8, learning_rate=3e-3, seed=3)
    train_agents(engine_cohort, out, preset="micro", train_config=config, device="cpu", show_progress=False)
    return PatientTwin.load(out, device="cpu")


def test_micro_twin_report_end_to_end(micro_twin: PatientTwin, engine_cohort: Cohort, tmp_path: Path) -> None:
    test = engine_cohort.subset(split="test")
    forecaster = TwinForecaster(micro_twin)
    arrays = HourlyArrays.from_cohort(test)
    starts = arrays.starts(horizon=3, per_stay=2, min_context=3, seed=0)
    forecast = forecaster.predict(arrays.batch(starts, context_hours=8, horizon=3), 3)
    assert forecast.shape == (starts.height, 3, len(arrays.variables))
    # no reference policy saved: "policy" means every other system, every hour
    assert forecaster.simulated_hours_ == starts.height * 3
    np.testing.assert_array_equal(forecaster.consulted_hours_, (1 - np.eye(9, dtype=np.int64)) * starts.height * 3)

    simulations = simulate_held_out(micro_twin, test, horizon=6, seed=0)
    again = simulate_held_out(micro_twin, test, horizon=6, seed=0)
    np.testing.assert_array_equal(simulations.corrected.values, again.corrected.values)
    assert all(simulations.corrected.violations_after.get(rule, 0) == 0 for rule in HARD_RULES)

    document, written = write_twin_report(tmp_path, forecaster, simulations, test, settings={"horizon": 6, "seed": 0})
    assert {p.name for p in written} == {TWIN_REPORT, REFERENCE_HEATMAP, EVENT_CHAINS}
    assert json.loads((tmp_path / TWIN_REPORT).read_text()) == json.loads(json.dumps(document))
    violations = document["constraint_violations"]
    assert all(violations["corrected"][rule] == 0 for rule in HARD_RULES)
    assert violations["hard_per_hour"]["uncorrected"] >= violations["hard_per_hour"]["corrected"] == 0
    assert document["coordinated"] is False
    assert document["realism"]["score"] is None and "no realism critic" in document["realism"]["reason"]
    assert document["event_chains"]["n_stays"] == simulations.batch.size
    assert pl.read_parquet(tmp_path / EVENT_CHAINS).height == simulations.batch.size


def test_realism_scores_the_corrected_futures_with_the_critic(micro_twin: PatientTwin, engine_cohort: Cohort) -> None:
    test = engine_cohort.subset(split="test")
    simulations = simulate_held_out(micro_twin, test, horizon=REALISM_HOURS, seed=1)
    context_dim = micro_twin.context_summary(simulations.batch).shape[1]
    critic = RealismCritic.build(RealismCriticConfig(variables=("hr", "map", "spo2"), context_dim=context_dim))
    twin = PatientTwin(micro_twin.agents, corrector=micro_twin.corrector, device="cpu", realism_critic=critic)
    scored = realism(twin, simulations)
    assert 0.0 < scored["score"] < 1.0 and scored["problems"] == simulations.batch.size
    assert scored["score"] == twin.realism_score(simulations.batch, simulations.truth, simulations.corrected)
    short = simulate_held_out(micro_twin, test, horizon=REALISM_HOURS - 1, seed=1)
    assert realism(twin, short)["score"] is None

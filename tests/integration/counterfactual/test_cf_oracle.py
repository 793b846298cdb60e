"""Strategies run inside the physiology engine: the oracle's futures follow the rules and replay the record."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from organsim.counterfactual import (
    EngineOracle,
    RecordedFuture,
    RecordedStates,
    RecordedTreatments,
    StrategyPolicy,
    load_strategy,
)
from organsim.data import Cohort
from organsim.physiology import ObservedState, PhysiologyEngine


def test_observed_care_reproduces_the_record(engine_cohort: Cohort, oracle: EngineOracle, septic_alive: list[int]) -> None:
    ids = septic_alive[:5]
    strategy = load_strategy("observed_care")
    charted = EngineOracle(oracle.engine, kind="observed").simulate(engine_cohort, ids, 9, strategy, horizon=40)
    recorded = RecordedFuture().simulate(engine_cohort, ids, 9, strategy, horizon=40)
    for ours, record in zip(charted, recorded, strict=True):
        assert ours.samples.height == record.samples.height > 0
        np.testing.assert_allclose(ours.values(ours.variables), record.values(record.variables).astype(np.float32), rtol=1e-6)
        np.testing.assert_array_equal(ours.values(ours.treatment_codes), record.values(record.treatment_codes))
        assert ours.history.equals(record.history)
    truth = oracle.simulate(engine_cohort, ids, 9, strategy, horizon=40)
    factual = oracle.engine.factual(ids)
    for i, future in enumerate(truth):
        np.testing.assert_array_equal(future.values(future.variables)[0], factual.true[i, 8:48])


def test_the_fresh_noise_oracle_samples_futures_of_the_true_physiology(engine_cohort: Cohort, oracle: EngineOracle, septic_alive: list[int]) -> None:
    ids = septic_alive[:3]
    strategy = load_strategy("early_norepinephrine")
    fresh = EngineOracle(oracle.engine, fresh_noise=True)
    futures = fresh.simulate(engine_cohort, ids, 9, strategy, horizon=12, n_samples=4, seed=2)
    truth = oracle.simulate(engine_cohort, ids, 9, strategy, horizon=12)
    assert fresh.name == "engine_fresh_noise_true"
    for future, true in zip(futures, truth, strict=True):
        values = future.values(future.variables)  # (4, 12, V)
        assert future.n_samples == 4 and future.history.equals(true.history)
        assert not np.allclose(values[0], values[1], equal_nan=True)  # each sample its own noise
        assert not np.allclose(values[0], true.values(true.variables)[0], equal_nan=True)  # and not the stay's own
    again = fresh.simulate(engine_cohort, ids, 9, strategy, horizon=12, n_samples=4, seed=2)
    np.testing.assert_array_equal(again[0].values(again[0].variables), futures[0].values(futures[0].variables))
    with pytest.raises(ValueError, match="n_samples must be 1"):
        oracle.simulate(engine_cohort, ids, 9, strategy, horizon=12, n_samples=2)
    with pytest.raises(ValueError, match="seed >= 0"):
        fresh.simulate(engine_cohort, ids, 9, strategy, horizon=12, n_samples=2, seed=-1)


def test_the_engine_shows_strategies_the_state_recorded_states_rebuild(engine_cohort: Cohort, septic_alive: list[int]) -> None:
    """A policy inside the engine sees exactly what RecordedStates builds from the cohort's record."""
    seen: dict[int, ObservedState] = {}
    replay = RecordedTreatments(engine_cohort.treatments, catalog=engine_cohort.catalog)

    def spy(state: ObservedState, hour: int) -> dict[str, np.ndarray]:
        seen[hour] = state
        return replay(state, hour)

    ids = septic_alive[:4]
    PhysiologyEngine.from_cohort(engine_cohort).counterfactuals(ids, spy, from_hour=20)
    record = engine_cohort.subset(ids)
    states = RecordedStates(record.hourly, record.treatments, record.stays, catalog=engine_cohort.catalog)
    for hour in (20, 33):
        ours, engine = states.at(hour), seen[hour]
        np.testing.assert_allclose(ours.carried, engine.carried.astype(np.float32), rtol=1e-6)
        np.testing.assert_array_equal(ours.carried_hour, engine.carried_hour)
        np.testing.assert_array_equal(ours.treatments, engine.treatments)
        for code in ("map", "lactate", "spo2"):
            np.testing.assert_allclose(ours.latest(code, 2), engine.latest(code, 2).astype(np.float32), rtol=1e-6)


def test_early_norepinephrine_decides_from_what_was_charted(engine_cohort: Cohort, oracle: EngineOracle, septic_alive: list[int]) -> None:
    strategy = load_strategy("early_norepinephrine")
    ids, decision = septic_alive[:12], 5
    charted = EngineOracle(oracle.engine, kind="observed").simulate(engine_cohort, ids, decision, strategy, horizon=30)
    frames = [pl.concat([f.history.with_columns(pl.lit(f.stay_id).alias("stay_id")).select(f.samples.drop("sample").columns + ["stay_id"]),
                         f.samples.drop("sample").with_columns(pl.lit(f.stay_id).alias("stay_id"))], how="vertical_relaxed")
              for f in charted]
    whole = pl.concat(frames, how="vertical_relaxed")
    catalog = engine_cohort.catalog
    states = RecordedStates(whole.select("stay_id", "hour", *catalog.variable_codes), whole.select("stay_id", "hour", *catalog.treatment_codes),
                            engine_cohort.stays.filter(pl.col("stay_id").is_in(ids)).sort("stay_id"), catalog=catalog)
    # the same rules on the rebuilt states (the clinician's other treatments need the engine's random draws)
    policy = StrategyPolicy(strategy.model_copy(update={"others": "none"}), decision, catalog=catalog)
    given = np.stack([f.values(["norepinephrine"])[0, :, 0] for f in charted])  # (stays, hours)
    started = 0
    for offset in range(30):
        hour = decision + offset
        alive = np.isfinite(given[:, offset])
        expected = policy(states.at(hour), hour)["norepinephrine"]
        np.testing.assert_allclose(given[alive, offset], expected[alive], atol=1e-6)
        started += int(((expected > 0) & (states.at(hour).previous_treatment("norepinephrine") == 0))[alive].sum())
    assert started > 0  # some patients were started on it, so the rule was exercised


def test_antibiotic_schedules_and_oracle_errors(engine_cohort: Cohort, oracle: EngineOracle, septic_alive: list[int]) -> None:
    ids = septic_alive[:6]
    early = oracle.simulate(engine_cohort, ids, 10, load_strategy("antibiotics_1h"), horizon=30)
    late = oracle.simulate(engine_cohort, ids, 10, load_strategy("antibiotics_6h"), horizon=30)
    for one, six in zip(early, late, strict=True):
        doses_1h = np.flatnonzero(one.values(["antibiotic"])[0, :, 0] > 0.5)
        doses_6h = np.flatnonzero(six.values(["antibiotic"])[0, :, 0] > 0.5)
        alive_1h = int(np.isfinite(one.values(["antibiotic"])[0, :, 0]).sum())
        assert doses_1h.tolist() == [h for h in (0, 8, 16, 24) if h < alive_1h]
        assert doses_6h.tolist() == [h for h in (5, 13, 21, 29) if h < int(np.isfinite(six.values(["antibiotic"])[0, :, 0]).sum())]
    strategy = load_strategy("observed_care")
    with pytest.raises(ValueError, match="n_samples must be 1"):
        oracle.simulate(engine_cohort, ids, 10, strategy, horizon=10, n_samples=5)
    with pytest.raises(ValueError, match="use a horizon of at most 39"):
        oracle.simulate(engine_cohort, ids, 10, strategy, horizon=40)
    with pytest.raises(KeyError, match=r"\[9999\] are not in the cohort"):
        oracle.simulate(engine_cohort, [9999], 10, strategy, horizon=10)

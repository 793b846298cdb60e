"""The engine: determinism, the generated cohort, and the oracle's exactness and errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from organsim.data import Cohort
from organsim.physiology import (
    ENGINE_VERSION,
    ClinicianPolicy,
    ComposedPolicy,
    ConstantPolicy,
    EngineConfig,
    NoTreatmentPolicy,
    PhysiologyEngine,
    Trajectory,
)
from organsim.utils.errors import DataError


def _same(a: Trajectory, b: Trajectory) -> bool:
    return (
        np.array_equal(a.true, b.true, equal_nan=True)
        and np.array_equal(a.observed, b.observed, equal_nan=True)
        and np.array_equal(a.treatments, b.treatments)
        and np.array_equal(a.sofa, b.sofa, equal_nan=True)
        and np.array_equal(a.death_hour, b.death_hour, equal_nan=True)
        and np.array_equal(a.sepsis_onset_hour, b.sepsis_onset_hour, equal_nan=True)
    )


@pytest.fixture(scope="module")
def small_cohort(small_engine: PhysiologyEngine) -> Cohort:
    return small_engine.generate()


def test_same_seed_same_cohort_other_seed_another(small_engine: PhysiologyEngine, small_cohort: Cohort) -> None:
    again = PhysiologyEngine(small_engine.config).generate(chunk_size=7)  # chunking must not matter either
    for table in ("stays", "hourly", "treatments"):
        assert getattr(again, table).equals(getattr(small_cohort, table)), table
    other = PhysiologyEngine(EngineConfig(seed=6, n_patients=40, hours=30, septic_fraction=0.5)).generate()
    assert not other.hourly.equals(small_cohort.hourly)


def test_a_stay_does_not_depend_on_the_other_stays(small_engine: PhysiologyEngine, small_factual: Trajectory) -> None:
    prefix = PhysiologyEngine(EngineConfig(seed=5, n_patients=12, hours=30, septic_fraction=0.5)).factual()
    assert _same(prefix, small_factual.select(list(range(1, 13))))
    picked = small_engine.factual([31, 4])
    assert _same(picked, small_factual.select([31, 4]))


def test_generated_cohort_is_canonical_and_labelled(small_engine: PhysiologyEngine, small_cohort: Cohort) -> None:
    stays = small_cohort.stays
    assert small_cohort.meta["source"] == "engine" and small_cohort.meta["treatments_recorded"]
    assert stays["stay_id"].to_list() == list(range(1, 41))
    assert (stays["sepsis"] == stays["sepsis_onset_hour"].is_not_null()).all()
    assert 0 < stays["sepsis"].sum() < 40
    dead = stays.filter(pl.col("death"))
    alive = stays.filter(~pl.col("death"))
    assert (alive["n_hours"] == 30).all() and (dead["n_hours"] <= 30).all()
    assert (stays["sepsis_onset_hour"].drop_nulls() <= stays.filter(pl.col("sepsis"))["n_hours"]).all()
    assert small_cohort.hourly.height == stays["n_hours"].sum() == small_cohort.treatments.height
    assert set(stays["unit"].unique().to_list()) <= {"MICU", "SICU", "other"}
    config = EngineConfig.from_dict(small_cohort.meta["provenance"]["engine"])
    assert config == small_engine.config
    # some of every treatment was given, and unmeasured values are nulls, never NaN
    assert (small_cohort.treatments.select(pl.all().exclude("stay_id", "hour").max()) > 0).row(0) == (True,) * 4
    assert small_cohort.hourly.select(pl.col(pl.Float32).is_nan().any()).row(0) == (False,) * len(small_engine.variables)


@pytest.mark.parametrize("from_hour", [1, 2, 17, 30])
def test_counterfactual_of_the_clinician_is_the_factual_run(
    small_engine: PhysiologyEngine, small_factual: Trajectory, from_hour: int
) -> None:
    again = small_engine.counterfactuals(list(small_factual.stay_ids), ClinicianPolicy(), from_hour)
    assert _same(again, small_factual)


def test_counterfactual_from_the_saved_cohort_reproduces_its_rows(small_cohort: Cohort, tmp_path: Path) -> None:
    small_cohort.save(tmp_path / "cohort")
    engine = PhysiologyEngine.from_cohort(tmp_path / "cohort")
    for stay in (3, 17, 40):
        replayed = engine.counterfactual(stay, ClinicianPolicy(), from_hour=11).frame("observed")
        recorded = small_cohort.hourly.filter(pl.col("stay_id") == stay)
        assert replayed.select(recorded.columns).cast(recorded.schema).equals(recorded)


def test_another_strategy_changes_only_the_hours_from_from_hour(small_engine: PhysiologyEngine, small_factual: Trajectory) -> None:
    ids = list(small_factual.stay_ids)
    untreated = small_engine.counterfactuals(ids, NoTreatmentPolicy(), from_hour=10)
    np.testing.assert_array_equal(untreated.true[:, :9], small_factual.true[:, :9])
    np.testing.assert_array_equal(untreated.treatments[:, :9], small_factual.treatments[:, :9])
    assert (untreated.treatments[:, 9:] == 0).all()
    changed = ~np.all(np.isclose(untreated.true[:, 9:], small_factual.true[:, 9:], equal_nan=True), axis=(1, 2))
    treated_later = small_factual.treatments[:, 9:].any(axis=(1, 2))
    assert changed[treated_later].all()
    # and repeating the question gives the identical answer
    assert _same(untreated, small_engine.counterfactuals(ids, NoTreatmentPolicy(), from_hour=10))


def test_a_noise_draw_is_another_future_of_the_same_history(small_engine: PhysiologyEngine, small_factual: Trajectory) -> None:
    ids = list(small_factual.stay_ids)
    policy = ClinicianPolicy()
    other = small_engine.counterfactuals(ids, policy, from_hour=10, noise_draw=(0, 1))
    np.testing.assert_array_equal(other.true[:, :9], small_factual.true[:, :9])  # the same history
    np.testing.assert_array_equal(other.observed[:, :9], small_factual.observed[:, :9])
    alive = small_factual.n_hours > 12
    assert not np.allclose(other.true[alive, 10:12], small_factual.true[alive, 10:12], equal_nan=True)  # new noise from hour 10
    assert _same(other, small_engine.counterfactuals(ids, policy, from_hour=10, noise_draw=(0, 1)))  # the same draw, the same future
    assert not _same(other, small_engine.counterfactuals(ids, policy, from_hour=10, noise_draw=(0, 2)))
    # a draw depends on the stay, not on which stays run beside it
    alone = small_engine.counterfactuals(ids[3:4], policy, from_hour=10, noise_draw=(0, 1))
    np.testing.assert_array_equal(alone.true[0], other.true[3])
    with pytest.raises(ValueError, match="draw must be"):
        small_engine.counterfactuals(ids, policy, from_hour=10, noise_draw=(-1,))


def test_counterfactual_returns_the_true_trajectory_of_every_variable(small_engine: PhysiologyEngine) -> None:
    one = small_engine.counterfactual(9, NoTreatmentPolicy(), from_hour=5)
    assert one.true.shape == (1, 30, len(small_engine.variables))
    lived = int(one.n_hours[0])
    assert not np.isnan(one.true[0, :lived]).any()
    assert np.isnan(one.observed[0, :lived]).any()  # the chart has gaps, the truth does not
    frame = one.frame("true")
    assert frame.height == lived and frame["stay_id"].unique().to_list() == [9]


def test_counterfactual_input_errors(small_engine: PhysiologyEngine) -> None:
    with pytest.raises(KeyError, match=r"stay id\(s\) \[99\] were not generated"):
        small_engine.counterfactual(99, NoTreatmentPolicy(), 2)
    for bad_hour in (0, 31):
        with pytest.raises(ValueError, match="from_hour must be an integer ICU hour in 1..30"):
            small_engine.counterfactual(1, NoTreatmentPolicy(), bad_hour)
    bad_policies = {
        "unknown treatment 'steroids'": ConstantPolicy({"steroids": 1.0}),
        r"antibiotic=0.5 at hour 2 \(row 0\); allowed: 0 or 1": ConstantPolicy({"antibiotic": 0.5}),
        r"iv_fluid_ml=-100 at hour 2 \(row 0\); allowed: 0.0..5000.0 mL/h": ComposedPolicy(
            ClinicianPolicy(), {"iv_fluid_ml": ConstantPolicy({"iv_fluid_ml": -100.0})}
        ),
    }
    for message, policy in bad_policies.items():
        with pytest.raises(ValueError, match=message):
            small_engine.counterfactual(1, policy, 2)


def test_from_cohort_refuses_cohorts_it_cannot_rerun(small_cohort: Cohort) -> None:
    foreign = Cohort(stays=small_cohort.stays, hourly=small_cohort.hourly, treatments=small_cohort.treatments,
                     meta={**small_cohort.meta, "provenance": {}}, catalog=small_cohort.catalog)
    with pytest.raises(DataError, match="no provenance.engine"):
        PhysiologyEngine.from_cohort(foreign)
    settings = {**small_cohort.meta["provenance"]["engine"], "engine_version": "0.0.1"}
    old = Cohort(stays=small_cohort.stays, hourly=small_cohort.hourly, treatments=small_cohort.treatments,
                 meta={**small_cohort.meta, "provenance": {"engine": settings}}, catalog=small_cohort.catalog)
    with pytest.raises(DataError, match=f"engine version '0.0.1', this is '{ENGINE_VERSION}'"):
        PhysiologyEngine.from_cohort(old)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"seed": -1}, "seed must be a non-negative integer"),
        ({"n_patients": 0}, "n_patients must be at least 1"),
        ({"septic_fraction": 1.5}, r"septic_fraction must lie in \[0, 1\]"),
        ({"pre_icu_hours": 10}, "pre_icu_hours must be at least 31"),
        ({"substeps_per_hour": 2}, r"substeps_per_hour must lie in \[4, 120\]"),
    ],
)
def test_engine_config_checks(settings: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EngineConfig(**settings)

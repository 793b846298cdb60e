"""Engine cohorts shared by the counterfactual integration tests (deterministic, built once per session)."""

from __future__ import annotations

import polars as pl
import pytest

from organsim.counterfactual import BehaviourPolicy, EngineOracle
from organsim.data import Cohort
from organsim.physiology import EngineConfig, PhysiologyEngine


@pytest.fixture(scope="session")
def engine_cohort() -> Cohort:
    """160 stays x 48 ICU hours, half of them septic."""
    return PhysiologyEngine(EngineConfig(seed=11, n_patients=160, hours=48, septic_fraction=0.5)).generate()


@pytest.fixture(scope="session")
def held_out_cohort() -> Cohort:
    """Another 60 stays of the same engine settings (another seed): patients the behaviour policy never saw."""
    return PhysiologyEngine(EngineConfig(seed=12, n_patients=60, hours=48, septic_fraction=0.5)).generate()


@pytest.fixture(scope="session")
def oracle(engine_cohort: Cohort) -> EngineOracle:
    return EngineOracle.from_cohort(engine_cohort)


@pytest.fixture(scope="session")
def behaviour(engine_cohort: Cohort) -> BehaviourPolicy:
    return BehaviourPolicy().fit(engine_cohort)


@pytest.fixture(scope="session")
def septic_alive(engine_cohort: Cohort) -> list[int]:
    """Septic stays alive through hour 30, by id."""
    last = engine_cohort.hourly.group_by("stay_id").agg(pl.col("hour").max().alias("last"))
    septic = engine_cohort.stays.filter(pl.col("sepsis")).join(last, on="stay_id").filter(pl.col("last") >= 30)
    return sorted(septic["stay_id"].to_list())

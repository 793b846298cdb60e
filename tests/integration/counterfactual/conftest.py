"""Engine cohorts (and a micro twin trained on one) shared by the counterfactual integration tests
(deterministic, built once per session)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
import torch

from organsim.agents import TrainConfig, train_agents
from organsim.agents.training import split_as_trained
from organsim.counterfactual import (
    BehaviourPolicy,
    BehaviourPolicyConfig,
    EngineOracle,
    TwinSimulator,
)
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


@pytest.fixture(scope="session")
def twin_cohort_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved engine cohort for the twin: 40 stays x 30 ICU hours, most of them septic."""
    out = tmp_path_factory.mktemp("twin_cf") / "cohort"
    PhysiologyEngine(EngineConfig(seed=5, n_patients=40, hours=30, septic_fraction=0.6)).generate().save(out)
    return out


@pytest.fixture(scope="session")
def micro_twin_model(twin_cohort_dir: Path) -> Path:
    """A micro model directory trained for one epoch on the twin cohort (one torch thread: reproducible)."""
    out = twin_cohort_dir.parent / "model"
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train_agents(Cohort.load(twin_cohort_dir), out, preset="micro", device="cpu", show_progress=False,
                     train_config=TrainConfig(max_epochs=1, batch_size=8, n_bins=8, n_change_bins=8, seed=1))
    finally:
        torch.set_num_threads(before)
    return out


@pytest.fixture(scope="session")
def twin_simulator(micro_twin_model: Path, twin_cohort_dir: Path) -> tuple[TwinSimulator, Cohort]:
    """The micro twin with the behaviour policy of its cohort's train split, and that split cohort."""
    simulator = TwinSimulator.load(micro_twin_model, None, device="cpu", overlap_adjustment=False)
    cohort = split_as_trained(Cohort.load(twin_cohort_dir), simulator.twin.agents)
    behaviour = BehaviourPolicy(BehaviourPolicyConfig(max_iter=10)).fit(cohort.subset(split="train"))
    return TwinSimulator(simulator.twin, behaviour), cohort

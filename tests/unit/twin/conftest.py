"""Fixtures of the twin tests: a small engine cohort and a micro model trained on it."""

from __future__ import annotations

from pathlib import Path

import pytest

from organsim.agents.training import TrainConfig, train_agents
from organsim.data import Cohort
from organsim.data.windows import choose_starts, forecast_batch
from organsim.physiology import EngineConfig, PhysiologyEngine


@pytest.fixture(scope="session")
def engine_cohort() -> Cohort:
    return PhysiologyEngine(EngineConfig(n_patients=24, hours=36, seed=1)).generate().split((0.5, 0.25, 0.25), seed=0)


@pytest.fixture(scope="session")
def micro_model(engine_cohort, tmp_path_factory) -> Path:
    """A micro model directory trained for one epoch on the engine cohort."""
    out = tmp_path_factory.mktemp("twin") / "model"
    config = TrainConfig(max_epochs=1, batch_size=8, n_bins=8, learning_rate=3e-3, seed=3)
    train_agents(engine_cohort, out, preset="micro", train_config=config, device="cpu", show_progress=False)
    return out


@pytest.fixture(scope="session")
def test_batch(engine_cohort):
    """Forecast problems from the test stays with 8 planned hours."""
    test = engine_cohort.subset(split="test")
    starts = choose_starts(test, horizon=8, per_stay=2, min_context=3, seed=0)
    return forecast_batch(test, starts, context_hours=12, horizon=8)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """One CPU thread: results compared bit for bit do not depend on thread scheduling."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

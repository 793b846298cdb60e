"""Fixtures of the dashboard tests: the dashboard's helper package on the path, and a tiny cohort
from the physiology engine saved to disk (12 stays x 24 h, split; seconds to build)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

DASHBOARDS = Path(__file__).resolve().parents[3] / "dashboards"
if str(DASHBOARDS) not in sys.path:
    sys.path.insert(0, str(DASHBOARDS))

from organsim.data import Cohort  # noqa: E402
from organsim.physiology import EngineConfig, PhysiologyEngine  # noqa: E402

TINY_STAYS, TINY_HOURS = 12, 24


@pytest.fixture(scope="session")
def engine_cohort() -> Cohort:
    """12 engine stays of 24 ICU hours, split train/validation/test by patient."""
    return PhysiologyEngine(EngineConfig(n_patients=TINY_STAYS, hours=TINY_HOURS, seed=3)).generate().split((0.7, 0.15, 0.15), seed=0)


@pytest.fixture(scope="session")
def engine_cohort_dir(engine_cohort: Cohort, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """:func:`engine_cohort` saved as a canonical cohort directory."""
    path = tmp_path_factory.mktemp("dashboard") / "cohort"
    engine_cohort.save(path)
    return path


@pytest.fixture(scope="session")
def micro_model_dir(engine_cohort: Cohort, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A micro model (nine organ agents) trained for one epoch on :func:`engine_cohort`."""
    from organsim.agents.training import TrainConfig, train_agents

    out = tmp_path_factory.mktemp("dashboard_model") / "model"
    config = TrainConfig(max_epochs=1, batch_size=8, n_bins=8, learning_rate=3e-3, seed=3)
    train_agents(engine_cohort, out, preset="micro", train_config=config, device="cpu", show_progress=False)
    return out

"""Small engines shared by the physiology unit tests (built once per session: they are deterministic)."""

from __future__ import annotations

import pytest

from organsim.physiology import EngineConfig, PhysiologyEngine, Trajectory


@pytest.fixture(scope="session")
def small_engine() -> PhysiologyEngine:
    """40 stays x 30 ICU hours, half of them septic."""
    return PhysiologyEngine(EngineConfig(seed=5, n_patients=40, hours=30, septic_fraction=0.5))


@pytest.fixture(scope="session")
def small_factual(small_engine: PhysiologyEngine) -> Trajectory:
    return small_engine.factual()

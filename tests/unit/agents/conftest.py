"""Fixtures of the organ-agent tests: a small synthetic cohort, split by patient."""

from __future__ import annotations

import pytest
from agent_cohorts import synthetic_agent_cohort

from organsim.data import Cohort


@pytest.fixture(scope="session")
def agent_cohort(catalog) -> Cohort:
    return synthetic_agent_cohort(catalog, n_stays=16, seed=0).split((0.5, 0.25, 0.25), seed=0)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Train on one CPU thread: multi-threaded embedding backward and reductions may change the last
    float bits between two runs, and these tests compare trained weights bit for bit."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

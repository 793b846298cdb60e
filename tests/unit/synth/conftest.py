"""Fixtures of the synthetic-cohort tests: small engine cohorts with and without recorded treatments."""

from __future__ import annotations

import pytest
from synth_fakes import engine_cohort, without_treatments

from organsim.data import Cohort


@pytest.fixture(scope="session")
def treated_cohort() -> Cohort:
    """Engine cohort, 40 stays, treatments recorded, split."""
    return engine_cohort()


@pytest.fixture(scope="session")
def untreated_cohort(treated_cohort) -> Cohort:
    """The same stays without treatments, weight, unit or death (like PhysioNet 2019)."""
    return without_treatments(treated_cohort)

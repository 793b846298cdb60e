"""Scores and events on the real PhysioNet 2019 archive: the vectorised code equals the per-stay loop
reference on a seeded 300-stay sample, and Sepsis-3 onset is the challenge's label.

Skipped with a message when ../shared/data/physionet2019 is absent (the ``physionet_archive`` fixture).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal
from score_reference import (
    reference_apache_ii,
    reference_events,
    reference_news2,
    reference_qsofa,
    reference_sirs,
    reference_sofa,
)

from organsim.data import Cohort, read_physionet2019
from organsim.scores import (
    EVENT_SCHEMA,
    apache_ii,
    critical_events,
    news2,
    qsofa,
    score_cohort,
    sirs,
    sofa,
)

pytestmark = [pytest.mark.realdata, pytest.mark.slow]
SAMPLE_STAYS = 300


@pytest.fixture(scope="module")
def cohort(physionet_archive: Path) -> Cohort:
    return read_physionet2019(physionet_archive)


@pytest.fixture(scope="module")
def sample(cohort: Cohort) -> Cohort:
    # septic stays are over-represented so the sample holds every event type
    rng = np.random.default_rng(2019)
    septic = cohort.stays.filter(pl.col("sepsis"))["stay_id"].to_numpy()
    other = cohort.stays.filter(~pl.col("sepsis"))["stay_id"].to_numpy()
    ids = [*rng.choice(septic, 100, replace=False), *rng.choice(other, SAMPLE_STAYS - 100, replace=False)]
    return cohort.subset(sorted(int(i) for i in ids))


def _same(vectorised: pl.DataFrame, reference: pl.DataFrame) -> None:
    assert_frame_equal(vectorised, reference.cast(dict(vectorised.schema)), check_dtypes=False)


def test_scores_match_the_loop_reference(sample: Cohort) -> None:
    hourly, catalog = sample.hourly, sample.catalog
    _same(sofa(hourly), reference_sofa(hourly, None, catalog))
    _same(apache_ii(hourly, sample.stays), reference_apache_ii(hourly, sample.stays, catalog))
    _same(news2(hourly), reference_news2(hourly, None, catalog))
    _same(qsofa(hourly), reference_qsofa(hourly, catalog))
    _same(sirs(hourly), reference_sirs(hourly, catalog))


def test_events_match_the_loop_reference(sample: Cohort) -> None:
    vectorised = critical_events(sample.hourly)
    assert set(vectorised["event"].unique()) == {e.code for e in sample.catalog.events}
    assert_frame_equal(vectorised, pl.DataFrame(reference_events(sample.hourly, sample.catalog), schema=EVENT_SCHEMA))


def test_whole_cohort(cohort: Cohort) -> None:
    hourly, events = score_cohort(cohort)
    assert hourly.height == 227_481
    # no treatments recorded: Sepsis-3 onset is the label, one event per septic stay
    septic = events.filter(pl.col("event") == "sepsis3")
    labels = cohort.stays.filter(pl.col("sepsis")).select("stay_id", pl.col("sepsis_onset_hour").alias("onset_hour"))
    assert_frame_equal(septic.select("stay_id", "onset_hour").sort("stay_id"), labels.sort("stay_id"))
    # PhysioNet has no GCS, PaO2, sodium or urine output: those components are missing on every row
    assert hourly["sofa_cns"].max() == 0 and hourly["apache_ii_sodium"].max() == 0
    assert hourly["qsofa_n_missing"].min() == 1
    # respiration comes from the SpO2/FiO2 surrogate; without treatments it never exceeds 2
    assert hourly["sofa_respiration"].max() == 2

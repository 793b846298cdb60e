"""Scores on the physiology engine's cohort (treatments recorded: vasopressors, ventilation,
antibiotics) equal the per-stay loop reference, Sepsis-3 onset from antibiotics + SOFA included."""

from __future__ import annotations

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from score_reference import (
    reference_apache_ii,
    reference_events,
    reference_news2,
    reference_qsofa,
    reference_sepsis_onset,
    reference_sirs,
    reference_sofa,
)

from organsim.data import Cohort
from organsim.physiology import EngineConfig, PhysiologyEngine
from organsim.scores import (
    EVENT_SCHEMA,
    apache_ii,
    critical_events,
    news2,
    qsofa,
    sepsis3_onset,
    sirs,
    sofa,
)


@pytest.fixture(scope="module")
def engine_cohort() -> Cohort:
    return PhysiologyEngine(EngineConfig(n_patients=40, hours=48, seed=11)).generate()


def _same(vectorised: pl.DataFrame, reference: pl.DataFrame) -> None:
    assert_frame_equal(vectorised, reference.cast(dict(vectorised.schema)), check_dtypes=False)


def test_engine_scores_match_the_loop_reference(engine_cohort: Cohort) -> None:
    cohort = engine_cohort
    assert cohort.meta["treatments_recorded"]
    hourly, treatments, catalog = cohort.hourly, cohort.treatments, cohort.catalog
    assert treatments["norepinephrine"].max() > 0 and treatments["mechanical_ventilation"].max() > 0
    sofa_scores = sofa(hourly, treatments)
    _same(sofa_scores, reference_sofa(hourly, treatments, catalog))
    _same(apache_ii(hourly, cohort.stays), reference_apache_ii(hourly, cohort.stays, catalog))
    _same(news2(hourly, treatments), reference_news2(hourly, treatments, catalog))
    _same(qsofa(hourly), reference_qsofa(hourly, catalog))
    _same(sirs(hourly), reference_sirs(hourly, catalog))
    assert_frame_equal(critical_events(hourly), pl.DataFrame(reference_events(hourly, catalog), schema=EVENT_SCHEMA))
    onsets = sepsis3_onset(sofa_scores, treatments=treatments)
    expected = {stay: best or (None, None, None) for stay, best in reference_sepsis_onset(sofa_scores, treatments).items()}
    assert {r["stay_id"]: (r["suspicion_hour"], r["sofa_rise_hour"], r["onset_hour"])
            for r in onsets.iter_rows(named=True)} == expected

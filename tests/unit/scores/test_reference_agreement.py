"""Vectorised scores equal a straightforward per-stay loop (score_reference.py) on a seeded cohort
whose values cross every threshold, with hour gaps, vasopressors, ventilation and antibiotics."""

from __future__ import annotations

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from score_frames import synthetic_cohort
from score_reference import (
    reference_apache_ii,
    reference_events,
    reference_news2,
    reference_qsofa,
    reference_sepsis_onset,
    reference_sirs,
    reference_sofa,
)

from organsim.catalog import Catalog
from organsim.data import Cohort
from organsim.scores import (
    EVENT_SCHEMA,
    apache_ii,
    critical_events,
    news2,
    qsofa,
    score_cohort,
    sepsis3_onset,
    sirs,
    sofa,
)


@pytest.fixture(scope="module")
def cohort(catalog: Catalog) -> Cohort:
    return synthetic_cohort(catalog, n_stays=60, seed=7)


def assert_same(vectorised: pl.DataFrame, reference: pl.DataFrame) -> None:
    """Equal values, column by column, whatever the integer widths."""
    assert vectorised.columns == reference.columns
    assert_frame_equal(vectorised, reference.cast(dict(vectorised.schema)), check_dtypes=False)


def test_sofa_matches_reference(cohort: Cohort) -> None:
    assert_same(sofa(cohort.hourly, cohort.treatments), reference_sofa(cohort.hourly, cohort.treatments, cohort.catalog))
    assert_same(sofa(cohort.hourly, None), reference_sofa(cohort.hourly, None, cohort.catalog))


def test_apache_ii_matches_reference(cohort: Cohort) -> None:
    context = pl.DataFrame({"stay_id": [1, 2, 3], "chronic_organ_insufficiency": [True, True, None],
                            "admission_type": ["elective_postoperative", "nonoperative", None],
                            "acute_renal_failure": [True, False, True]})
    reference = reference_apache_ii(cohort.hourly, cohort.stays, cohort.catalog,
                                    context={r["stay_id"]: r for r in context.iter_rows(named=True)})
    assert_same(apache_ii(cohort.hourly, cohort.stays, context=context), reference)


@pytest.mark.parametrize("scale", [1, 2])
def test_news2_matches_reference(cohort: Cohort, scale: int) -> None:
    assert_same(news2(cohort.hourly, cohort.treatments, spo2_scale=scale),
                reference_news2(cohort.hourly, cohort.treatments, cohort.catalog, scale=scale))


def test_qsofa_and_sirs_match_reference(cohort: Cohort) -> None:
    assert_same(qsofa(cohort.hourly), reference_qsofa(cohort.hourly, cohort.catalog))
    assert_same(sirs(cohort.hourly), reference_sirs(cohort.hourly, cohort.catalog))


def test_events_match_reference(cohort: Cohort) -> None:
    vectorised = critical_events(cohort.hourly)
    reference = pl.DataFrame(reference_events(cohort.hourly, cohort.catalog), schema=EVENT_SCHEMA)
    assert vectorised.height > 100  # the cohort exercises every event type many times
    assert set(vectorised["event"].unique()) == {e.code for e in cohort.catalog.events}
    assert_frame_equal(vectorised, reference)


def test_sepsis_onset_matches_reference(cohort: Cohort) -> None:
    scores = sofa(cohort.hourly, cohort.treatments)
    onsets = sepsis3_onset(scores, treatments=cohort.treatments)
    reference = reference_sepsis_onset(scores, cohort.treatments)
    got = {r["stay_id"]: (r["suspicion_hour"], r["sofa_rise_hour"], r["onset_hour"])
           for r in onsets.iter_rows(named=True)}
    expected = {stay: best or (None, None, None) for stay, best in reference.items()}
    assert got == expected
    assert sum(v[2] is not None for v in got.values()) >= 5


def test_score_cohort_joins_everything_and_chunks_agree(cohort: Cohort) -> None:
    hourly, events = score_cohort(cohort)
    assert hourly.height == cohort.hourly.height
    assert {"sofa_24h", "apache_ii_24h", "news2_risk", "qsofa_positive", "sirs_positive"} <= set(hourly.columns)
    # treatments are recorded: Sepsis-3 rows come from antibiotics + SOFA, valued at the onset-hour SOFA
    onsets = sepsis3_onset(sofa(cohort.hourly, cohort.treatments), treatments=cohort.treatments)
    septic = events.filter(pl.col("event") == "sepsis3").join(
        hourly.select("stay_id", pl.col("hour").alias("onset_hour"), "sofa"), on=["stay_id", "onset_hour"])
    assert septic.height == onsets["onset_hour"].is_not_null().sum() > 0
    assert (septic["trigger_value"] == septic["sofa"].cast(pl.Float64)).all()
    # scoring stays in two halves gives the same rows (windows never cross stays)
    ids = cohort.stay_ids
    halves = [score_cohort(cohort.subset(part)) for part in (ids[:25], ids[25:])]
    assert_frame_equal(pl.concat([h.hourly for h in halves]), hourly)
    assert_frame_equal(pl.concat([h.events for h in halves]).sort("stay_id", "onset_hour", "event"), events)

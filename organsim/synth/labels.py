"""Labels of generated stays, read off their generated physiology with organsim.scores.

Sepsis-3 onset is :func:`organsim.scores.sepsis3_onset` (suspected infection plus a SOFA rise of 2
or more) on the charted synthetic hours, scored by :func:`organsim.scores.sofa` exactly as a real
cohort is. Suspicion of infection is an antibiotic hour:

- when the training cohort records treatments, the antibiotics the behaviour policy gave in the
  simulation, with the challenge's windows (SOFA rise from 48 h before to 24 h after);
- when it does not (PhysioNet 2019 records neither cultures nor antibiotics), the suspicion hour
  the initial-state model drew with the stay (learned from the real labels' onset hour), with the
  SOFA window narrowed to :data:`UNRECORDED_HOURS_BEFORE_SUSPICION` h before it, so the onset stays
  within those hours of the drawn suspicion, as the real labels' onset sits at their end of stay. A
  stay drawn as septic whose simulated SOFA does not rise by 2 around its suspicion hour is not
  septic. Such cohorts carry their onset only through the hourly label, so an onset less than 6 h
  after a stay's first hour is stored as first hour + 6, the latest onset those labels allow, as
  the PhysioNet loader reads left-censored onsets (the hourly labels are the same either way: 1
  from the first hour); the stay then reads back from a .psv export with the same onset.

The PhysioNet-style hourly ``SepsisLabel`` (1 from 6 h before onset on) follows from the onset
(:meth:`organsim.data.Cohort.sepsis_labels`). Critical events come from
:func:`organsim.scores.critical_events` on the same hours.
"""

from __future__ import annotations

import polars as pl

from organsim.catalog import Catalog
from organsim.data.cohort import SEPSIS_LABEL_LEAD_HOURS
from organsim.scores import critical_events, sepsis3_onset, sofa

RECORDED_HOURS_BEFORE_SUSPICION = 48
RECORDED_HOURS_AFTER_SUSPICION = 24
UNRECORDED_HOURS_BEFORE_SUSPICION = 6
UNRECORDED_HOURS_AFTER_SUSPICION = 24


def sepsis_onsets(
    hourly: pl.DataFrame,
    *,
    treatments: pl.DataFrame | None,
    suspicion: pl.DataFrame | None,
    catalog: Catalog,
) -> pl.DataFrame:
    """Sepsis-3 onset hour of each generated stay (module docstring).

    Parameters
    ----------
    hourly
        The charted synthetic hours ``(stay_id, hour, <variables>...)``.
    treatments
        The simulated treatments ``(stay_id, hour, <treatments>...)`` when the training cohort
        records them (vasopressors and ventilation then count in SOFA, antibiotics mark
        suspicion); None otherwise.
    suspicion
        ``(stay_id, hour)`` drawn suspicion hours, used when ``treatments`` is None.

    Returns
    -------
    pl.DataFrame
        ``stay_id`` (Int64) and ``onset_hour`` (Int32, null = not septic), one row per stay of ``hourly``.
    """
    sofa_scores = sofa(hourly, treatments, catalog=catalog)
    if treatments is not None:
        onsets = sepsis3_onset(sofa_scores, treatments=treatments, method="treatments",
                               hours_before_antibiotic=RECORDED_HOURS_BEFORE_SUSPICION,
                               hours_after_antibiotic=RECORDED_HOURS_AFTER_SUSPICION)
    else:
        if suspicion is None:
            raise ValueError("without recorded treatments the drawn suspicion hours are needed")
        antibiotics = suspicion.select(pl.col("stay_id").cast(pl.Int64), pl.col("hour").cast(pl.Int32),
                                       pl.lit(1.0).alias("antibiotic"))
        onsets = sepsis3_onset(sofa_scores, treatments=antibiotics, method="treatments",
                               hours_before_antibiotic=UNRECORDED_HOURS_BEFORE_SUSPICION,
                               hours_after_antibiotic=UNRECORDED_HOURS_AFTER_SUSPICION)
        first = hourly.group_by("stay_id").agg(pl.col("hour").min().alias("first_hour"))
        earliest = pl.col("first_hour") + SEPSIS_LABEL_LEAD_HOURS
        onsets = onsets.join(first.with_columns(pl.col("stay_id").cast(pl.Int64)), on="stay_id", how="left").with_columns(
            pl.when(pl.col("onset_hour") < earliest).then(earliest).otherwise(pl.col("onset_hour"))
            .cast(pl.Int32).alias("onset_hour"))
    return onsets.select("stay_id", "onset_hour")


def event_counts(hourly: pl.DataFrame, *, catalog: Catalog) -> dict[str, int]:
    """Critical-event episodes per event code over all stays of ``hourly`` (catalog event rules)."""
    events = critical_events(hourly, catalog=catalog)
    counts = events.group_by("event").len().sort("event")
    return {row["event"]: int(row["len"]) for row in counts.iter_rows(named=True)}

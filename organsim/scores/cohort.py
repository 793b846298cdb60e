"""All scores and events of a cohort, or of simulated trajectories in the same layout, in one call."""

from __future__ import annotations

from typing import Literal, NamedTuple

import polars as pl

from organsim.catalog import Catalog, load_catalog
from organsim.data import Cohort
from organsim.scores.apache_ii import apache_ii
from organsim.scores.events import EVENT_SCHEMA, critical_events
from organsim.scores.imputation import CarryForwardHours, check_keys
from organsim.scores.news2 import news2
from organsim.scores.qsofa import qsofa
from organsim.scores.sepsis import sepsis3_onset
from organsim.scores.sirs import sirs
from organsim.scores.sofa import sofa

SEPSIS_EVENT = "sepsis3"
"""Event code of the Sepsis-3 onset row in the events frame."""


class Scores(NamedTuple):
    """Hourly scores and event episodes (unpacks as ``hourly, events = ...``)."""

    hourly: pl.DataFrame
    events: pl.DataFrame


def _sepsis_events(onsets: pl.DataFrame, sofa_scores: pl.DataFrame) -> pl.DataFrame:
    """Sepsis-3 onsets as point events: onset = offset = peak hour, value = that hour's SOFA."""
    at_onset = onsets.filter(pl.col("onset_hour").is_not_null()).join(
        sofa_scores.select(pl.col("stay_id").cast(pl.Int64), pl.col("hour").cast(pl.Int32).alias("onset_hour"),
                           pl.col("sofa").cast(pl.Float64).alias("value")),
        on=["stay_id", "onset_hour"], how="left", maintain_order="left",
    )
    return at_onset.select(
        "stay_id",
        pl.lit(SEPSIS_EVENT).alias("event"),
        pl.lit("sofa").alias("variable"),
        "onset_hour",
        pl.col("onset_hour").alias("offset_hour"),
        pl.col("onset_hour").alias("peak_hour"),
        pl.col("value").alias("trigger_value"),
        pl.col("value").alias("peak_value"),
        pl.lit(None, dtype=pl.Utf8).alias("severity"),
        pl.lit(1, dtype=pl.Int32).alias("duration_hours"),
        pl.lit(None, dtype=pl.Int32).alias("n_measured_hours"),
    ).select([pl.col(c).cast(d) for c, d in EVENT_SCHEMA.items()])


def score_trajectories(
    hourly: pl.DataFrame,
    treatments: pl.DataFrame | None = None,
    stays: pl.DataFrame | None = None,
    *,
    context: pl.DataFrame | None = None,
    carry_forward_hours: CarryForwardHours = None,
    window_hours: int = 24,
    spo2_surrogate: bool = True,
    spo2_scale: Literal[1, 2] = 1,
    sepsis_method: Literal["auto", "treatments", "label"] = "auto",
    catalog: Catalog | None = None,
) -> Scores:
    """SOFA, APACHE II, NEWS2, qSOFA, SIRS per hour, critical events and Sepsis-3 onset.

    The same code serves a real cohort and simulated trajectories: pass frames in the canonical
    layout. Every score follows the missing-value rule of :mod:`organsim.scores.imputation` (carry
    forward within a window, otherwise normal, imputed components counted per score).

    Cost is a fixed overhead per call (tens of milliseconds of polars planning) plus a few
    microseconds per stay-hour, so score many simulated rollouts in one call, each under its own
    ``stay_id``, rather than one call per rollout (bench/scores.py measures both).

    Parameters
    ----------
    hourly
        ``(stay_id, hour, <catalog variables>...)``.
    treatments
        ``(stay_id, hour, <catalog treatments>...)`` or None when not recorded (no vasopressor,
        ventilation or antibiotic is then assumed; Sepsis-3 onset comes from ``stays``' label).
    stays
        ``(stay_id, age, sepsis_onset_hour, ...)``: age for APACHE II, label for Sepsis-3.
    context
        APACHE II chronic health / acute renal failure per stay (see
        :func:`~organsim.scores.apache_ii.apache_ii`).
    carry_forward_hours, window_hours, spo2_surrogate, spo2_scale
        Passed to the scores (see :func:`~organsim.scores.sofa.sofa`,
        :func:`~organsim.scores.news2.news2`).
    sepsis_method
        See :func:`~organsim.scores.sepsis.sepsis3_onset`. ``"auto"``: from antibiotics and SOFA when
        ``treatments`` has an ``antibiotic`` column, else from ``stays.sepsis_onset_hour``, else no
        Sepsis-3 rows.

    Returns
    -------
    Scores
        ``hourly``: one row per (stay_id, hour) with the columns of :func:`sofa`, :func:`apache_ii`,
        :func:`news2`, :func:`qsofa` and :func:`sirs`; ``events``: the episodes of
        :func:`critical_events` plus one ``"sepsis3"`` point event per septic stay (value: SOFA at
        onset), sorted by (stay_id, onset_hour, event).
    """
    catalog = catalog or load_catalog()
    check_keys(hourly, "hourly")
    common = {"carry_forward_hours": carry_forward_hours, "catalog": catalog}
    sofa_scores = sofa(hourly, treatments, window_hours=window_hours, spo2_surrogate=spo2_surrogate, **common)
    parts = [
        sofa_scores,
        apache_ii(hourly, stays, context=context, window_hours=window_hours, **common),
        news2(hourly, treatments, spo2_scale=spo2_scale, **common),
        qsofa(hourly, **common),
        sirs(hourly, **common),
    ]
    scores = pl.concat([parts[0], *(p.drop("stay_id", "hour") for p in parts[1:])], how="horizontal")
    events = critical_events(hourly, **common)
    method: Literal["auto", "treatments", "label"] | None = sepsis_method
    if sepsis_method == "auto":
        has_antibiotics = treatments is not None and "antibiotic" in treatments.columns
        has_label = stays is not None and "sepsis_onset_hour" in stays.columns
        method = "treatments" if has_antibiotics else "label" if has_label else None
    if method is not None:
        onsets = sepsis3_onset(sofa_scores, treatments=treatments, stays=stays, method=method)
        events = pl.concat([events, _sepsis_events(onsets, sofa_scores)]).sort("stay_id", "onset_hour", "event")
    return Scores(hourly=scores, events=events)


def score_cohort(
    cohort: Cohort,
    *,
    context: pl.DataFrame | None = None,
    carry_forward_hours: CarryForwardHours = None,
    window_hours: int = 24,
    spo2_surrogate: bool = True,
    spo2_scale: Literal[1, 2] = 1,
    sepsis_method: Literal["auto", "treatments", "label"] = "auto",
) -> Scores:
    """:func:`score_trajectories` on a canonical :class:`~organsim.data.Cohort`.

    The cohort's treatments are used only when ``cohort.meta["treatments_recorded"]`` is true (an
    empty treatments table otherwise means "not recorded", not "nothing given"); the other options
    are those of :func:`score_trajectories`.
    """
    recorded = bool(cohort.meta.get("treatments_recorded", False))
    return score_trajectories(
        cohort.hourly,
        cohort.treatments if recorded else None,
        cohort.stays,
        context=context,
        carry_forward_hours=carry_forward_hours,
        window_hours=window_hours,
        spo2_surrogate=spo2_surrogate,
        spo2_scale=spo2_scale,
        sepsis_method=sepsis_method,
        catalog=cohort.catalog,
    )


def first_window(scores: pl.DataFrame, column: str, *, hours: int = 24) -> pl.DataFrame:
    """Per stay, ``column`` at the stay's last hour within its first ``hours`` hours.

    Applied to a worst-over-window column (``sofa_24h``, ``apache_ii_24h`` computed with
    ``window_hours=hours``) this is the classic first-day score: the worst of each component over
    the first ``hours`` hours of the stay (all of it when the stay is shorter).

    Returns
    -------
    pl.DataFrame
        ``(stay_id, <column>)``, one row per stay, sorted.
    """
    if hours < 1:
        raise ValueError(f"hours must be >= 1, got {hours}")
    first_hour = pl.col("hour").min().over("stay_id")
    return (
        scores.filter(pl.col("hour") < first_hour + hours)
        .sort("stay_id", "hour")
        .group_by("stay_id", maintain_order=True)
        .agg(pl.col(column).last())
    )

"""The cohort, its scores and one patient's record, loaded once and cached.

Loading and scoring a cohort happen once per cohort directory and version (the modification time
of ``cohort.json``); a patient's record is cut from the cached whole-cohort frames, so opening a
patient again is instant. The stay table (:func:`stay_table`) is what the patient browser filters.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl
import streamlit as st

from organsim.catalog import load_catalog
from organsim.data import Cohort
from organsim.scores import (
    APACHE_II_COMPONENTS,
    Scores,
    carry_forward,
    score_cohort,
)

APACHE_WINDOW_HOURS = 24
"""APACHE II is the worst value over the first 24 ICU hours (Knaus 1985)."""


def cohort_version(path: str | Path) -> float:
    """The modification time of ``path/cohort.json`` (0 when absent): a new cohort written to the
    same directory gets new cache entries."""
    manifest = Path(path) / "cohort.json"
    return manifest.stat().st_mtime if manifest.exists() else 0.0


@st.cache_resource(show_spinner="Loading the cohort ...", max_entries=4)
def load_cohort(path: str, version: float) -> Cohort:
    """The cohort at ``path`` (``version``: :func:`cohort_version`, part of the cache key)."""
    return Cohort.load(path)


@st.cache_resource(show_spinner="Scoring every stay (SOFA, APACHE II, critical events) ...", max_entries=4)
def load_scores(path: str, version: float) -> Scores:
    """:func:`organsim.scores.score_cohort` of the cohort at ``path``, hour by hour."""
    return score_cohort(load_cohort(path, version))


@st.cache_resource(show_spinner=False, max_entries=4)
def load_stay_table(path: str, version: float) -> pl.DataFrame:
    """:func:`stay_table` of the cohort at ``path``."""
    return stay_table(load_cohort(path, version), load_scores(path, version))


def _sex_label(sex: pl.Expr) -> pl.Expr:
    """PhysioNet's coding (1 male, 0 female) as ``"M"`` / ``"F"``; text codes pass through."""
    text = sex.cast(pl.Utf8)
    return pl.when(text == "1").then(pl.lit("M")).when(text == "0").then(pl.lit("F")).otherwise(text).alias("sex")


def stay_table(cohort: Cohort, scores: Scores) -> pl.DataFrame:
    """One row per stay: what the patient browser shows and filters.

    Returns
    -------
    pl.DataFrame
        ``stay_id``, ``age`` (years), ``sex``, ``unit``, ``split``, ``hours`` (ICU hours recorded),
        ``sepsis`` (bool), ``sepsis_onset_hour``, ``died`` (bool), ``sofa_max`` (highest hourly
        SOFA), ``apache_ii_24h`` (worst APACHE II of the first 24 h, or of the stay when shorter),
        ``events`` (sorted critical-event codes, Sepsis-3 onset included) and ``n_events``
        (event episodes).
    """
    stays = cohort.stays
    hours = cohort.hourly.group_by("stay_id").agg(pl.len().alias("hours"))
    hourly = scores.hourly
    sofa_max = hourly.group_by("stay_id").agg(pl.col("sofa").max().alias("sofa_max"))
    apache = (hourly.filter(pl.col("hour") <= APACHE_WINDOW_HOURS).sort("hour").group_by("stay_id")
              .agg(pl.col("apache_ii_24h").last().alias("apache_ii_24h")))
    events = scores.events.group_by("stay_id").agg(
        pl.col("event").unique().sort().alias("events"), pl.len().alias("n_events"))

    def column(name: str, dtype: pl.DataType) -> pl.Expr:
        return pl.col(name) if name in stays.columns else pl.lit(None, dtype=dtype).alias(name)

    table = stays.select(
        "stay_id",
        column("age", pl.Float32()),
        _sex_label(column("sex", pl.Int8())),
        column("unit", pl.Utf8()),
        column("split", pl.Utf8()),
        column("sepsis", pl.Boolean()),
        column("sepsis_onset_hour", pl.Int32()),
        column("death", pl.Boolean()).alias("died"),
    )
    return (table.join(hours, on="stay_id", how="left").join(sofa_max, on="stay_id", how="left")
            .join(apache, on="stay_id", how="left").join(events, on="stay_id", how="left")
            .with_columns(pl.col("hours").fill_null(0), pl.col("n_events").fill_null(0),
                          pl.col("events").fill_null(pl.lit([], dtype=pl.List(pl.Utf8))))
            .select("stay_id", "age", "sex", "unit", "split", "hours", "sepsis", "sepsis_onset_hour", "died",
                    "sofa_max", "apache_ii_24h", "events", "n_events")
            .sort("stay_id"))


def filter_stays(
    table: pl.DataFrame,
    *,
    sepsis: str = "all",
    sofa_range: tuple[float, float] | None = None,
    events: list[str] | None = None,
    died: str = "all",
    stay_ids: list[int] | None = None,
) -> pl.DataFrame:
    """The rows of :func:`stay_table` that pass every filter given.

    Parameters
    ----------
    sepsis
        ``"all"``, ``"septic"`` or ``"not septic"``.
    sofa_range
        ``(low, high)`` inclusive range of the stay's highest hourly SOFA (points).
    events
        Critical-event codes the stay must all have had.
    died
        ``"all"``, ``"died"`` or ``"survived"``.
    stay_ids
        Keep only these stays.
    """
    choices = {"sepsis": ("all", "septic", "not septic"), "died": ("all", "died", "survived")}
    for name, value in (("sepsis", sepsis), ("died", died)):
        if value not in choices[name]:
            raise ValueError(f"{name} must be one of {choices[name]}, got {value!r}")
    keep = pl.lit(True)
    if sepsis != "all":
        keep &= pl.col("sepsis").fill_null(False) == (sepsis == "septic")
    if died != "all":
        keep &= pl.col("died").fill_null(False) == (died == "died")
    if sofa_range is not None:
        low, high = sofa_range
        if low > high:
            raise ValueError(f"the SOFA range runs from low to high, got {low:g} to {high:g}")
        keep &= pl.col("sofa_max").is_between(low, high)
    for code in events or []:
        keep &= pl.col("events").list.contains(code)
    if stay_ids is not None:
        keep &= pl.col("stay_id").is_in(stay_ids)
    return table.filter(keep)


def parse_stay_ids(text: str) -> list[int] | None:
    """Stay ids typed by a user (``"12, 40 41"``); None for an empty text.

    Raises
    ------
    ValueError
        Naming the first piece that is not a whole number.
    """
    pieces = text.replace(",", " ").split()
    if not pieces:
        return None
    ids = []
    for piece in pieces:
        if not piece.isdigit():
            raise ValueError(f"{piece!r} is not a stay id: type whole numbers separated by commas or spaces")
        ids.append(int(piece))
    return ids


def cohort_summary(table: pl.DataFrame) -> dict[str, float | int | None]:
    """Headline figures of the stays in ``table``: ``stays``, ``hours`` (total stay-hours),
    ``septic`` and ``died`` (shares in [0, 1]), ``median_age`` (years), ``median_sofa_max``,
    ``median_apache_ii_24h`` (points); None where undefined (no stays, or nothing known)."""

    def share(column: str) -> float | None:
        known = table[column].drop_nulls()
        return float(known.cast(pl.Float64).mean()) if len(known) else None

    def median(column: str) -> float | None:
        value = table[column].drop_nulls().cast(pl.Float64).median()
        return None if value is None else float(value)

    return {"stays": table.height, "hours": int(table["hours"].sum()), "septic": share("sepsis"), "died": share("died"),
            "median_age": median("age"), "median_sofa_max": median("sofa_max"),
            "median_apache_ii_24h": median("apache_ii_24h")}


@dataclass(frozen=True)
class PatientRecord:
    """One stay's record as the patient view draws it.

    Attributes
    ----------
    stay_id
        The stay.
    stay
        Its row of the cohort's stays table.
    observed
        ``(hour, <variables>...)``: what was charted, null when not measured.
    carried
        ``(hour, <variables>...)``: the state a bedside team sees, the last measurement carried
        forward within its window (:func:`organsim.scores.carry_forward`), null beyond it.
    treatments
        ``(hour, <treatments>...)``.
    scores
        The stay's rows of the hourly scores (SOFA and its subscores, APACHE II, ...).
    events
        The stay's event episodes (``event, variable, onset_hour, offset_hour, peak_value, ...``).
    """

    stay_id: int
    stay: pl.DataFrame
    observed: pl.DataFrame
    carried: pl.DataFrame
    treatments: pl.DataFrame
    scores: pl.DataFrame
    events: pl.DataFrame

    @property
    def last_hour(self) -> int:
        """The last recorded ICU hour."""
        return int(self.observed["hour"].max() or 0)

    def apache_ii_24h(self) -> tuple[float | None, int | None, dict[str, float]]:
        """APACHE II at 24 h (Knaus 1985): ``(score, hour, points)``, the score from the worst value of
        each physiological component over the first 24 ICU hours, plus age and chronic-health
        points; ``hour`` is the hour it is read at (24, or the stay's last when shorter), ``points``
        each component's worst points. ``(None, None, {})`` when no hour is scored."""
        first_day = self.scores.filter(pl.col("hour") <= APACHE_WINDOW_HOURS).drop_nulls("apache_ii_24h")
        if first_day.height == 0:
            return None, None, {}
        last = first_day.sort("hour").row(-1, named=True)
        points = {name: float(first_day[name].max()) for name in APACHE_II_COMPONENTS if first_day[name].max() is not None}
        for name in ("apache_ii_age_points", "apache_ii_chronic_points"):
            if last.get(name) is not None:
                points[name] = float(last[name])
        return float(last["apache_ii_24h"]), int(last["hour"]), points


def patient_record(cohort: Cohort, scores: Scores, stay_id: int) -> PatientRecord:
    """The record of ``stay_id`` (:class:`PatientRecord`); KeyError when the cohort lacks it."""
    stay = cohort.stays.filter(pl.col("stay_id") == stay_id)
    if stay.height == 0:
        raise KeyError(f"stay {stay_id} is not in the cohort")
    catalog = cohort.catalog or load_catalog()
    codes = list(catalog.variable_codes)
    observed = cohort.hourly.filter(pl.col("stay_id") == stay_id).sort("hour")
    carried = carry_forward(observed, codes, catalog=catalog)
    treatments = cohort.treatments.filter(pl.col("stay_id") == stay_id).sort("hour")
    return PatientRecord(
        stay_id=int(stay_id),
        stay=stay,
        observed=observed.drop("stay_id"),
        carried=carried.drop("stay_id").select("hour", *codes),
        treatments=treatments.drop("stay_id"),
        scores=scores.hourly.filter(pl.col("stay_id") == stay_id).sort("hour").drop("stay_id"),
        events=scores.events.filter(pl.col("stay_id") == stay_id).sort("onset_hour", "event").drop("stay_id"),
    )


@st.cache_resource(show_spinner=False, max_entries=64)
def load_patient_record(path: str, version: float, stay_id: int) -> PatientRecord:
    """:func:`patient_record` of ``stay_id`` in the cohort at ``path``, cached per stay."""
    return patient_record(load_cohort(path, version), load_scores(path, version), stay_id)


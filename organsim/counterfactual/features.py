"""Treatment courses: what the matched comparison compares (the state summaries the behaviour policy
and the matching read are :func:`organsim.twin.behaviour.state_features`).

:func:`treatment_courses` describes the treatments given over a window starting at each hour:
fluid volume per kg, the highest norepinephrine rate and the hours on it, the hour of the first
antibiotic dose, the hours ventilated.

Frames are in the canonical cohort layout, one row per hour of each stay, consecutive hours (as
every organsim cohort and simulated trajectory is).
"""

from __future__ import annotations

import numpy as np
import polars as pl

from organsim.catalog import Catalog, load_catalog

COURSE_FEATURES = ("fluid_ml_per_kg", "norepinephrine_max", "norepinephrine_hours", "first_antibiotic_hour", "ventilated_hours")
"""Columns of :func:`treatment_courses` (first_antibiotic_hour: hours after the window's start; the
window length when no dose was given)."""


def treatment_courses(
    treatments: pl.DataFrame,
    stays: pl.DataFrame,
    *,
    window_hours: int = 24,
    catalog: Catalog | None = None,
) -> pl.DataFrame:
    """``(stay_id, hour, <COURSE_FEATURES>..., complete)``: the course of the ``window_hours`` hours
    starting at each recorded hour.

    ``complete`` is False when the stay's record ends inside the window (the course is then over the
    hours it has). ``fluid_ml_per_kg`` is mL per kg of body weight; ``norepinephrine_max`` ug/kg/min;
    ``norepinephrine_hours`` and ``ventilated_hours`` count hours; ``first_antibiotic_hour`` is hours
    from the window's start to the first dose (``window_hours`` when none).
    """
    catalog = catalog or load_catalog()
    if window_hours < 1:
        raise ValueError(f"window_hours must be >= 1, got {window_hours}")
    frame = (treatments.select("stay_id", "hour", *catalog.treatment_codes)
             .with_columns([pl.col(c).fill_null(catalog.treatment(c).default).cast(pl.Float64) for c in catalog.treatment_codes])
             .join(stays.select("stay_id", pl.col("weight").cast(pl.Float64)), on="stay_id", how="left")
             .sort("stay_id", "hour"))
    hour = pl.col("hour")
    # Forward windows as backward rolling windows over the reversed hours of each stay.
    forward = {
        "fluid_ml_per_kg": pl.col("iv_fluid_ml").reverse().rolling_sum(window_hours, min_samples=1).reverse() / pl.col("weight"),
        "norepinephrine_max": pl.col("norepinephrine").reverse().rolling_max(window_hours, min_samples=1).reverse(),
        "norepinephrine_hours": (pl.col("norepinephrine") > 0).cast(pl.Float64).reverse().rolling_sum(window_hours, min_samples=1).reverse(),
        "next_antibiotic": pl.when(pl.col("antibiotic") > 0.5).then(hour).reverse().forward_fill().reverse(),
        "ventilated_hours": pl.col("mechanical_ventilation").reverse().rolling_sum(window_hours, min_samples=1).reverse(),
        "last_hour": hour.max(),
    }
    courses = frame.select("stay_id", "hour", *[expr.over("stay_id").alias(name) for name, expr in forward.items()])
    first = pl.when(pl.col("next_antibiotic") - hour < window_hours).then(pl.col("next_antibiotic") - hour).otherwise(window_hours)
    return courses.select(
        "stay_id", "hour",
        "fluid_ml_per_kg", "norepinephrine_max", "norepinephrine_hours",
        first.cast(pl.Float64).alias("first_antibiotic_hour"),
        "ventilated_hours",
        (hour + window_hours - 1 <= pl.col("last_hour")).alias("complete"),
    )


def course_matrix(courses: pl.DataFrame) -> np.ndarray:
    """``(n, len(COURSE_FEATURES))`` float64 view of :func:`treatment_courses` rows."""
    return courses.select(COURSE_FEATURES).to_numpy().astype(np.float64)

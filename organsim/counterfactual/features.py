"""State summaries and treatment courses: what the behaviour-policy model and the matching read.

:func:`state_features` summarises, for every recorded hour ``h`` of every stay, what a bedside team
knew when deciding the treatments of hour ``h`` (the same information a
:class:`~organsim.counterfactual.state.StrategyState` gives a strategy): the latest value of key
variables carried forward within their window, the treatments of the previous hour, fluid given
over the last 6 hours and in all, antibiotic doses so far and hours since the last one, hours
ventilated, the ICU hour, age and weight.

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
from organsim.scores import DEFAULT_CARRY_FORWARD_HOURS
from organsim.utils.errors import DataError

STATE_VARIABLES = (
    "map", "sbp", "hr", "resp_rate", "spo2", "temperature", "gcs", "cvp",
    "lactate", "wbc", "creatinine", "platelets", "bilirubin_total",
)
"""Variables whose latest values describe the state (those the strategies and the clinician read)."""
FLUID_WINDOW_HOURS = 6
COURSE_FEATURES = ("fluid_ml_per_kg", "norepinephrine_max", "norepinephrine_hours", "first_antibiotic_hour", "ventilated_hours")
"""Columns of :func:`treatment_courses` (first_antibiotic_hour: hours after the window's start; the
window length when no dose was given)."""


def _joined(hourly: pl.DataFrame, treatments: pl.DataFrame, stays: pl.DataFrame, catalog: Catalog) -> pl.DataFrame:
    for name, frame, needed in (("hourly", hourly, ("stay_id", "hour", *STATE_VARIABLES)),
                                ("treatments", treatments, ("stay_id", "hour", *catalog.treatment_codes)),
                                ("stays", stays, ("stay_id", "age", "weight"))):
        missing = [c for c in needed if c not in frame.columns]
        if missing:
            raise DataError(f"the {name} frame lacks column(s) {missing}", file=f"<{name}>", column=missing[0])
    defaults = [pl.col(c).fill_null(catalog.treatment(c).default).cast(pl.Float64) for c in catalog.treatment_codes]
    return (
        hourly.select("stay_id", "hour", *[pl.col(v).cast(pl.Float64) for v in STATE_VARIABLES])
        .join(treatments.select("stay_id", "hour", *catalog.treatment_codes), on=["stay_id", "hour"], how="left")
        .with_columns(defaults)
        .join(stays.select("stay_id", pl.col("age").cast(pl.Float64), pl.col("weight").cast(pl.Float64)), on="stay_id", how="left")
        .sort("stay_id", "hour")
    )


def state_features(
    hourly: pl.DataFrame,
    treatments: pl.DataFrame,
    stays: pl.DataFrame,
    *,
    catalog: Catalog | None = None,
) -> pl.DataFrame:
    """``(stay_id, hour, <features>...)``: the state when deciding each recorded hour (module docstring).

    Features (Float64, null = unknown): each of :data:`STATE_VARIABLES` (latest value before the
    hour, within 4 h for vitals, 8 h for GCS, 24 h for labs), ``map_before`` (the latest MAP before
    the previous hour, showing a sustained low), ``<treatment>_previous``, ``fluid_ml_per_kg_6h``,
    ``fluid_ml_per_kg_total``, ``antibiotic_doses``, ``hours_since_antibiotic``,
    ``ventilated_hours``, ``icu_hour``, ``age``, ``weight``.
    """
    catalog = catalog or load_catalog()
    frame = _joined(hourly, treatments, stays, catalog)
    hour = pl.col("hour")
    expressions: list[pl.Expr] = []
    for code in STATE_VARIABLES:
        window = DEFAULT_CARRY_FORWARD_HOURS[catalog.variable(code).kind]
        measured_hour = pl.when(pl.col(code).is_not_null()).then(hour).forward_fill()
        value = pl.col(code).forward_fill()
        fresh = hour - measured_hour.shift(1).over("stay_id") <= window
        expressions.append(pl.when(fresh).then(value.shift(1).over("stay_id")).alias(code))
        if code == "map":
            fresh_before = (hour - 1) - measured_hour.shift(2).over("stay_id") <= window
            expressions.append(pl.when(fresh_before).then(value.shift(2).over("stay_id")).alias("map_before"))
    for code in catalog.treatment_codes:
        expressions.append(pl.col(code).shift(1).over("stay_id").fill_null(0.0).alias(f"{code}_previous"))
    fluid = pl.col("iv_fluid_ml")
    expressions += [
        (fluid.rolling_sum(FLUID_WINDOW_HOURS, min_samples=1).shift(1).over("stay_id").fill_null(0.0) / pl.col("weight"))
        .alias(f"fluid_ml_per_kg_{FLUID_WINDOW_HOURS}h"),
        (fluid.cum_sum().shift(1).over("stay_id").fill_null(0.0) / pl.col("weight")).alias("fluid_ml_per_kg_total"),
        pl.col("antibiotic").cum_sum().shift(1).over("stay_id").fill_null(0.0).alias("antibiotic_doses"),
        (hour - pl.when(pl.col("antibiotic") > 0.5).then(hour).forward_fill().shift(1).over("stay_id"))
        .cast(pl.Float64).alias("hours_since_antibiotic"),
        pl.col("mechanical_ventilation").cum_sum().shift(1).over("stay_id").fill_null(0.0).alias("ventilated_hours"),
        hour.cast(pl.Float64).alias("icu_hour"),
        "age",
        "weight",
    ]
    return frame.select("stay_id", "hour", *expressions)


def feature_names(catalog: Catalog | None = None) -> tuple[str, ...]:
    """The feature columns of :func:`state_features`, in order."""
    catalog = catalog or load_catalog()
    return (
        *STATE_VARIABLES[:1], "map_before", *STATE_VARIABLES[1:],
        *(f"{c}_previous" for c in catalog.treatment_codes),
        f"fluid_ml_per_kg_{FLUID_WINDOW_HOURS}h", "fluid_ml_per_kg_total", "antibiotic_doses", "hours_since_antibiotic",
        "ventilated_hours", "icu_hour", "age", "weight",
    )


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

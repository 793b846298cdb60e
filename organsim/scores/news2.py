"""NEWS2 (National Early Warning Score 2; Royal College of Physicians 2017), hour by hour."""

from __future__ import annotations

from typing import Literal

import polars as pl

from organsim.catalog import Catalog, load_catalog
from organsim.scores import tables as t
from organsim.scores.imputation import (
    CarryForwardHours,
    Component,
    age_of,
    attach_treatments,
    carry_forward_lazy,
    score_components,
)

NEWS2_VARIABLES = ("resp_rate", "spo2", "fio2", "sbp", "hr", "gcs", "temperature")
NEWS2_COMPONENTS = (
    "news2_respiratory_rate",
    "news2_spo2",
    "news2_supplemental_oxygen",
    "news2_systolic_bp",
    "news2_pulse",
    "news2_consciousness",
    "news2_temperature",
)
"""The seven NEWS2 parameters, in chart order."""
NEWS2_RISK_LEVELS = ("low", "low-medium", "medium", "high")
NEWS2_MEDIUM_FROM = 5
NEWS2_HIGH_FROM = 7
NEWS2_SINGLE_PARAMETER_RED = 3


def news2(
    hourly: pl.DataFrame,
    treatments: pl.DataFrame | None = None,
    *,
    spo2_scale: Literal[1, 2] = 1,
    carry_forward_hours: CarryForwardHours = None,
    catalog: Catalog | None = None,
) -> pl.DataFrame:
    """Hourly NEWS2 with its seven parameters and the clinical risk band.

    Parameters (RCP 2017 chart 1, tables in :mod:`organsim.scores.tables`): respiration rate, SpO2
    (scale 1, or scale 2 for hypercapnic respiratory failure), air or supplemental oxygen (FiO2 > 0.21
    or mechanical ventilation gives 2), systolic BP, pulse, consciousness (GCS < 15 is "not alert",
    3 points), temperature. Risk: ``high`` for a total >= 7, ``medium`` for 5-6, ``low-medium`` when
    any single parameter scores 3, else ``low``.

    Missing values (:mod:`organsim.scores.imputation`): each input is carried forward within its
    window (vitals 4 h, GCS 8 h, labs 24 h by default); a parameter without a value scores 0 and is
    counted in ``news2_n_missing`` (so FiO2 never recorded and no ventilation means "air"), one that
    used a carried value in ``news2_n_carried``. Without treatments no ventilation is assumed.

    Parameters
    ----------
    hourly
        ``(stay_id, hour, <catalog variables>...)``, as for :func:`~organsim.scores.sofa.sofa`.
    treatments
        ``(stay_id, hour, mechanical_ventilation, ...)`` or None (not recorded).
    spo2_scale
        1 (default) or 2: scale 2 scores SpO2 88-92 % as 0 and, on oxygen, >= 93 % as 1-3.

    Returns
    -------
    pl.DataFrame
        One row per (stay_id, hour), sorted: the seven parameters (Int8), ``news2`` (Int16, 0-20),
        ``news2_n_carried``, ``news2_n_missing`` (Int8, 0-7) and ``news2_risk`` (one of
        :data:`NEWS2_RISK_LEVELS`).
    """
    if spo2_scale not in (1, 2):
        raise ValueError(f"spo2_scale must be 1 or 2, got {spo2_scale!r}")
    catalog = catalog or load_catalog()
    frame = carry_forward_lazy(hourly, NEWS2_VARIABLES, carry_forward_hours=carry_forward_hours, catalog=catalog)
    frame = attach_treatments(frame, treatments, ("mechanical_ventilation",), catalog=catalog)

    ventilated = pl.col("mechanical_ventilation") > 0
    on_oxygen = ventilated | (pl.col("fio2") > t.ROOM_AIR_FIO2).fill_null(False)
    oxygen = pl.when(on_oxygen).then(pl.lit(t.NEWS2_SUPPLEMENTAL_OXYGEN_POINTS, dtype=pl.Int8)).when(
        pl.col("fio2").is_not_null()).then(pl.lit(0, dtype=pl.Int8))
    oxygen_age = pl.when(ventilated).then(pl.lit(0, dtype=pl.Int64)).otherwise(age_of("fio2"))
    if spo2_scale == 1:
        spo2 = t.NEWS2_SPO2_SCALE_1.expr(pl.col("spo2"))
    else:
        high_on_oxygen = on_oxygen & (pl.col("spo2") >= t.NEWS2_SCALE_2_HIGH_FROM)
        spo2 = pl.when(high_on_oxygen).then(t.NEWS2_SPO2_SCALE_2_ON_OXYGEN.expr(pl.col("spo2"))).otherwise(
            t.NEWS2_SPO2_SCALE_2_LOW.expr(pl.col("spo2")))
    components = [
        Component("news2_respiratory_rate", t.NEWS2_RESPIRATORY_RATE.expr(pl.col("resp_rate")), age_of("resp_rate")),
        Component("news2_spo2", spo2, age_of("spo2")),
        Component("news2_supplemental_oxygen", oxygen, oxygen_age),
        Component("news2_systolic_bp", t.NEWS2_SYSTOLIC_BP.expr(pl.col("sbp")), age_of("sbp")),
        Component("news2_pulse", t.NEWS2_PULSE.expr(pl.col("hr")), age_of("hr")),
        Component("news2_consciousness", t.NEWS2_CONSCIOUSNESS.expr(pl.col("gcs")), age_of("gcs")),
        Component("news2_temperature", t.NEWS2_TEMPERATURE.expr(pl.col("temperature")), age_of("temperature")),
    ]
    scored = score_components(frame, components, "news2")
    red = pl.max_horizontal([pl.col(c) for c in NEWS2_COMPONENTS]) >= NEWS2_SINGLE_PARAMETER_RED
    risk = (
        pl.when(pl.col("news2") >= NEWS2_HIGH_FROM).then(pl.lit("high"))
        .when(pl.col("news2") >= NEWS2_MEDIUM_FROM).then(pl.lit("medium"))
        .when(red).then(pl.lit("low-medium"))
        .otherwise(pl.lit("low"))
    )
    return scored.with_columns(risk.alias("news2_risk")).collect()
